//! The node artifact's OCI image manifest, serialised deterministically.
//!
//! The exact bytes produced here are what gets pushed (`push_manifest_raw`)
//! and, later, signed: the struct's field order and `BTreeMap` annotations fix
//! the byte layout, and no whitespace is emitted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    ARTIFACT_TYPE_NODE, MEDIA_TYPE_BASE, MEDIA_TYPE_IMAGE_MANIFEST, MEDIA_TYPE_NODE_CONFIG,
    MEDIA_TYPE_PATCH, MEDIA_TYPE_SECRETS,
};

pub use crate::digest::{sha256_digest, sha256_hex};

/// An OCI content descriptor, as the node artifact's manifest writes it.
///
/// Not the same type as `trust`'s descriptor, on purpose: the fields are
/// serialised in a different order (here `mediaType, digest, size`, as Metis
/// has always pushed; `trust` follows go-containerregistry's `mediaType, size,
/// digest`), signatures are over the exact bytes, and `trust` depends on
/// nothing of `oci`. `digest` stays text so that a manifest with a digest of
/// another algorithm parses far enough to be refused by [`ImageManifest::parse`]
/// with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (sorted, so serialisation is deterministic).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes` with `media_type`.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// Why bytes are not an OCI image manifest Metis reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON of a manifest's shape; serde's reason.
    #[error("{0}")]
    Json(serde_json::Error),
    /// A schema version other than 2.
    #[error("schemaVersion {0} (expected 2)")]
    SchemaVersion(u32),
    /// A media type other than the OCI image manifest's.
    #[error("media type {0} (expected {MEDIA_TYPE_IMAGE_MANIFEST})")]
    MediaType(String),
    /// A blob named by a digest that is not `sha256:<64 lowercase hex>`.
    #[error("unsupported digest {0:?} (expected sha256)")]
    Digest(String),
}

/// An OCI image manifest (schema version 2), as Metis writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// `application/vnd.oci.image.manifest.v1+json`.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// The artifact type, e.g. `application/vnd.metis.node-image.v1`.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The canonical bytes of this manifest and their digest.
    pub fn to_bytes(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(self).expect("a manifest always serialises");
        let digest = sha256_digest(&bytes);
        (bytes, digest)
    }

    /// Parses manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if manifest.schema_version != 2 {
            return Err(ManifestError::SchemaVersion(manifest.schema_version));
        }
        if !manifest.media_type.is_empty() && manifest.media_type != MEDIA_TYPE_IMAGE_MANIFEST {
            return Err(ManifestError::MediaType(manifest.media_type));
        }
        if let Some(d) = manifest.blobs().find(|d| sha256_hex(&d.digest).is_none()) {
            return Err(ManifestError::Digest(d.digest.clone()));
        }
        Ok(manifest)
    }

    /// Every blob the manifest references: config first, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// The provenance of one node artifact, recorded as manifest annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProvenance {
    /// Node name (`dev.metis.node`).
    pub node: String,
    /// Class name (`dev.metis.class`).
    pub class: String,
    /// Build revision, e.g. the inventory commit (`org.opencontainers.image.revision`).
    pub revision: String,
    /// RFC 3339 build time (`org.opencontainers.image.created`). Pass a fixed
    /// value (e.g. the commit time) for reproducible manifests.
    pub created: String,
    /// Where the inventory lives (`org.opencontainers.image.source`).
    pub source: String,
    /// Digest of every build input (`dev.metis.input-digest`).
    pub input_digest: String,
}

impl NodeProvenance {
    /// The annotations this provenance stands for.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "org.opencontainers.image.created".into(),
                self.created.clone(),
            ),
            (
                "org.opencontainers.image.revision".into(),
                self.revision.clone(),
            ),
            (
                "org.opencontainers.image.source".into(),
                self.source.clone(),
            ),
            ("dev.metis.node".into(), self.node.clone()),
            ("dev.metis.class".into(), self.class.clone()),
            ("dev.metis.input-digest".into(), self.input_digest.clone()),
        ])
    }
}

/// The layers of a node artifact, each as a descriptor of its blob.
#[derive(Debug, Clone)]
pub struct NodeLayers {
    /// Config blob (`application/vnd.metis.node.config.v1+json`); must not be empty.
    pub config: Descriptor,
    /// Class golden base (`application/vnd.metis.base.v1.zstd-seekable`).
    pub base: Descriptor,
    /// Node patch (`application/vnd.metis.patch.v1+zstd`).
    pub patch: Descriptor,
    /// Sealed secrets (`application/vnd.metis.secrets.v1.age`).
    pub secrets: Descriptor,
}

/// Builds the node artifact manifest; returns its exact bytes and digest.
///
/// The media types of the descriptors are set here, so a caller cannot put a
/// layer in the wrong slot. The config must be non-empty JSON (Harbor
/// mishandles empty configs of custom types).
///
/// ```
/// use metis_core::oci::{node_manifest, Descriptor, NodeLayers, NodeProvenance};
/// let d = |b: &[u8]| Descriptor::of_bytes("", b);
/// let layers = NodeLayers { config: d(b"{}"), base: d(b"base"), patch: d(b"patch"), secrets: d(b"age") };
/// let prov = NodeProvenance {
///     node: "titan-db".into(), class: "amd64-agents".into(), revision: "42".into(),
///     created: "2026-01-01T00:00:00Z".into(), source: "https://example".into(),
///     input_digest: "sha256:00".into(),
/// };
/// let (bytes, digest) = node_manifest(&layers, &prov);
/// assert_eq!(node_manifest(&layers, &prov), (bytes, digest));
/// ```
pub fn node_manifest(layers: &NodeLayers, provenance: &NodeProvenance) -> (Vec<u8>, String) {
    let typed = |d: &Descriptor, media_type: &str| Descriptor {
        media_type: media_type.to_owned(),
        ..d.clone()
    };
    ImageManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_IMAGE_MANIFEST.to_owned(),
        artifact_type: Some(ARTIFACT_TYPE_NODE.to_owned()),
        config: typed(&layers.config, MEDIA_TYPE_NODE_CONFIG),
        layers: vec![
            typed(&layers.base, MEDIA_TYPE_BASE),
            typed(&layers.patch, MEDIA_TYPE_PATCH),
            typed(&layers.secrets, MEDIA_TYPE_SECRETS),
        ],
        annotations: provenance.annotations(),
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (NodeLayers, NodeProvenance) {
        let d = |b: &[u8]| Descriptor::of_bytes("x", b);
        (
            NodeLayers {
                config: d(br#"{"node":"titan-db"}"#),
                base: d(b"base"),
                patch: d(b"patch"),
                secrets: d(b"secrets"),
            },
            NodeProvenance {
                node: "titan-db".into(),
                class: "amd64-agents".into(),
                revision: "7".into(),
                created: "2026-01-01T00:00:00Z".into(),
                source: "https://git.example/lab".into(),
                input_digest: sha256_digest(b"inputs"),
            },
        )
    }

    #[test]
    fn node_manifest_is_deterministic_and_typed() {
        let (layers, prov) = sample();
        let (bytes, digest) = node_manifest(&layers, &prov);
        assert_eq!(digest, sha256_digest(&bytes));
        assert_eq!(node_manifest(&layers, &prov).0, bytes);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.metis.node-image.v1","config":{"mediaType":"application/vnd.metis.node.config.v1+json""#
        ), "{text}");
        let m = ImageManifest::parse(&bytes).unwrap();
        let types: Vec<_> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            types,
            [MEDIA_TYPE_BASE, MEDIA_TYPE_PATCH, MEDIA_TYPE_SECRETS]
        );
        assert_eq!(m.annotations["dev.metis.node"], "titan-db");
        assert_eq!(m.annotations["org.opencontainers.image.revision"], "7");
        // Round trip gives the same bytes.
        assert_eq!(m.to_bytes().0, bytes);
    }

    #[test]
    fn digest_hex_refuses_what_is_not_sha256() {
        let good = sha256_digest(b"");
        assert!(sha256_hex(&good).is_some());
        for bad in ["sha256:../../etc", "sha512:00", "sha256:ABC", "", "sha256:"] {
            assert!(sha256_hex(bad).is_none(), "{bad}");
        }
    }
}
