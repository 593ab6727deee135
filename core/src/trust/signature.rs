//! The cosign signature artifact: what is pushed at `sha256-<hex>.sig`.
//!
//! As cosign (`pkg/oci/static`, go-containerregistry `empty.Image` + one appended
//! layer) publishes a key-pair signature without a transparency-log entry:
//!
//! * the **payload** (simple-signing JSON) is the single layer, media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`, with the base64 DER ECDSA
//!   signature of the payload bytes in its `dev.cosignproject.cosign/signature` annotation;
//! * the **config** is go-containerregistry's config of an empty image with that one
//!   layer, zero timestamps (`application/vnd.oci.image.config.v1+json`);
//! * the **manifest** is an OCI image manifest naming both.

#[cfg(feature = "signing")]
use std::collections::BTreeMap;

use super::digest::sha256_digest;
#[cfg(feature = "signing")]
use super::digest::signature_tag;
#[cfg(feature = "signing")]
use super::manifest::{Descriptor, OciManifest, OCI_MANIFEST_MEDIA_TYPE};
#[cfg(feature = "signing")]
use super::payload::{Metadata, SimpleSigning};
#[cfg(feature = "signing")]
use super::{PrivateKey, SignError};

/// Media type of the payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of the signature image's config.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Bytes to push, with their media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// Content.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// A blob of `bytes`.
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }
}

/// Everything the registry module pushes to publish one signature, in push order:
/// `payload` and `config` blobs, then `manifest` at `tag` in the signed repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureArtifact {
    /// `sha256-<hex of the signed manifest digest>.sig`.
    pub tag: String,
    /// The simple-signing payload (the single layer).
    pub payload: Blob,
    /// The config blob.
    pub config: Blob,
    /// The signature manifest (media type [`OCI_MANIFEST_MEDIA_TYPE`](super::OCI_MANIFEST_MEDIA_TYPE)).
    pub manifest: Blob,
    /// The base64 DER signature, as in the layer annotation.
    pub signature: String,
}

#[cfg(feature = "signing")]
/// go-containerregistry's `ConfigFile` of an empty image with one appended layer, as
/// cosign pushes it: zero times, the payload digest as the only diff ID.
fn signature_config(payload_digest: &str) -> Vec<u8> {
    use serde::Serialize;
    #[derive(Serialize)]
    struct History {
        created: &'static str,
    }
    #[derive(Serialize)]
    struct RootFs<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        diff_ids: [&'a str; 1],
    }
    #[derive(Serialize)]
    struct Config<'a> {
        architecture: &'static str,
        created: &'static str,
        history: [History; 1],
        os: &'static str,
        rootfs: RootFs<'a>,
        config: BTreeMap<String, String>,
    }
    serde_json::to_vec(&Config {
        architecture: "",
        created: "0001-01-01T00:00:00Z",
        history: [History {
            created: "0001-01-01T00:00:00Z",
        }],
        os: "",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [payload_digest],
        },
        config: BTreeMap::new(),
    })
    .expect("always serialises")
}

/// The signature manifest for a payload and its base64 signature.
#[cfg(feature = "signing")]
fn signature_manifest(payload: &Blob, config: &Blob, signature_b64: &str) -> Blob {
    let mut layer = Descriptor::of(SIMPLE_SIGNING_MEDIA_TYPE, &payload.bytes);
    layer.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        signature_b64.to_owned(),
    )]));
    let manifest = OciManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: None,
        config: Descriptor::of(OCI_CONFIG_MEDIA_TYPE, &config.bytes),
        layers: vec![layer],
        annotations: None,
    };
    Blob::new(OCI_MANIFEST_MEDIA_TYPE, manifest.to_bytes())
}

/// Signs the manifest `manifest_digest` of `repository` (`host/path`, no tag) as cosign
/// does, with Metis's claims (`metadata`) in the payload's `optional` part.
#[cfg(feature = "signing")]
pub fn sign(
    repository: &str,
    manifest_digest: &str,
    metadata: Option<&Metadata>,
    key: &PrivateKey,
) -> Result<SignatureArtifact, SignError> {
    use base64::Engine as _;
    let tag = signature_tag(manifest_digest)
        .ok_or_else(|| SignError::Digest(manifest_digest.to_owned()))?;
    if repository.is_empty() || repository.contains(['@', ' ']) {
        return Err(SignError::Repository(repository.to_owned()));
    }
    let payload = SimpleSigning::new(
        repository,
        manifest_digest,
        metadata.map(Metadata::to_optional),
    );
    let payload = Blob::new(SIMPLE_SIGNING_MEDIA_TYPE, payload.to_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload.bytes));
    let config = Blob::new(OCI_CONFIG_MEDIA_TYPE, signature_config(&payload.digest));
    let manifest = signature_manifest(&payload, &config, &signature);
    Ok(SignatureArtifact {
        tag,
        payload,
        config,
        manifest,
        signature,
    })
}
