//! Command line of `metis-build`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build signed recovery-card artifacts for every node of a k3s lab from its
/// GitOps inventory.
#[derive(Debug, Parser)]
#[command(name = "metis-build", version, max_term_width = 80)]
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
    /// Push one artifact from files (development and benchmarks; the real
    /// `publish` builds its inputs from the inventory).
    #[command(hide = true)]
    PushArtifact(PushArtifactArgs),
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
