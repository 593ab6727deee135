//! Command line of `metis-flash`.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Write a node's verified recovery card: `metis-flash titan-db`, insert the
/// card, power on.
///
/// Without NODE (or without --device/--output) on a terminal, pick the node
/// from the signed lab index (or the card from the disks this machine sees).
/// A node named like a subcommand is flashed with `metis-flash flash NAME`.
/// Set up a laptop once with `metis-flash setup lab.metis`.
#[derive(Debug, Parser)]
#[command(
    name = "metis-flash",
    version = env!("METIS_LONG_VERSION"),
    max_term_width = 80,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `metis-flash NODE …`: the same as `metis-flash flash NODE …`.
    #[command(flatten)]
    pub flash: FlashArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the lab's nodes from the signed lab index: class, revision,
    /// whether each is cached (or stale) and whether the cached artifact
    /// verifies (signature, node, revision; blobs are checked when flashing).
    List(ListArgs),
    /// Flash a node's verified card (`metis-flash NODE` is the same): pull (or
    /// use the cache), verify the signature and every digest, decrypt the
    /// secrets, write, read back. Use this form for a node named like a
    /// subcommand (`metis-flash flash list`). Exit codes: `metis-flash --help`.
    Flash(FlashArgs),
    /// Set this laptop up once: the lab's registry, CA and signing keys from a
    /// lab profile (`metis-build operator-profile > lab.metis`) or from flags,
    /// and the operator's identity. Shows each key's fingerprint to confirm.
    Setup(SetupArgs),
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
    /// Development and benchmarks only: write a card from local, UNSIGNED
    /// artifact files. No signature, node binding or revision is checked.
    ///
    /// Takes the class base, the composed chunk table, the node patch and the
    /// decrypted secrets-slot bytes. Every chunk is checked against the given
    /// table before it is written, the partition-table area is written last,
    /// and the card is read back bypassing the page cache. Operators flash with
    /// `metis-flash NODE`, which verifies the signed artifact first. Present
    /// only in debug builds and builds with `--features dev-write`.
    #[cfg(any(debug_assertions, feature = "dev-write"))]
    Write(WriteArgs),
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
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// E.g. `metis-flash completions bash > /etc/bash_completion.d/metis-flash`;
    /// the release archives carry them all in completions/.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
}

/// `metis-flash write` (debug builds and `--features dev-write` only).
#[cfg(any(debug_assertions, feature = "dev-write"))]
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["device", "output"])))]
#[command(group(ArgGroup::new("zeros").args(["sparse", "full"])))]
pub struct WriteArgs {
    /// The class base (seekable zstd, BASE.zst).
    #[arg(long, value_name = "BASE")]
    pub base: PathBuf,
    /// The composed chunk table (JSON), as in the node's signed config.
    #[arg(long, value_name = "TABLE")]
    pub table: PathBuf,
    /// The node patch (METISPAT); without it the card is the base as is.
    #[arg(long, value_name = "PATCH")]
    pub patch: Option<PathBuf>,
    /// Byte offset of the secrets slot in the image.
    #[arg(long, value_name = "N", requires = "slot_file")]
    pub slot_offset: Option<u64>,
    /// The decrypted secrets bundle written into the slot.
    #[arg(long, value_name = "BUNDLE", requires = "slot_offset")]
    pub slot_file: Option<PathBuf>,
    /// The whole disk to write (/dev/sdX, /dev/mmcblkN).
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// Write an image file instead of a disk (for VMs and tests).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The node's name: shown, and typed to confirm.
    #[arg(long, value_name = "NAME", default_value = "node")]
    pub node: String,
    /// Do not ask for the node name (only with an explicit --device).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Accept a disk the OS does not report as removable, USB or SD.
    #[arg(long)]
    pub force_non_removable: bool,
    /// Skip all-zero chunks after zeroing them with the device's zero-out
    /// (default for --output).
    #[arg(long)]
    pub sparse: bool,
    /// Write every byte (default for --device).
    #[arg(long)]
    pub full: bool,
    /// Bytes per write (power of two, 4 KiB..64 MiB); K/M suffixes allowed.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    pub block_size: usize,
    /// No progress bar or messages on stderr (errors still are).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print one JSON summary on stdout (implies -q).
    #[arg(long)]
    pub json: bool,
    /// Tests only: skip the counterfeit-capacity probe before writing.
    #[arg(long, hide = true)]
    pub skip_capacity_probe: bool,
    /// Label the card with this class (and --revision) in its Metis marker, so a
    /// later write of the same class compares instead of rewriting (spare cards);
    /// without it the card gets no marker and is never compared.
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// The revision the card's marker records (with --class).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "class")]
    pub revision: u64,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: usize = digits.parse().map_err(|_| format!("not a size: {text}"))?;
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        _ => return Err(format!("unknown unit in {text}: use K or M")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("too large: {text}"))
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
    /// Pull every node the verified lab index lists.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Also trust this cosign public key (besides the pinned ones).
    #[arg(long, value_name = "FILE")]
    pub trust_key: Vec<PathBuf>,
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

/// Where the registry is [default: what `metis-flash setup` saved].
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry as HOST[:PORT]/PREFIX, or oci:DIR for an image-layout
    /// directory [default: the one `metis-flash setup` saved]
    #[arg(long)]
    pub registry: Option<String>,
    /// Repository prefix [default: from --registry, else the saved one,
    /// else metis]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Extra CA certificate (PEM) to trust besides the system roots
    /// [default: the lab CA `metis-flash setup` saved]
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Use plain HTTP (only allowed for a loopback registry).
    #[arg(long)]
    pub insecure_http: bool,
    /// Maintainers: read the registry from this inventory's metis.yaml (its
    /// `registry:` block only).
    #[arg(long, env = "METIS_INVENTORY", value_name = "DIR")]
    pub inventory: Option<PathBuf>,
}

/// `metis-flash setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The lab profile (`metis-build operator-profile > lab.metis`).
    pub profile: Option<PathBuf>,
    /// The registry as HOST[:PORT]/PREFIX or oci:DIR (instead of, or over,
    /// the profile's).
    #[arg(long)]
    pub registry: Option<String>,
    /// The lab CA certificate (PEM) to trust for the registry.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A cosign public key to pin (besides the profile's).
    #[arg(long, value_name = "FILE")]
    pub trust_key: Vec<PathBuf>,
    /// The operator's age identity or SSH private key to use by default.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The lab's name, as shown to the operator.
    #[arg(long)]
    pub lab: Option<String>,
    /// Without a terminal: accept the keys whose fingerprints are given with
    /// --expect-fingerprint (never any other).
    #[arg(long, short = 'y', requires = "expect_fingerprint")]
    pub yes: bool,
    /// The SHA-256 fingerprint (hex) a key to pin must have; repeat for each key.
    #[arg(long, value_name = "HEX")]
    pub expect_fingerprint: Vec<String>,
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
    use std::path::Path;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_bare_form_flashes_and_subcommands_still_parse() {
        let cli = Cli::try_parse_from(["metis-flash", "titan-db", "--output", "t.img"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.flash.node.as_deref(), Some("titan-db"));
        assert_eq!(cli.flash.output.as_deref(), Some(Path::new("t.img")));
        // No NODE: the picker's case, not a usage error.
        let cli = Cli::try_parse_from(["metis-flash", "--device", "/dev/sdb"]).unwrap();
        assert!(cli.command.is_none() && cli.flash.node.is_none());
        let cli = Cli::try_parse_from(["metis-flash", "list", "--offline"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::List(ListArgs { offline: true, .. }))
        ));
        // A node named like a subcommand goes through `flash`.
        let cli = Cli::try_parse_from(["metis-flash", "flash", "list", "--yes"]).unwrap();
        match cli.command {
            Some(Command::Flash(args)) => assert_eq!(args.node.as_deref(), Some("list")),
            other => panic!("{other:?}"),
        }
        // After a flash flag, a word is the NODE, not a subcommand (clap's
        // args_conflicts_with_subcommands): subcommand flags follow the subcommand.
        let cli = Cli::try_parse_from(["metis-flash", "--offline", "list"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.flash.node.as_deref(), Some("list"));
    }

    #[test]
    fn setup_yes_needs_an_expected_fingerprint() {
        assert!(Cli::try_parse_from(["metis-flash", "setup", "lab.metis", "--yes"]).is_err());
        let cli = Cli::try_parse_from([
            "metis-flash",
            "setup",
            "lab.metis",
            "--yes",
            "--expect-fingerprint",
            "ab",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Setup(SetupArgs { yes: true, .. }))
        ));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(
            parse_size("4M"),
            Ok(metis_engine::flash::DEFAULT_BLOCK_SIZE)
        );
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("4G").is_err());
        assert!(parse_size("M").is_err());
    }
}

/// `metis-flash flash`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("flash_target").args(["device", "output"])))]
pub struct FlashArgs {
    /// The node, e.g. titan-db [default: pick one from the lab index, on a
    /// terminal]
    pub node: Option<String>,
    /// The whole disk to write (/dev/sdX, /dev/mmcblkN) [default: pick one
    /// from the disks that pass the safety rules, on a terminal]
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// Write an image file instead of a disk (for VMs and tests).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Never open a network connection: use only the cache.
    #[arg(long)]
    pub offline: bool,
    /// The operator's age identity or SSH private key
    /// [default: <config dir>/metis/identity.txt, then ~/.ssh/id_ed25519]
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Also trust this cosign public key (besides the pinned ones).
    #[arg(long, value_name = "FILE")]
    pub trust_key: Vec<PathBuf>,
    /// Accept an artifact older than the newest already seen for this node.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Do not ask for the node name (only with an explicit --device; a
    /// picked disk is always confirmed).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Accept a disk the OS does not report as removable, USB or SD.
    #[arg(long)]
    pub force_non_removable: bool,
    /// Skip all-zero chunks after zeroing them with the device's zero-out.
    #[arg(long, conflicts_with = "full")]
    pub sparse: bool,
    /// Write every byte (default for --device).
    #[arg(long)]
    pub full: bool,
    /// Bytes per write (power of two, 4 KiB..64 MiB); K/M suffixes allowed.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    pub block_size: usize,
    /// Cache directory [default: $METIS_CACHE, else ~/.cache/metis]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// No progress bar or messages on stderr (errors still are).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the progress events and then the summary on stdout, one JSON
    /// object a line (implies -q).
    #[arg(long)]
    pub json: bool,
}

/// `metis-flash list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Use only the cache (never open a network connection).
    #[arg(long)]
    pub offline: bool,
    /// Also trust this cosign public key (besides the pinned ones).
    #[arg(long, value_name = "FILE")]
    pub trust_key: Vec<PathBuf>,
    /// Cache directory [default: $METIS_CACHE, else ~/.cache/metis]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
