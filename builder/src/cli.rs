//! Command line of `metis-build`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build signed recovery-card artifacts for every node of a k3s lab from its
/// GitOps inventory.
#[derive(Debug, Parser)]
#[command(
    name = "metis-build",
    version = env!("METIS_LONG_VERSION"),
    max_term_width = 80
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory: every mistake with file:line and a fix.
    ///
    /// Exit status: 0 when there is no error (warnings allowed), 1 when there
    /// is at least one error, 2 on bad usage.
    Check(CheckArgs),
    /// List the nodes with class, role and address.
    Nodes(NodesArgs),
    /// Render a node's seed (--out DIR) and/or its card image (--image FILE).
    ///
    /// --out writes DIR/seed/ (user-data, meta-data, network-config, metis/...),
    /// DIR/root/ (files the image gets at build time, e.g. etc/machine-id) and
    /// DIR/render.json (instance-id, machine-id, edits). Never the node's
    /// secrets. For a k3s server, prints on stderr the kubectl commands to run
    /// before its card boots. --image lays the seed into the class's golden
    /// image (digest checked first) without root or loop mounts.
    ///
    /// Exit status: 0 when rendered, 1 on any error.
    Render(RenderArgs),
    /// Manage the cosign signing key pair.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Keep a prepared vendor image as a class's golden image.
    #[command(subcommand)]
    Golden(GoldenCommand),
    /// Push one artifact from files (development and benchmarks; the real
    /// `publish` builds its inputs from the inventory).
    #[command(hide = true)]
    PushArtifact(PushArtifactArgs),
    /// Create, change and re-encrypt the sealed secrets (secrets/*.age).
    ///
    /// Values are read from stdin or an editor, never from the command line,
    /// and are never printed. Commands that decrypt use the CI builder's age
    /// identity: --identity FILE, or $METIS_AGE_IDENTITY (the file's contents).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Show which nodes a publish would build, and why.
    ///
    /// A node is rebuilt when its input digest (golden image, rendered seed,
    /// sealed secrets' ciphertext, operator recipients, builder and format
    /// versions) differs from the one on its published `latest` artifact.
    /// Exit status 0, or 1 when some node's inputs could not be computed (its
    /// action is `fail`; the other nodes are still planned).
    Plan(PlanArgs),
    /// Print the lab profile operators' laptops are set up from (JSON, stdout).
    ///
    /// Registry, repository prefix, the lab CA (registry.ca_file, inline) and
    /// the signing public keys, from metis.yaml; an oci: directory is made
    /// absolute. Public material only: no private key, identity or password.
    /// Save it and give it to operators: `metis-build operator-profile >
    /// lab.metis`, then on each laptop `metis-flash setup lab.metis`.
    ///
    /// Exit status: 0 printed (warnings on stderr), 1 on any error.
    OperatorProfile(OperatorProfileArgs),
    /// Build, push and sign every changed node, then the signed lab index.
    ///
    /// Unchanged nodes cost nothing (no upload, no manifest). Each class base
    /// is uploaded once. A failing node or class does not stop the others. The
    /// index is published only if every built node succeeded (or with
    /// --partial). Nothing to do is success, whatever --revision says. Exit
    /// status 0 when all succeeded, 1 when any node failed. Signing key: --key
    /// FILE or $COSIGN_PRIVATE_KEY, with $COSIGN_PASSWORD. CI identity
    /// (decrypts the sealed secrets): --identity FILE or $METIS_AGE_IDENTITY.
    Publish(PublishArgs),
    /// Sign a file (a release's SHA256SUMS) as `cosign sign-blob --key` does:
    /// base64 DER ECDSA P-256 over SHA-256 of its bytes.
    ///
    /// Signing key: --key FILE or $COSIGN_PRIVATE_KEY, with $COSIGN_PASSWORD.
    /// Checks with `metis-build verify-blob`, `cosign verify-blob --key KEY.pub
    /// --signature SIG --insecure-ignore-tlog FILE`, or openssl (docs/install.md).
    SignBlob(SignBlobArgs),
    /// Check a file's signature made by `sign-blob` or `cosign sign-blob`.
    ///
    /// Exit status: 0 when a given key verifies it, 1 when none does.
    VerifyBlob(VerifyBlobArgs),
    /// Print the shell completion script for SHELL on stdout.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Write the man pages of metis-flash and metis-build into DIR
    /// (scripts/release).
    #[command(hide = true)]
    Man {
        /// Directory for metis-flash.1, metis-flash-setup.1, metis-build.1, …
        dir: PathBuf,
    },
}

/// Where to publish; the inventory's `registry:` unless given.
#[derive(Debug, Args)]
pub struct RegistryArg {
    /// Registry as HOST[:PORT][/PREFIX], or oci:DIR
    /// [default: the inventory's registry]
    #[arg(long)]
    pub registry: Option<String>,
    /// Extra CA certificate (PEM) [default: the inventory's registry.ca_file]
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (loopback registries only).
    #[arg(long)]
    pub insecure_http: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub registry: RegistryArg,
    #[command(flatten)]
    pub identity: IdentityArg,
    /// Print the plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Nodes to publish (default: every node the plan says to build).
    pub nodes: Vec<String>,
    /// Every planned node (the default when no node is named).
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Nodes built in parallel.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Show what would be built; build and push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish the index even when some nodes failed (they keep their old entry).
    #[arg(long)]
    pub partial: bool,
    /// Build every selected node even if unchanged (e.g. to re-sign them
    /// with a new key).
    #[arg(long)]
    pub rebuild: bool,
    /// Delete the artifacts (tags and manifests) of nodes removed from the
    /// inventory, once the new index no longer lists them.
    #[arg(long)]
    pub prune: bool,
    /// Revision to publish: newer than the published one, or equal to finish
    /// an interrupted run [default: the published revision + 1]
    #[arg(long)]
    pub revision: Option<u64>,
    /// Cosign private key file [default: $COSIGN_PRIVATE_KEY]
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Scratch directory; class bases are kept there between runs.
    #[arg(long, default_value = "target/metis-work")]
    pub work_dir: PathBuf,
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub registry: RegistryArg,
    #[command(flatten)]
    pub identity: IdentityArg,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create what is missing: secrets/cluster.age (random k3s token) and,
    /// per node without secrets/<node>.age, SSH host keys (ssh-keygen) and a
    /// k3s node password. Never overwrites a sealed file.
    Init {
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Set one secret of a node (or of `cluster`) to the value read from stdin.
    ///
    /// KEY: node_password, k3s_token, registry.username, registry.password,
    /// ssh_host_keys.<ed25519|ecdsa|rsa>.<private|public>, file.<name>.
    Set {
        /// Node name, or `cluster` for the lab-wide secrets.
        node: String,
        /// Which secret.
        key: String,
        #[command(flatten)]
        identity: IdentityArg,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Edit a node's (or `cluster`'s) secrets in $EDITOR (a 0600 temp file,
    /// wiped afterwards), then re-encrypt them.
    Edit {
        /// Node name, or `cluster`.
        node: String,
        #[command(flatten)]
        identity: IdentityArg,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Re-encrypt every sealed file to the recipients now in metis.yaml
    /// (after adding or removing an operator or the builder key).
    Rekey {
        #[command(flatten)]
        identity: IdentityArg,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Import a node's SSH host keys and k3s node password from a copy of its
    /// files: DIR/etc/ssh/ssh_host_*_key{,.pub}, DIR/etc/rancher/node/password.
    Capture {
        /// Node name.
        node: String,
        /// Root of the copied files (e.g. the node's root filesystem, mounted).
        dir: PathBuf,
        #[command(flatten)]
        identity: IdentityArg,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Write a node's secrets bundle, encrypted to the operators only (the
    /// artifact's secrets layer), to FILE.
    Bundle {
        /// Node name.
        node: String,
        /// File to write the encrypted bundle to.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        identity: IdentityArg,
        #[command(flatten)]
        inventory: InventoryArg,
    },
    /// Print the digest of a node's sealed secrets (sha256 of the ciphertext,
    /// part of the node's input digest).
    Digest {
        /// Node name.
        node: String,
        #[command(flatten)]
        inventory: InventoryArg,
    },
}

/// The CI builder's age identity.
#[derive(Debug, Args)]
pub struct IdentityArg {
    /// age identity file of the CI builder (default: the contents of
    /// $METIS_AGE_IDENTITY).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GoldenCommand {
    /// Check FILE against --sha256 and the golden-image contract for CLASS
    /// (its seed and root partitions, cloud-init, k3s installed but not
    /// enabled, no SSH host keys, an empty machine id), then keep it as
    /// <inventory>/golden/CLASS-<sha256 prefix>.img[.zst|.xz]. With --pin, also
    /// point classes/CLASS.yaml's `golden:` at it; without, print the block.
    ///
    /// Nothing is kept when a check fails. Exit status: 0 imported, 1 on any
    /// error.
    Import(GoldenImportArgs),
}

#[derive(Debug, Args)]
pub struct GoldenImportArgs {
    /// The class, e.g. rpi5-ubuntu.
    pub class: String,
    /// The prepared image: raw, .zst or .xz.
    pub file: PathBuf,
    /// The image's SHA-256 (the vendor's SHA256SUMS, or yours).
    #[arg(long, value_name = "HEX")]
    pub sha256: String,
    /// Rewrite the class's `golden:` block to pin the kept image (with
    /// --push: the image in the registry).
    #[arg(long)]
    pub pin: bool,
    /// Also store it in the registry as <prefix>/golden/CLASS, so CI builds
    /// from the registry without the image in git; prints the reference to
    /// pin (`golden: {oci: …}`).
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub registry: RegistryArg,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a cosign ECDSA P-256 key pair: cosign.key, encrypted with
    /// $COSIGN_PASSWORD (required, never prompted), and cosign.pub. Prints the
    /// public key's fingerprint (sha256 of its DER) on stdout.
    Generate {
        /// Directory to write cosign.key and cosign.pub into (created if
        /// missing; existing files are never overwritten).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PushArtifactArgs {
    /// Registry as HOST[:PORT], or oci:DIR.
    #[arg(long)]
    pub registry: String,
    /// Repository, e.g. metis/nodes/titan-db.
    #[arg(long)]
    pub repository: String,
    /// Tags to put on the manifest (repeatable).
    #[arg(long = "tag", required = true)]
    pub tags: Vec<String>,
    /// Config blob (JSON file, not empty).
    #[arg(long)]
    pub config: PathBuf,
    /// Layer as MEDIA_TYPE=PATH (repeatable, in order).
    #[arg(long = "layer")]
    pub layers: Vec<String>,
    /// Repository that shares the layers (uploaded once, mounted elsewhere).
    #[arg(long)]
    pub shared_in: Option<String>,
    /// Manifest annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Extra CA certificate (PEM).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (loopback registries only).
    #[arg(long)]
    pub insecure_http: bool,
}

/// Where the inventory is.
#[derive(Debug, Args)]
pub struct InventoryArg {
    /// Inventory directory (holds metis.yaml, classes/, nodes/).
    #[arg(long, env = "METIS_INVENTORY", default_value = "inventory")]
    pub inventory: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Print the findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SignBlobArgs {
    /// The file to sign.
    pub file: PathBuf,
    /// Cosign private key (PEM) [default: $COSIGN_PRIVATE_KEY].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Write the signature here instead of stdout.
    #[arg(long, value_name = "SIG")]
    pub output_signature: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyBlobArgs {
    /// The signed file.
    pub file: PathBuf,
    /// Public key(s) (PEM) to accept, e.g. release/metis-release.pub.
    #[arg(long = "key", value_name = "PUB", required = true)]
    pub keys: Vec<PathBuf>,
    /// The signature file (base64 DER, as `sign-blob` writes it).
    #[arg(long, value_name = "SIG")]
    pub signature: PathBuf,
}

#[derive(Debug, Args)]
pub struct OperatorProfileArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// The lab's name, shown to operators [default: the inventory's
    /// cluster.domain]
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Print the nodes as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Node to render (file stem of nodes/<node>.yaml).
    pub node: String,
    /// Directory to write the seed into for inspection; must be new or empty.
    #[arg(long, value_name = "DIR", required_unless_present = "image")]
    pub out: Option<PathBuf>,
    /// Write the node's whole card image (golden image + seed, secrets slot
    /// zeroed) to FILE, sparse.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub inventory: InventoryArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
