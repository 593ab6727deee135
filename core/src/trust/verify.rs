//! Offline verification of a node artifact or the lab index against pinned keys.
//!
//! The checks, in order, each its own [`VerifyError`]: a pinned key exists; the
//! signature manifest names a simple-signing payload and the payload held is that
//! blob; the signature verifies with a pinned key; the payload is cosign's and signs
//! the digest of the manifest held; it is the expected kind (node or index), for the
//! node being flashed, and not older than the newest revision seen here; every blob
//! the manifest names is held with that digest and size. Only then is the revision
//! recorded. There is no way to skip a check.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use p256::ecdsa::Signature;

use super::digest::sha256_digest;
use super::manifest::{verify_blobs, HeldBlob, OciManifest};
use super::payload::{Kind, Metadata, SimpleSigning};
use super::seen::{SeenRevisions, Subject};
use super::signature::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
use super::{TrustedKeys, VerifyError};

/// A signature as fetched from `sha256-<hex>.sig`: its manifest and the payload blob(s)
/// its layers name.
#[derive(Debug, Clone, Copy)]
pub struct HeldSignature<'a> {
    /// The signature manifest bytes.
    pub manifest: &'a [u8],
    /// The simple-signing payload blobs (usually one).
    pub payloads: &'a [&'a [u8]],
}

/// A signed artifact as held: its manifest bytes and its blobs.
#[derive(Debug, Clone, Copy)]
pub struct HeldArtifact<'a> {
    /// The artifact manifest bytes (whose sha256 is the signed digest).
    pub manifest: &'a [u8],
    /// The config and layer blobs.
    pub blobs: &'a [HeldBlob<'a>],
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The verified payload.
    pub payload: SimpleSigning,
    /// The Metis claims in it.
    pub metadata: Metadata,
    /// `sha256:` digest of the verified manifest.
    pub manifest_digest: String,
    /// Fingerprint of the pinned key that verified the signature.
    pub key_fingerprint: String,
}

/// The payload blobs a signature manifest names (its simple-signing layers), so the
/// registry module knows what to fetch for [`HeldSignature::payloads`]. Nothing is
/// trusted yet.
pub fn signature_payloads(
    signature_manifest: &[u8],
) -> Result<Vec<super::manifest::Descriptor>, VerifyError> {
    let manifest =
        OciManifest::parse(signature_manifest).map_err(VerifyError::SignatureManifestMalformed)?;
    let layers: Vec<_> = manifest
        .layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .collect();
    if layers.is_empty() {
        return Err(VerifyError::NoSignatureLayer);
    }
    Ok(layers)
}

/// Checks the signature alone: payload held == payload named, signature valid for a
/// pinned key, payload signs `manifest`'s digest. Returns the payload and the key's
/// fingerprint. Node, revision and blobs are not checked: use [`verify_node`] or
/// [`verify_index`](super::verify_index) to flash.
pub fn verify_signature(
    keys: &TrustedKeys,
    signature: &HeldSignature<'_>,
    manifest: &[u8],
) -> Result<(SimpleSigning, String), VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoTrustedKeys);
    }
    let sig_manifest =
        OciManifest::parse(signature.manifest).map_err(VerifyError::SignatureManifestMalformed)?;
    let layers: Vec<_> = sig_manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .collect();
    if layers.is_empty() {
        return Err(VerifyError::NoSignatureLayer);
    }
    // Cosign appends one layer per signature; any one valid layer is enough, and
    // the first failure is reported when none is.
    let mut first_error = None;
    for layer in layers {
        match verify_layer(keys, layer, signature.payloads, manifest) {
            Ok(ok) => return Ok(ok),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one layer was tried"))
}

fn verify_layer(
    keys: &TrustedKeys,
    layer: &super::manifest::Descriptor,
    payloads: &[&[u8]],
    manifest: &[u8],
) -> Result<(SimpleSigning, String), VerifyError> {
    let signature_b64 = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        .ok_or(VerifyError::SignatureAnnotationMissing)?;
    let payload = match payloads.iter().find(|p| sha256_digest(p) == layer.digest) {
        Some(p) => *p,
        None => {
            return Err(VerifyError::PayloadDigestMismatch {
                expected: layer.digest.clone(),
                actual: if payloads.is_empty() {
                    "none".to_owned()
                } else {
                    payloads
                        .iter()
                        .map(|p| sha256_digest(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
        }
    };
    let der = BASE64
        .decode(signature_b64.trim())
        .map_err(|e| VerifyError::SignatureMalformed(e.to_string()))?;
    let sig =
        Signature::from_der(&der).map_err(|e| VerifyError::SignatureMalformed(e.to_string()))?;
    let key = keys
        .keys()
        .iter()
        .find(|k| k.verifies(payload, &sig))
        .ok_or(VerifyError::SignatureInvalid {
            keys: keys.keys().len(),
        })?;
    // Only a payload a pinned key signed is parsed.
    let payload = SimpleSigning::parse(payload)?;
    let actual = sha256_digest(manifest);
    if payload.critical.image.docker_manifest_digest != actual {
        return Err(VerifyError::ManifestDigestMismatch {
            signed: payload.critical.image.docker_manifest_digest,
            actual,
        });
    }
    Ok((payload, key.fingerprint()))
}

/// Everything before writing a node's card: the signature (see [`verify_signature`]),
/// that it signs a node artifact for `node`, not older than the newest revision seen
/// for `node` (unless `allow_downgrade`), and every blob of the manifest. On success
/// the revision is recorded in `seen`.
pub fn verify_node(
    keys: &TrustedKeys,
    signature: &HeldSignature<'_>,
    artifact: &HeldArtifact<'_>,
    node: &str,
    seen: &mut SeenRevisions,
    allow_downgrade: bool,
) -> Result<Verified, VerifyError> {
    let subject = Subject::Node(node);
    let verified = verify_signed(keys, signature, artifact, subject, seen, allow_downgrade)?;
    seen.record(subject, verified.metadata.revision)?;
    Ok(verified)
}

/// The shared checks of node and index verification; records nothing.
pub(crate) fn verify_signed(
    keys: &TrustedKeys,
    signature: &HeldSignature<'_>,
    artifact: &HeldArtifact<'_>,
    subject: Subject<'_>,
    seen: &SeenRevisions,
    allow_downgrade: bool,
) -> Result<Verified, VerifyError> {
    let kind = match subject {
        Subject::Node(_) => Kind::Node,
        Subject::Index => Kind::Index,
    };
    let (payload, key_fingerprint) = verify_signature(keys, signature, artifact.manifest)?;
    let metadata = Metadata::from_optional(payload.optional.as_ref()).map_err(|e| match e {
        // A kind-less payload is not a Metis artifact of either kind.
        VerifyError::MetadataField {
            field: "metis.kind",
        } => VerifyError::WrongKind {
            signed: "payload without metis.kind".to_owned(),
            expected: kind.as_str(),
        },
        e => e,
    })?;
    if metadata.kind != kind {
        return Err(VerifyError::WrongKind {
            signed: metadata.kind.as_str().to_owned(),
            expected: kind.as_str(),
        });
    }
    if let Subject::Node(node) = subject {
        let signed_for = metadata.node.as_deref().unwrap_or_default();
        if signed_for != node {
            return Err(VerifyError::WrongNode {
                signed_for: signed_for.to_owned(),
                expected: node.to_owned(),
            });
        }
    }
    seen.check(subject, metadata.revision, allow_downgrade)?;
    verify_blobs(artifact.manifest, artifact.blobs)?;
    Ok(Verified {
        payload,
        manifest_digest: sha256_digest(artifact.manifest),
        key_fingerprint,
        metadata,
    })
}
