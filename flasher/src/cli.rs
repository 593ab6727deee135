//! Command line of `metis-flash`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
