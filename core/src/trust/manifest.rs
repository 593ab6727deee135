//! The few OCI image-manifest fields trust reads and writes, and the blob-digest check.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::digest::sha256_digest;
use super::{ManifestError, VerifyError};
use crate::digest::{hash_file, Sha256Digest};

/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image manifest (image-spec `manifest.md`), fields in go-containerregistry's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact's type, for artifacts that are not container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, in order.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI content descriptor, fields in go-containerregistry's order.
///
/// Not `oci::Descriptor`, on purpose: that one serialises `digest` before
/// `size`, and signatures cover the exact bytes of each; `trust` also depends
/// on nothing of `oci`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the blob.
    pub media_type: String,
    /// Length of the blob in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// Descriptor annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            size: bytes.len() as u64,
            digest: sha256_digest(bytes),
            annotations: None,
        }
    }
}

impl OciManifest {
    /// Parses manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if manifest.schema_version != 2 {
            return Err(ManifestError::SchemaVersion(manifest.schema_version));
        }
        Ok(manifest)
    }

    /// Compact JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }
}

/// A blob's content.
#[derive(Debug, Clone, Copy)]
pub enum BlobContent<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// In a file (streamed through SHA-256, never loaded whole).
    File(&'a Path),
}

/// A blob held locally (cache, download), labelled with what it claims to be.
#[derive(Debug, Clone, Copy)]
pub struct HeldBlob<'a> {
    /// Media type it was stored under.
    pub media_type: &'a str,
    /// Digest it was stored under (e.g. its cache file name) — not trusted: the
    /// content is hashed and compared with the manifest.
    pub digest: &'a str,
    /// The bytes.
    pub content: BlobContent<'a>,
}

impl HeldBlob<'_> {
    fn digest_and_len(&self) -> Result<(Sha256Digest, u64), VerifyError> {
        match self.content {
            BlobContent::Bytes(b) => Ok((Sha256Digest::of(b), b.len() as u64)),
            BlobContent::File(path) => hash_file(path).map_err(|source| VerifyError::BlobRead {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// Checks every blob the manifest names (config and each layer): one must be held
/// under its digest, hash to that digest and have that size.
pub fn verify_blobs(manifest: &[u8], held: &[HeldBlob<'_>]) -> Result<(), VerifyError> {
    let manifest = OciManifest::parse(manifest).map_err(VerifyError::ManifestMalformed)?;
    for want in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let blob = held
            .iter()
            .find(|b| b.digest == want.digest)
            .ok_or_else(|| VerifyError::BlobMissing {
                media_type: want.media_type.clone(),
                digest: want.digest.clone(),
            })?;
        let (actual, len) = blob.digest_and_len()?;
        if actual != want.digest {
            return Err(VerifyError::BlobDigestMismatch {
                media_type: want.media_type.clone(),
                expected: want.digest.clone(),
                actual: actual.to_string(),
            });
        }
        if len != want.size {
            return Err(VerifyError::BlobSizeMismatch {
                media_type: want.media_type.clone(),
                digest: want.digest.clone(),
                expected: want.size,
                actual: len,
            });
        }
    }
    Ok(())
}
