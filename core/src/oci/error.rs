//! What can go wrong moving artifacts, phrased so the operator knows what to do.

use std::path::PathBuf;

/// An error from the registry client, the image-layout directory or the cache.
///
/// Every message names the registry (or directory), the repository and the
/// digest or tag involved, and ends with what to do about it. No message ever
/// contains a password or token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A registry location or reference could not be understood.
    #[error("invalid registry reference {reference:?}: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// The repository, tag or blob does not exist in the registry.
    #[error(
        "{what} not found in {registry}/{repository}; check the node name and that \
         `metis-build publish` has published it"
    )]
    NotFound {
        /// Registry (host or `oci:DIR`).
        registry: String,
        /// Repository inside the registry.
        repository: String,
        /// The tag, digest or blob that is missing.
        what: String,
    },
    /// The registry refused the credentials (HTTP 401/403).
    #[error(
        "{registry} refused access to {repository} (HTTP {status}) with credentials from \
         {credentials}; check the user name and password there, or set \
         METIS_REGISTRY_USERNAME/METIS_REGISTRY_PASSWORD"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Repository the request was for.
        repository: String,
        /// HTTP status (401 or 403).
        status: u16,
        /// Where the credentials came from (never the credentials themselves).
        credentials: String,
    },
    /// The docker configuration delegates this registry to a credential helper.
    #[error(
        "{config} delegates credentials for {registry} to the helper `docker-credential-{helper}`; \
         credential helpers are not supported yet; set METIS_REGISTRY_USERNAME/METIS_REGISTRY_PASSWORD"
    )]
    CredentialHelper {
        /// Registry host.
        registry: String,
        /// Helper name (`credsStore` or `credHelpers` entry).
        helper: String,
        /// The docker config file.
        config: PathBuf,
    },
    /// The docker configuration file could not be read or parsed.
    #[error("reading registry credentials from {path}: {reason}; fix or remove the file")]
    CredentialConfig {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The registry could not be reached (connection refused, DNS, timeout) after retries.
    ///
    /// The message gives no advice beyond the address and the network: each
    /// binary knows its own way out (the flasher its cache) and adds it, asking
    /// [`OciError::is_unreachable`].
    #[error("cannot reach {registry} ({reason}); check the address and the network")]
    Unreachable {
        /// Registry host.
        registry: String,
        /// The underlying cause.
        reason: String,
    },
    /// The registry answered, but its TLS certificate was not accepted. Not
    /// transient and not "unreachable": retrying or falling back hides a
    /// setup mistake (or someone in the middle) that only the operator can fix.
    #[error("{registry}: {problem} (TLS: {reason})")]
    Tls {
        /// Registry host.
        registry: String,
        /// What is wrong with the certificate and what to do, in plain words.
        problem: String,
        /// The TLS library's own words.
        reason: String,
    },
    /// Content that must be small (a manifest, a signature manifest, a
    /// simple-signing payload, a config blob) is larger than
    /// [`MAX_SMALL_BYTES`](super::MAX_SMALL_BYTES). Refused when the size is
    /// announced (descriptor, `Content-Length`, file size), before reading it;
    /// otherwise as soon as more than the cap arrived.
    #[error(
        "{what} in {registry}/{repository} is {}{size} bytes, more than the {cap} bytes Metis \
         accepts for it; it was not read further — metis-build never publishes such \
         content, so this is not an artifact of the lab",
        at_least_text(*.at_least)
    )]
    TooLarge {
        /// Registry (or directory).
        registry: String,
        /// Repository.
        repository: String,
        /// What it is, e.g. `manifest latest` or `signature payload sha256:…`.
        what: String,
        /// Its size: as announced, or (`at_least`) how much had arrived when reading stopped.
        size: u64,
        /// `size` is what had arrived when reading stopped, not the whole size.
        at_least: bool,
        /// The cap.
        cap: u64,
    },
    /// A blob's download is not the size its manifest descriptor gives: the
    /// registry announced another length, or sent more bytes than the
    /// descriptor says (reading stopped there), or fewer.
    #[error(
        "blob {digest} in {registry}/{repository} is {}{actual} bytes but the manifest \
         says {expected}; the download was stopped and discarded — the registry content \
         does not match the manifest",
        at_least_text(*.at_least)
    )]
    SizeMismatch {
        /// Registry (or directory).
        registry: String,
        /// Repository.
        repository: String,
        /// The blob.
        digest: String,
        /// The size the manifest's descriptor gives.
        expected: u64,
        /// The size announced or received.
        actual: u64,
        /// `actual` is what had arrived when reading stopped, not the whole size.
        at_least: bool,
    },
    /// The registry answered with an unexpected status.
    #[error("{registry} answered HTTP {status} for {repository} ({action}): {message}")]
    Registry {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was being done.
        action: String,
        /// HTTP status, 0 when not an HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// Content did not hash to the digest it was asked for.
    #[error(
        "digest mismatch for {repository} from {registry}: expected {expected}, got {actual}; \
         the download was discarded — retry, and if it persists the registry content is corrupt"
    )]
    DigestMismatch {
        /// Registry (or directory) the content came from.
        registry: String,
        /// Repository.
        repository: String,
        /// Digest that was asked for.
        expected: String,
        /// Digest of what arrived.
        actual: String,
    },
    /// The disk holding the cache is full.
    #[error(
        "the disk holding the cache {cache} is full while storing {digest}; the partial file was \
         removed and the cache is intact; free space or run `metis-flash cache prune`"
    )]
    DiskFull {
        /// Cache directory.
        cache: PathBuf,
        /// Blob being stored.
        digest: String,
    },
    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (e.g. "writing").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An OCI image-layout directory is malformed.
    #[error("{dir} is not a usable OCI image layout: {reason}")]
    Layout {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A manifest could not be parsed or is not a Metis artifact.
    #[error("manifest {digest} in {registry}/{repository} is not usable: {reason}")]
    Manifest {
        /// Registry.
        registry: String,
        /// Repository.
        repository: String,
        /// Manifest digest (or tag).
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain HTTP was asked for a host that is not loopback, or TLS setup failed.
    #[error("{registry}: {reason}")]
    Transport {
        /// Registry host.
        registry: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Offline, and the artifact is not in the cache.
    #[error(
        "{repository}:{tag} is not in the cache {cache}; pull it while online \
         ({command}) or copy a cache from another machine"
    )]
    NotCached {
        /// The command that caches it, e.g. `` `metis-flash pull titan-db` ``.
        command: String,
        /// Repository.
        repository: String,
        /// Tag.
        tag: String,
        /// Cache directory.
        cache: PathBuf,
    },
}

/// `"at least "` when a size is only what had arrived.
fn at_least_text(partial: bool) -> &'static str {
    if partial {
        "at least "
    } else {
        ""
    }
}

impl OciError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        OciError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same request may succeed (5xx, connection
    /// trouble); 4xx and local problems are never retried.
    pub fn is_transient(&self) -> bool {
        match self {
            OciError::Unreachable { .. } => true,
            OciError::Registry { status, .. } => *status >= 500 || *status == 429 || *status == 0,
            _ => false,
        }
    }

    /// Whether the registry could not be reached at all: connection refused,
    /// DNS, timeouts, or a 5xx from a proxy or a registry that is down. The
    /// caller may fall back to what it has (the flasher: its cache) and say
    /// so in its own words. A certificate problem ([`OciError::Tls`]) is not
    /// "unreachable".
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OciError::Unreachable { .. })
            || matches!(self, OciError::Registry { status, .. } if *status >= 500)
    }
}
