//! What a publish did, node by node (`metis-build publish --json` prints it).

use std::fmt;

use serde::Serialize;

/// What a run did with one node. Serialised (and shown) as the words
/// `metis-build publish` has always printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NodeStatus {
    /// Built, pushed and signed.
    #[serde(rename = "built")]
    Built,
    /// Current already, or not selected.
    #[serde(rename = "skipped")]
    Skipped,
    /// Left the inventory, so the index.
    #[serde(rename = "removed")]
    Removed,
    /// Its inputs, class or build failed; it keeps its previous artifact.
    #[serde(rename = "failed")]
    Failed,
    /// A dry run would build it.
    #[serde(rename = "would build")]
    WouldBuild,
}

impl NodeStatus {
    /// The word a report shows.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Built => "built",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Removed => "removed",
            NodeStatus::Failed => "failed",
            NodeStatus::WouldBuild => "would build",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write: the builder lines statuses up with `{:<12}`.
        f.pad(self.as_str())
    }
}

/// What happened to one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// Node.
    pub node: String,
    /// What the run did with it.
    pub status: NodeStatus,
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
        self.nodes.iter().any(|n| n.status == NodeStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_words_in_json_and_text() {
        for (status, word) in [
            (NodeStatus::Built, "built"),
            (NodeStatus::Skipped, "skipped"),
            (NodeStatus::Removed, "removed"),
            (NodeStatus::Failed, "failed"),
            (NodeStatus::WouldBuild, "would build"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), word);
            assert_eq!(status.to_string(), word);
        }
        assert_eq!(format!("[{:<8}]", NodeStatus::Built), "[built   ]");
    }
}
