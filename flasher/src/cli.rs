//! Command line of `metis-flash`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Write a node's verified recovery card: `metis-flash titan-db`, insert the
/// card, power on.
#[derive(Debug, Parser)]
#[command(name = "metis-flash", version, max_term_width = 80)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the disks this machine could write a card to.
    Devices {
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check that a disk can be opened for writing (nothing is written).
    Probe {
        /// The whole-disk device, e.g. /dev/sdb or \\.\PhysicalDrive2.
        device: PathBuf,
    },
    /// Manage the public keys artifacts must be signed with.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Fetch node artifacts into the offline cache.
    Pull(PullArgs),
    /// Show, check or clean the offline cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        /// Cache directory [default: $METIS_CACHE, else ~/.cache/metis]
        #[arg(long, global = true)]
        cache: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Pin a cosign public key (PEM, e.g. the lab's cosign.pub); prints its
    /// fingerprint. Pinned keys live in <config dir>/metis/trusted-keys/.
    Add {
        /// The public key file.
        key: PathBuf,
    },
    /// List the pinned public keys by fingerprint.
    Ls,
}

/// `metis-flash pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Nodes to pull, e.g. titan-db.
    #[arg(required_unless_present = "all")]
    pub nodes: Vec<String>,
    /// Pull every node of the inventory.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Tag to pull: a build revision, or latest.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// Cache directory [default: $METIS_CACHE, else ~/.cache/metis]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Never open a network connection: use only the cache.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where the registry is; the inventory's `registry:` unless given.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry as HOST[:PORT]/PREFIX, or oci:DIR for an image-layout
    /// directory [default: the inventory's registry]
    #[arg(long)]
    pub registry: Option<String>,
    /// Repository prefix [default: from --registry, else the inventory's,
    /// else metis]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Extra CA certificate (PEM) to trust besides the system roots
    /// [default: the inventory's registry.ca_file]
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Use plain HTTP (only allowed for a loopback registry).
    #[arg(long)]
    pub insecure_http: bool,
    /// The inventory to read the registry from.
    #[arg(long, env = "METIS_INVENTORY", default_value = "inventory")]
    pub inventory: PathBuf,
}

/// `metis-flash cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached artifacts: ref, digest, size, age.
    Ls {
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs no cached ref needs, and unfinished downloads.
    Prune,
    /// Re-hash every cached blob; exit 1 if any is damaged or missing.
    Verify,
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
