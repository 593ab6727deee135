//! The signed lab index: node → artifact digest, revision, class.
//!
//! Published as an OCI artifact at `<prefix>/index:latest`: an image manifest with
//! `artifactType` [`INDEX_MEDIA_TYPE`], the OCI empty config (`{}`) and one layer, the
//! index document:
//!
//! ```json
//! {"schemaVersion":1,"nodes":{"titan-db":{"class":"amd64-agents","digest":"sha256:…","revision":42}}}
//! ```
//!
//! It is signed like a node artifact, with `metis.kind: "index"` in the payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::{BlobContent, Descriptor, HeldBlob, OciManifest, OCI_MANIFEST_MEDIA_TYPE};
use super::seen::{SeenRevisions, Subject};
use super::signature::Blob;
use super::verify::{verify_signed, HeldArtifact, HeldSignature, Verified};
use super::{ManifestError, TrustedKeys, VerifyError};
use crate::digest::sha256_hex;

/// Media type of the index document (the layer) and the index artifact's `artifactType`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.metis.index.v1+json";
/// The OCI empty descriptor's media type, used for the index artifact's config.
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The OCI empty config blob.
pub const OCI_EMPTY_CONFIG: &[u8] = b"{}";

/// The lab index document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabIndex {
    /// Always 1 for this media type.
    pub schema_version: u32,
    /// Every published node, by name.
    pub nodes: BTreeMap<String, IndexEntry>,
}

/// One node in the lab index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// The node's class.
    pub class: String,
    /// `sha256:` digest of the node artifact's manifest.
    pub digest: String,
    /// The node artifact's signed `metis.revision`.
    pub revision: u64,
}

/// The index artifact to push at `<prefix>/index`: config, layer, then the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexArtifact {
    /// The OCI empty config `{}`.
    pub config: Blob,
    /// The index document.
    pub layer: Blob,
    /// The manifest; sign its digest with [`sign`](super::sign) and [`Metadata::index`](super::Metadata::index).
    pub manifest: Blob,
}

impl LabIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            schema_version: 1,
            nodes: BTreeMap::new(),
        }
    }

    /// The entry for `node`.
    pub fn entry(&self, node: &str) -> Option<&IndexEntry> {
        self.nodes.get(node)
    }

    /// Compact, deterministic JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an index always serialises")
    }

    /// Parses and checks an index document.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let index: Self = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::IndexMalformed(e.to_string()))?;
        if index.schema_version != 1 {
            return Err(VerifyError::IndexMalformed(format!(
                "schemaVersion is {}, expected 1",
                index.schema_version
            )));
        }
        if let Some((node, _)) = index
            .nodes
            .iter()
            .find(|(_, e)| sha256_hex(&e.digest).is_none())
        {
            return Err(VerifyError::IndexMalformed(format!(
                "node {node}: digest is not sha256:<64 hex>"
            )));
        }
        Ok(index)
    }

    /// The OCI artifact holding this index.
    pub fn to_artifact(&self) -> IndexArtifact {
        let config = Blob::new(OCI_EMPTY_MEDIA_TYPE, OCI_EMPTY_CONFIG.to_vec());
        let layer = Blob::new(INDEX_MEDIA_TYPE, self.to_bytes());
        let manifest = OciManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            config: Descriptor::of(OCI_EMPTY_MEDIA_TYPE, &config.bytes),
            layers: vec![Descriptor::of(INDEX_MEDIA_TYPE, &layer.bytes)],
            annotations: None,
        };
        IndexArtifact {
            config,
            layer,
            manifest: Blob::new(OCI_MANIFEST_MEDIA_TYPE, manifest.to_bytes()),
        }
    }
}

impl Default for LabIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// Verifies the lab index before it is used to pick or pull nodes: the signature
/// over `manifest`, `metis.kind: index`, its revision not older than the newest seen
/// (unless `allow_downgrade`), the config and index blobs, and the document itself.
/// On success the index revision is recorded in `seen`.
pub fn verify_index(
    keys: &TrustedKeys,
    signature: &HeldSignature<'_>,
    manifest: &[u8],
    config: &[u8],
    index: &[u8],
    seen: &mut SeenRevisions,
    allow_downgrade: bool,
) -> Result<(LabIndex, Verified), VerifyError> {
    let parsed = OciManifest::parse(manifest).map_err(VerifyError::ManifestMalformed)?;
    let index_layers = parsed
        .layers
        .iter()
        .filter(|l| l.media_type == INDEX_MEDIA_TYPE)
        .count();
    if index_layers != 1 || parsed.layers.len() != 1 {
        return Err(VerifyError::ManifestMalformed(
            ManifestError::NotOneIndexLayer,
        ));
    }
    let blobs = [
        HeldBlob {
            media_type: &parsed.config.media_type,
            digest: &parsed.config.digest,
            content: BlobContent::Bytes(config),
        },
        HeldBlob {
            media_type: INDEX_MEDIA_TYPE,
            digest: &parsed.layers[0].digest,
            content: BlobContent::Bytes(index),
        },
    ];
    let artifact = HeldArtifact {
        manifest,
        blobs: &blobs,
    };
    let verified = verify_signed(
        keys,
        signature,
        &artifact,
        Subject::Index,
        seen,
        allow_downgrade,
    )?;
    // The document is read only once it is verified, and recorded only once it parses.
    let document = LabIndex::parse(index)?;
    seen.record(Subject::Index, verified.metadata.revision)?;
    Ok((document, verified))
}
