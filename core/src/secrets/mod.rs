//! Secrets: age-sealed sources in the inventory and per-node bundles sealed
//! to the operators. Formats and commands: docs/secrets.md.
//!
//! Without the `build` feature (metis-flash) only the operator's side is
//! here: [`Identities::for_operator`] and [`open_node_bundle`].
//!
//! * **Sealed sources** — `inventory/secrets/<node>.age` and
//!   `inventory/secrets/cluster.age`, ASCII-armored age files encrypted to the
//!   CI builder recipient and the operator recipients of `metis.yaml`. Their
//!   plaintext is a small JSON document ([`Source`]).
//! * **Node bundle** — [`seal_node_bundle`] decrypts a node's and the cluster's
//!   sources with the CI identity, builds the card's secrets slot with
//!   [`render::bundle`](crate::render::bundle) and encrypts it to the
//!   operators only; [`open_node_bundle`] is the flasher's side.
//! * **Unchanged or not** — [`sealed_digest`] hashes the sources' ciphertext,
//!   never their plaintext.
//!
//! Secret values never appear in an error, a `Debug` output or a file left
//! behind: errors name the file and the key, buffers are
//! [`Zeroizing`](zeroize::Zeroizing), temp
//! files are 0600 in 0700 directories (on tmpfs under `$XDG_RUNTIME_DIR` when
//! there is one) and zeroed and removed on every exit path, a panic with
//! `panic = "abort"` included when the binary's panic hook calls
//! [`wipe_plaintext_dirs`].
//!
//! ```no_run
//! # #[cfg(feature = "build")] {
//! use metis_core::secrets::{self, Identities};
//! let inv = metis_core::lab::load(std::path::Path::new("inventory"))?;
//! let ci = Identities::from_ci_env_or_file(None)?;
//! let sealed = secrets::seal_node_bundle(&inv, "titan-13", &ci)?;
//! let operator = Identities::for_operator(None)?;
//! let slot = secrets::open_node_bundle(&sealed, &operator)?;
//! assert_eq!(slot.len() as u64, metis_core::artifact::SLOT_SIZE);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod age_io;
mod bundle;
#[cfg(feature = "build")]
mod commands;
#[cfg(feature = "build")]
mod plaintext_dir;
#[cfg(feature = "build")]
mod source;

use std::path::PathBuf;

pub use age_io::{open, Identities, PASSPHRASE_ENV};
#[cfg(feature = "build")]
pub use age_io::{parse_recipients, seal, CI_IDENTITY_ENV};
pub use bundle::open_node_bundle;
#[cfg(feature = "build")]
pub use bundle::{seal_node_bundle, sealed_digest, source_recipients};
#[cfg(feature = "build")]
pub use commands::{capture, edit, init, rekey, set, SecretKey};
#[cfg(feature = "build")]
pub use plaintext_dir::wipe_plaintext_dirs;
#[cfg(feature = "build")]
pub use source::{sealed_path, HostKey, RegistryCredentials, Secret, Source, CLUSTER};

/// What can go wrong with secrets. Messages name files, nodes and keys,
/// never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// None of the given identities is a recipient of the file.
    #[error("{what} {} not encrypted to your key (you are not a recipient); {hint}", if *.plural { "are" } else { "is" })]
    NotARecipient {
        /// What could not be decrypted.
        what: String,
        /// Whether `what` is a plural noun ("this card's secrets").
        plural: bool,
        /// Who to ask or what to run.
        hint: String,
    },
    /// A passphrase was wrong.
    #[error("wrong passphrase for {what}")]
    WrongPassphrase {
        /// The identity whose passphrase was wrong.
        what: String,
    },
    /// A passphrase was needed but none could be asked for.
    #[error("{what} is protected by a passphrase and there is no terminal to ask it on; set {PASSPHRASE_ENV}")]
    NoPassphrase {
        /// The identity.
        what: String,
    },
    /// The file is not a well-formed age file, or it was altered.
    #[error("{what} is not a valid age file or was altered: {reason}")]
    Corrupt {
        /// The file.
        what: String,
        /// What age said (never plaintext).
        reason: String,
    },
    /// The decrypted plaintext is not a valid source document.
    #[error("{what}: the decrypted secrets are not valid ({reason}); fix them with `metis-build secrets edit`")]
    InvalidSource {
        /// The file.
        what: String,
        /// Where and what kind of error (line/column, never the value).
        reason: String,
    },
    /// A recipient in metis.yaml is not usable.
    #[error(
        "recipient `{recipient}` is not an age (age1…) or SSH (ssh-ed25519, ssh-rsa) public key"
    )]
    BadRecipient {
        /// The public recipient string.
        recipient: String,
    },
    /// The lab names no builder recipient, so CI could never decrypt the sources.
    #[error("metis.yaml has no builder.recipient: CI could not decrypt the sealed secrets; add the CI builder's age public key")]
    NoBuilderRecipient,
    /// No identity to decrypt with.
    #[error("no identity: {hint}")]
    NoIdentity {
        /// Where an identity is looked for.
        hint: String,
    },
    /// An identity file could not be parsed.
    #[error("{path} holds no usable age identity or SSH private key")]
    BadIdentity {
        /// The file.
        path: String,
    },
    /// The node or target is unknown.
    #[error("no node `{node}` in the inventory (targets are node names and `cluster`); `metis-build nodes` lists them")]
    UnknownTarget {
        /// The name asked for.
        node: String,
    },
    /// A sealed source is missing.
    #[error("{} does not exist; run `metis-build secrets init`", path.display())]
    MissingSource {
        /// The file.
        path: PathBuf,
    },
    /// A key name is not one `secrets set` knows.
    #[error("`{key}` is not a secret key; use node_password, k3s_token, registry.username, registry.password, ssh_host_keys.<ed25519|ecdsa|rsa>.<private|public> or file.<name>")]
    BadKey {
        /// The key.
        key: String,
    },
    /// A value is not valid for its key (the value is not shown).
    #[error("the value for `{key}` is not valid: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A tool (ssh-keygen, the editor) failed.
    #[error("{tool} failed: {reason}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status (never its output, which might hold a secret).
        reason: String,
    },
    /// A signal (Ctrl-C, SIGTERM, SIGHUP) came while a secret was in clear;
    /// the plaintext was wiped.
    #[error("interrupted while {during}: {outcome}")]
    Interrupted {
        /// What was running.
        during: String,
        /// What was kept and what was not.
        outcome: String,
    },
    /// The bundle could not be built.
    #[cfg(feature = "build")]
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Reading or writing a file.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SecretsError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| SecretsError::Io { what, source }
    }
}

/// Result of the secrets stage.
pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
