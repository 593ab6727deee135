//! What can go wrong with keys and with verification, one variant per check.

use std::path::PathBuf;

use thiserror::Error;

/// Reading, decrypting, generating or pinning a cosign key failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file or the pinned-keys directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a well-formed PEM block.
    #[error("not a PEM {expected}: {reason}")]
    Pem {
        /// What kind of key was expected.
        expected: &'static str,
        /// Why the PEM parser refused it.
        reason: String,
    },
    /// The PEM block is well formed but has a label this kind of key never carries.
    #[error("the PEM block is `{found}`, expected {expected}")]
    PemLabel {
        /// The label found after `-----BEGIN `.
        found: String,
        /// The label(s) accepted.
        expected: &'static str,
    },
    /// The public key is not an ECDSA P-256 SubjectPublicKeyInfo.
    #[error("the public key is not an ECDSA P-256 key (cosign key pairs are P-256): {0}")]
    PublicKey(String),
    /// The decrypted private key is not a PKCS#8 ECDSA P-256 key.
    #[error("the private key is not a PKCS#8 ECDSA P-256 key (cosign key pairs are P-256): {0}")]
    PrivateKey(String),
    /// `COSIGN_PASSWORD` is not set; Metis never prompts for it.
    #[error("COSIGN_PASSWORD is not set: set it to the password of the cosign private key (an empty value means no password)")]
    PasswordMissing,
    /// Neither a key file nor `COSIGN_PRIVATE_KEY` was given.
    #[error(
        "no signing key: pass the cosign.key file or set COSIGN_PRIVATE_KEY to its PEM contents"
    )]
    PrivateKeyMissing,
    /// The JSON inside the encrypted private key is not cosign's envelope.
    #[error("the encrypted private key is malformed: {0}")]
    Envelope(String),
    /// The envelope names a key-derivation function other than scrypt.
    #[error("the encrypted private key uses kdf `{0}`; cosign keys use scrypt")]
    UnsupportedKdf(String),
    /// The scrypt parameters are not cosign's; refused so a crafted key cannot exhaust memory.
    #[error("the encrypted private key uses scrypt N={n} r={r} p={p}; cosign uses N=32768 or 65536, r=8, p=1")]
    KdfParams {
        /// CPU/memory cost.
        n: u64,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// The envelope names a cipher other than NaCl secretbox.
    #[error("the encrypted private key uses cipher `{0}`; cosign keys use nacl/secretbox")]
    UnsupportedCipher(String),
    /// Authenticated decryption failed: wrong password or a damaged key file.
    #[error("cannot decrypt the private key: wrong COSIGN_PASSWORD, or the key file is damaged")]
    WrongPassword,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Refused to overwrite an existing key file.
    #[error("{0} already exists; move it away first (a lost private key cannot be recovered)")]
    Exists(PathBuf),
}

/// One verification check failed. Each variant is one check, named in its message;
/// nothing may be written to a card after any of them.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No public key is pinned, so nothing can be trusted.
    #[error("no trusted public key is pinned: run `metis-flash trust add metis.pub` with the lab's public key")]
    NoTrustedKeys,
    /// The signature manifest (`sha256-….sig`) is not an OCI image manifest.
    #[error("signature check failed: the signature manifest is malformed: {0}")]
    SignatureManifestMalformed(ManifestError),
    /// The signature manifest has no cosign simple-signing layer.
    #[error("signature check failed: the signature manifest has no `application/vnd.dev.cosign.simplesigning.v1+json` layer")]
    NoSignatureLayer,
    /// The simple-signing layer carries no `dev.cosignproject.cosign/signature` annotation.
    #[error("signature check failed: the signature layer has no `dev.cosignproject.cosign/signature` annotation")]
    SignatureAnnotationMissing,
    /// The payload we hold is not the blob the signature manifest names.
    #[error("payload check failed: the signature manifest names payload {expected}, the payload held is {actual}")]
    PayloadDigestMismatch {
        /// Digest in the signature manifest.
        expected: String,
        /// Digest of the payload bytes held.
        actual: String,
    },
    /// The signature annotation is not base64 of a DER ECDSA signature.
    #[error("signature check failed: the signature is not base64 DER ECDSA: {0}")]
    SignatureMalformed(String),
    /// No pinned key verifies the signature over the payload.
    #[error("signature check failed: the signature does not verify with any of the {keys} pinned public key(s) — signed by another key, or the payload was changed")]
    SignatureInvalid {
        /// How many pinned keys were tried.
        keys: usize,
    },
    /// The signed payload is not a cosign simple-signing document.
    #[error(
        "payload check failed: the signed payload is not a cosign simple-signing document: {0}"
    )]
    PayloadMalformed(String),
    /// The signed digest is not the digest of the manifest we hold.
    #[error("manifest digest check failed: the signature is for manifest {signed}, the manifest held is {actual}")]
    ManifestDigestMismatch {
        /// `critical.image.docker-manifest-digest` of the signed payload.
        signed: String,
        /// sha256 of the manifest bytes held.
        actual: String,
    },
    /// The artifact manifest is not an OCI image manifest.
    #[error("manifest check failed: the artifact manifest is malformed: {0}")]
    ManifestMalformed(ManifestError),
    /// A blob the manifest names was not provided.
    #[error("blob check failed: the manifest names {media_type} {digest}, which is not held")]
    BlobMissing {
        /// Media type of the descriptor.
        media_type: String,
        /// Digest of the descriptor.
        digest: String,
    },
    /// A blob's bytes do not hash to the digest the manifest names.
    #[error("blob check failed: {media_type} should be {expected}, the bytes held are {actual}")]
    BlobDigestMismatch {
        /// Media type of the descriptor.
        media_type: String,
        /// Digest in the manifest.
        expected: String,
        /// sha256 of the bytes held.
        actual: String,
    },
    /// A blob's length is not the size the manifest names.
    #[error("blob check failed: {media_type} {digest} should be {expected} bytes, the blob held is {actual}")]
    BlobSizeMismatch {
        /// Media type of the descriptor.
        media_type: String,
        /// Digest in the manifest.
        digest: String,
        /// Size in the manifest.
        expected: u64,
        /// Length of the blob held.
        actual: u64,
    },
    /// A blob file could not be read for hashing.
    #[error("blob check failed: reading {path}: {source}")]
    BlobRead {
        /// The blob file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The signed payload has no or a malformed `metis.*` field.
    #[error("payload check failed: the signed payload's `{field}` is missing or malformed")]
    MetadataField {
        /// The `optional` key, e.g. `metis.revision`.
        field: &'static str,
    },
    /// The signed payload is for another kind of artifact (node vs lab index).
    #[error("kind check failed: the signature is for a {signed}, expected a {expected}")]
    WrongKind {
        /// `metis.kind` in the signed payload.
        signed: String,
        /// What was being verified.
        expected: &'static str,
    },
    /// The signed payload names another node: a tag swapped between nodes.
    #[error("node check failed: this artifact is signed for node `{signed_for}`, not `{expected}` — refusing to write another node's card")]
    WrongNode {
        /// `metis.node` in the signed payload.
        signed_for: String,
        /// The node being flashed.
        expected: String,
    },
    /// The signed revision is older than one already verified on this machine.
    #[error("revision check failed: {subject} revision {revision} is older than revision {seen} already verified here (a rollback); pass --allow-downgrade to accept it deliberately")]
    Rollback {
        /// The node name, or `lab index`.
        subject: String,
        /// Revision in the signed payload.
        revision: u64,
        /// Newest revision seen for it.
        seen: u64,
    },
    /// The lab index document is malformed.
    #[error("index check failed: the lab index is malformed: {0}")]
    IndexMalformed(String),
    /// The record of seen revisions could not be read or written.
    #[error("revision record {path}: {reason}")]
    SeenStore {
        /// `<config dir>/metis/seen.json` (or an older `<cache>/trust/seen.json`).
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Signing was asked for something that cannot be signed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignError {
    /// The manifest digest is not `sha256:` and 64 lowercase hex digits.
    #[error("cannot sign `{0}`: not a sha256 manifest digest (sha256:<64 hex>)")]
    Digest(String),
    /// The repository is empty or carries a tag/digest.
    #[error("cannot sign for repository `{0}`: expected host/path without a tag or digest")]
    Repository(String),
}

/// Why bytes are not the OCI image manifest expected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON of a manifest's shape; serde's reason.
    #[error("{0}")]
    Json(serde_json::Error),
    /// A schema version other than 2.
    #[error("schemaVersion is {0}, not 2")]
    SchemaVersion(u32),
    /// A lab index manifest without exactly one index layer.
    #[error(
        "a lab index manifest has exactly one {} layer",
        super::index::INDEX_MEDIA_TYPE
    )]
    NotOneIndexLayer,
}
