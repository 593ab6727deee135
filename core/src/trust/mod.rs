//! Trust: cosign-compatible signatures, offline verification bound to node and
//! revision, and the signed lab index.
//!
//! Nothing unsigned, tampered, meant for another node or older than what this machine
//! has seen may be written to a card. The builder signs each node artifact's manifest
//! digest the way `cosign sign --key` does (ECDSA P-256 over a simple-signing payload,
//! published at `sha256-<hex>.sig`), adding Metis claims (`metis.node`, `metis.class`,
//! `metis.revision`, `metis.built`, `metis.kind`) to the payload's `optional` part. The
//! flasher verifies with [`verify_node`] / [`verify_index`] against the pinned keys,
//! offline. See `docs/trust.md`.
//!
//! This module produces and checks bytes; `oci` moves them.
//!
//! Key generation, decryption and signing sit behind the `signing` feature (on by
//! default); verification needs only `p256`, `sha2`, `base64` and `serde_json`.
//!
//! ```
//! # #[cfg(feature = "signing")] {
//! use metis_core::trust::*;
//!
//! // metis-build: sign the node manifest the registry module pushed.
//! let key = PrivateKey::generate();
//! let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
//! let meta = Metadata::node("titan-db", "amd64-agents", 42, "2026-11-25T23:00:00Z");
//! let sig = sign("registry.lab/metis/nodes/titan-db", &sha256_digest(manifest), Some(&meta), &key)?;
//! // push sig.payload, sig.config, then sig.manifest at tag sig.tag
//!
//! // metis-flash: verify before writing anything.
//! let cache = std::env::temp_dir().join(format!("metis-doc-{}", std::process::id()));
//! let mut seen = SeenRevisions::load(&cache)?;
//! let keys = TrustedKeys::new(vec![key.public_key()]);
//! let payloads = [sig.payload.bytes.as_slice()];
//! let config = HeldBlob { media_type: "application/vnd.oci.empty.v1+json",
//!     digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
//!     content: BlobContent::Bytes(b"{}") };
//! let verified = verify_node(
//!     &keys,
//!     &HeldSignature { manifest: &sig.manifest.bytes, payloads: &payloads },
//!     &HeldArtifact { manifest, blobs: &[config] },
//!     "titan-db",
//!     &mut seen,
//!     false,
//! )?;
//! assert_eq!(verified.metadata.revision, 42);
//! # std::fs::remove_dir_all(&cache).ok();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blob;
mod digest;
mod error;
mod index;
mod keys;
mod manifest;
mod payload;
#[cfg(feature = "signing")]
mod private_key;
mod seen;
mod signature;
mod verify;

#[cfg(feature = "signing")]
pub use blob::sign_blob;
pub use blob::verify_blob;
pub use digest::{sha256_digest, signature_tag};
pub use error::{KeyError, ManifestError, SignError, VerifyError};
pub use index::{
    verify_index, IndexArtifact, IndexEntry, LabIndex, INDEX_MEDIA_TYPE, OCI_EMPTY_CONFIG,
    OCI_EMPTY_MEDIA_TYPE,
};
pub use keys::{PublicKey, TrustedKeys};
pub use manifest::{
    verify_blobs, BlobContent, Descriptor, HeldBlob, OciManifest, OCI_MANIFEST_MEDIA_TYPE,
};
pub use payload::{Kind, Metadata, SimpleSigning, SIMPLE_SIGNING_TYPE};
#[cfg(feature = "signing")]
pub use private_key::{
    generate_key_pair, password_from_env, PrivateKey, COSIGN_PRIVATE_KEY_LABEL, PASSWORD_ENV,
    PRIVATE_KEY_ENV, SIGSTORE_PRIVATE_KEY_LABEL,
};
pub use seen::{SeenRevisions, Subject};
#[cfg(feature = "signing")]
pub use signature::sign;
pub use signature::{
    Blob, SignatureArtifact, OCI_CONFIG_MEDIA_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};
pub use verify::{
    signature_payloads, verify_node, verify_signature, HeldArtifact, HeldSignature, Verified,
};

/// Fingerprint of the example lab's DEMO signing key (`inventory/demo-keys/cosign.pub`),
/// whose private half is public: the flasher warns loudly when an artifact verifies with
/// it anywhere but a loopback or `oci:` registry.
pub const DEMO_KEY_FINGERPRINT: &str =
    "de61bbfc11e58cefda6a136ab7e09d39c78b9048657d972b7ba5b10ba86fa1bc";
