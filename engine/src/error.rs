//! The engine's errors: each kind carries its exit code ([`EngineError::exit`]),
//! a hint of what to do ([`EngineError::hint`]) and whether the card is as it was
//! ([`EngineError::nothing_written`]). The CLI prints message and hint and exits
//! with the code; the GUI shows the same words.

use std::path::PathBuf;

use metis_core::location::LocationError;
use metis_core::oci::OciError;
use metis_core::trust::VerifyError;

use crate::device::DeviceError;
use crate::exit::Exit;
use crate::flash::FlashError;

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No registry is configured and none was named.
    #[error("no registry configured")]
    NoRegistry,
    /// No signing key is pinned and none was given.
    #[error("no trusted signing key in {}", dir.display())]
    NoTrustedKey {
        /// Where pinned keys are looked for.
        dir: PathBuf,
    },
    /// The operator's settings or a lab profile cannot be read or written.
    #[error("{0}")]
    Settings(String),
    /// A flag, a name or a file given is wrong.
    #[error("{0}")]
    BadInput(String),
    /// A registry location (a flag, the settings, an inventory) does not parse.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The registry could not be reached, and the cache does not hold what is needed.
    #[error("{what}: {source}")]
    Unreachable {
        /// What was being fetched.
        what: String,
        /// The registry's error.
        #[source]
        source: Box<OciError>,
    },
    /// Offline (or unreachable), and the cache does not hold it.
    #[error("{what} is not in the cache {}", cache.display())]
    NotCached {
        /// What is missing (`titan-db`, `the lab index`).
        what: String,
        /// The cache directory.
        cache: PathBuf,
        /// The command that caches it.
        command: String,
    },
    /// The registry or the cache failed (not a verification failure).
    #[error("{what}: {source}")]
    Registry {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: Box<OciError>,
    },
    /// Something in the artifact is not what it must be (malformed, missing layer).
    #[error("{0}")]
    Artifact(String),
    /// The signature, node binding, revision or a digest did not verify.
    #[error("verifying {what}: {source}")]
    Verification {
        /// What was verified.
        what: String,
        /// What did not match.
        #[source]
        source: Box<VerifyError>,
    },
    /// The artifact has no signature (none in the registry, or none cached).
    #[error("verifying {what}: signature check failed: the artifact {digest} has no signature; an unsigned artifact is never written")]
    Unsigned {
        /// What was verified.
        what: String,
        /// The manifest digest.
        digest: String,
    },
    /// The artifact is older than the revision the newest verified lab index lists.
    #[error("{node}: the artifact is revision {revision}, older than revision {listed} that the verified lab index (revision {index_revision}) lists for it")]
    OlderThanIndex {
        /// The node.
        node: String,
        /// The artifact's signed revision.
        revision: u64,
        /// The revision the index lists.
        listed: u64,
        /// The index's revision.
        index_revision: u64,
    },
    /// The artifact the verified lab index lists (by digest) is signed as
    /// another revision than the index says.
    #[error("{node}: revision check failed: the artifact is signed as revision {signed}, the verified lab index lists the same digest as revision {listed}")]
    IndexDisagrees {
        /// The node.
        node: String,
        /// The artifact's signed revision.
        signed: u64,
        /// The revision the index lists.
        listed: u64,
    },
    /// The operator's identity cannot decrypt (or be read).
    #[error("{0}")]
    Identity(String),
    /// The verified lab index lists no node of that name.
    #[error("the verified lab index lists no node `{node}`")]
    UnknownNode {
        /// The name asked for.
        node: String,
        /// The closest names listed.
        suggestions: Vec<String>,
    },
    /// Listing disks failed.
    #[error("listing disks: {0}")]
    Devices(#[source] DeviceError),
    /// Writing or reading the card failed, or it was refused.
    #[error(transparent)]
    Flash(#[from] FlashError),
}

impl EngineError {
    /// The process exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            EngineError::NoRegistry
            | EngineError::NoTrustedKey { .. }
            | EngineError::BadInput(_)
            | EngineError::Location(_)
            | EngineError::NotCached { .. }
            | EngineError::Artifact(_)
            | EngineError::Identity(_)
            | EngineError::UnknownNode { .. } => Exit::BadInput,
            EngineError::Settings(_) => Exit::Failure,
            EngineError::Unreachable { .. } => Exit::Unreachable,
            EngineError::Registry { source, .. } if source.is_unreachable() => Exit::Unreachable,
            // Content that does not match the signed manifest's digest or size.
            EngineError::Registry { source, .. } if is_content_mismatch(source) => {
                Exit::Verification
            }
            EngineError::Registry { .. } => Exit::BadInput,
            EngineError::Verification { .. }
            | EngineError::Unsigned { .. }
            | EngineError::OlderThanIndex { .. }
            | EngineError::IndexDisagrees { .. } => Exit::Verification,
            EngineError::Devices(DeviceError::Io { .. }) => Exit::Io,
            EngineError::Devices(_) => Exit::DeviceRefused,
            EngineError::Flash(e) => e.exit(),
        }
    }

    /// What the operator can do about it, when there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            EngineError::NoRegistry => "set up this laptop once with the lab's profile: \
                `metis-flash setup lab.metis` (ask the lab's maintainer for it: \
                `metis-build operator-profile > lab.metis`), or pass --registry HOST/PREFIX \
                (or oci:DIR)"
                .into(),
            EngineError::NoTrustedKey { .. } => "pin the lab's key once with \
                `metis-flash setup lab.metis` or `metis-flash trust add cosign.pub` \
                (or pass --trust-key FILE)"
                .into(),
            EngineError::Unreachable { .. } => "check the network and the registry; \
                `--offline` flashes from the cache (`metis-flash pull NODE` while online fills it)"
                .into(),
            EngineError::Registry { source, .. } if source.is_unreachable() => {
                "check the network and the registry; `--offline` flashes from the cache".into()
            }
            EngineError::NotCached { command, .. } => {
                format!("while online, run {command}; an unsigned or uncached artifact is never written")
            }
            EngineError::Unsigned { .. } => "pull it again online (`metis-flash pull NODE`); \
                if it is still unsigned, ask the lab's maintainer to publish it (`metis-build publish`)"
                .into(),
            EngineError::Registry { source, .. } if is_content_mismatch(source) => {
                "the registry (or the network) served other bytes than the signed artifact \
                 names; nothing of them was kept: pull again, and if it persists ask the lab's \
                 maintainer to publish the node again (`metis-build publish`)"
                    .into()
            }
            EngineError::Verification { .. } | EngineError::IndexDisagrees { .. } => "do not use this artifact: ask the lab's \
                maintainer to publish the node again (`metis-build publish`); if the lab's \
                signing key changed, pin the new one (`metis-flash setup`)"
                .into(),
            EngineError::OlderThanIndex { .. } => "someone may be replaying an old build: \
                pull again online (`metis-flash pull NODE`); if you really mean to write the \
                older build, pass --allow-downgrade"
                .into(),
            EngineError::Identity(_) => "pass your age identity or SSH key with --identity \
                FILE, or remember it with `metis-flash setup --identity FILE`"
                .into(),
            EngineError::UnknownNode { suggestions, .. } if !suggestions.is_empty() => {
                format!("did you mean {}? `metis-flash list` shows the lab's nodes", suggestions.join(", "))
            }
            EngineError::UnknownNode { .. } => "`metis-flash list` shows the lab's nodes".into(),
            _ => return None,
        })
    }

    /// Whether the card (or the output file) is as it was before the flash.
    pub fn nothing_written(&self) -> bool {
        match self {
            EngineError::Flash(e) => e.nothing_written(),
            _ => true,
        }
    }

    /// A verification failure of `what`.
    pub(crate) fn verification(what: impl Into<String>, source: VerifyError) -> Self {
        EngineError::Verification {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// An error of the registry or cache for `what`: unreachable registries are
    /// told apart (exit code 6, `--offline` hint).
    pub(crate) fn registry(what: impl Into<String>, source: OciError) -> Self {
        let what = what.into();
        let source = Box::new(source);
        if source.is_unreachable() {
            EngineError::Unreachable { what, source }
        } else {
            EngineError::Registry { what, source }
        }
    }
}

/// A download whose bytes are not what the (signed) manifest names.
fn is_content_mismatch(e: &OciError) -> bool {
    matches!(
        e,
        OciError::DigestMismatch { .. } | OciError::SizeMismatch { .. } | OciError::TooLarge { .. }
    )
}
