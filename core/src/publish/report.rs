//! What a publish did, node by node (`metis-build publish --json` prints it).

use serde::Serialize;

/// What happened to one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// Node.
    pub node: String,
    /// `built`, `skipped`, `removed`, `failed` or (dry run) `would build`.
    pub status: String,
    /// Why (plan reason, or the error).
    pub detail: String,
    /// Manifest digest of the node's artifact after this run.
    pub digest: Option<String>,
    /// Blob bytes uploaded for this node.
    pub uploaded_bytes: u64,
}

/// What a publish did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The revision built nodes got.
    pub revision: u64,
    /// Per node.
    pub nodes: Vec<NodeResult>,
    /// Bytes of class bases uploaded.
    pub base_bytes_uploaded: u64,
    /// Whether the signed index was published.
    pub index_published: bool,
    /// Digest of the published index manifest.
    pub index_digest: Option<String>,
}

impl Report {
    /// Whether any node failed.
    pub fn failed(&self) -> bool {
        self.nodes.iter().any(|n| n.status == "failed")
    }
}
