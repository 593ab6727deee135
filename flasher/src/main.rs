//! `metis-flash`: thin dispatch over metis-core, the device backend and the
//! write pipeline (`flash`).
// No unsafe code, except the block-device ioctls in `device/linux_ioctl.rs`,
// which allows it for that module alone.
#![deny(unsafe_code)]

mod cli;
mod device;
mod exit;
mod flash;
mod list;
mod node;
mod picker;
mod pull;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};
use device::Backend;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        None => return node::flash_node(cli.flash).into(),
        Some(Command::Flash(args)) => return node::flash_node(args).into(),
        #[cfg(any(debug_assertions, feature = "dev-write"))]
        Some(Command::Write(args)) => return write(args).into(),
        Some(command) => command,
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<()> {
    let backend = device::Native;
    match command {
        Command::Devices { json } => {
            let disks = backend.list().context("listing disks")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&disks)?);
            } else {
                for d in disks {
                    println!(
                        "{:<14} {:>8.1} GiB  {:<5} {}{}{}",
                        d.path.display(),
                        d.size as f64 / (1u64 << 30) as f64,
                        d.bus,
                        d.model,
                        if d.removable { "  [removable]" } else { "" },
                        if d.read_only { "  [read-only]" } else { "" },
                    );
                }
            }
        }
        Command::Trust(command) => trust(command)?,
        Command::Pull(args) => pull::pull(args)?,
        Command::List(args) => list::list(args)?,
        Command::Cache { command, cache } => pull::cache(command, cache)?,
        Command::Flash(_) => unreachable!("dispatched in main"),
        #[cfg(any(debug_assertions, feature = "dev-write"))]
        Command::Write(_) => unreachable!("dispatched in main"),
        Command::Probe { device } => {
            let d = backend
                .describe(&device)
                .with_context(|| format!("probing {}", device.display()))?;
            println!(
                "{}: {} bytes, bus {}, model {:?}",
                d.path.display(),
                d.size,
                d.bus,
                d.model
            );
        }
    }
    Ok(())
}

fn trust(command: cli::TrustCommand) -> Result<()> {
    use metis_core::trust::TrustedKeys;
    let dir = TrustedKeys::default_dir().context("this system has no per-user config directory")?;
    match command {
        cli::TrustCommand::Add { key } => {
            let public = TrustedKeys::pin(&dir, &key)
                .with_context(|| format!("pinning {}", key.display()))?;
            eprintln!("pinned in {}", dir.display());
            println!("{}", public.fingerprint());
        }
        cli::TrustCommand::Ls => {
            let keys = TrustedKeys::load_dir(&dir)
                .with_context(|| format!("reading pinned keys in {}", dir.display()))?;
            if keys.is_empty() {
                eprintln!(
                    "no key pinned in {}: run `metis-flash trust add metis.pub`",
                    dir.display()
                );
            }
            for key in keys.keys() {
                println!("{}", key.fingerprint());
            }
        }
    }
    Ok(())
}

/// `metis-flash write`: flash from local, unsigned artifact files (development
/// and benchmarks; compiled only into debug builds and `--features dev-write`,
/// so the binary operators run has no way to write without verification).
#[cfg(any(debug_assertions, feature = "dev-write"))]
fn write(args: cli::WriteArgs) -> exit::Exit {
    let json = args.json;
    if !(args.quiet || json) {
        eprintln!(
            "warning: `metis-flash write` checks no signature, node or revision \
             (development and benchmarks only); operators flash with `metis-flash NODE`"
        );
    }
    let outcome = open_composer(&args).and_then(|composer| {
        let verbosity = if args.quiet || json {
            flash::Verbosity::Quiet
        } else {
            flash::Verbosity::Normal
        };
        let target = flash::Target::from_flags(
            args.device.as_deref(),
            args.output.as_deref(),
            args.yes,
            args.force_non_removable,
        )
        .expect("clap requires --device or --output");
        let slot = match (&args.slot_offset, &args.slot_file) {
            (Some(offset), Some(file)) => Some((
                *offset,
                zeroize::Zeroizing::new(std::fs::read(file).map_err(|e| {
                    flash::FlashError::BadInput(format!("reading {}: {e}", file.display()))
                })?),
            )),
            _ => None,
        };
        let mode = flash::WriteMode::from_flags(args.sparse, args.full);
        flash::run(
            composer,
            flash::FlashRequest {
                node: args.node.clone(),
                slot,
                target,
                mode,
                block_size: args.block_size,
                verbosity,
                probe_capacity: !args.skip_capacity_probe,
                signature_verified: false,
            },
        )
    });
    finish(outcome, json, args.quiet)
}

/// Prints the outcome of a flash for humans or scripts and picks the exit code.
/// The success line is printed only after the read-back verified the card.
fn finish(
    outcome: Result<flash::FlashSummary, flash::FlashError>,
    json: bool,
    quiet: bool,
) -> exit::Exit {
    match outcome {
        Ok(summary) => {
            if json {
                let mut value = serde_json::to_value(&summary).expect("a summary serializes");
                value["ok"] = serde_json::Value::Bool(true);
                println!("{value}");
            } else if !quiet {
                eprintln!(
                    "{}: {} bytes written to {} in {:.1} s ({:.1} MiB/s), read back and verified in {:.1} s{}",
                    summary.node,
                    summary.image_bytes,
                    summary.target.display(),
                    summary.write_seconds,
                    summary.write_bytes_per_second / (1u64 << 20) as f64,
                    summary.verify_seconds,
                    if summary.verified {
                        ""
                    } else {
                        " (UNSIGNED: no signature was checked)"
                    },
                );
            }
            if summary.target_kind == "device" && !json {
                eprintln!("insert and power on");
            }
            exit::Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            let code = e.exit();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string(), "exit_code": code as u8})
                );
            }
            code
        }
    }
}

/// Opens base, table and patch; any problem with them is bad input.
#[cfg(any(debug_assertions, feature = "dev-write"))]
fn open_composer(
    args: &cli::WriteArgs,
) -> Result<metis_core::image::compose::Composer<std::fs::File>, flash::FlashError> {
    use metis_core::image::chunks::ChunkTable;
    use metis_core::image::compose::{ComposeOptions, Composer};
    use metis_core::image::patch::Patch;
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        flash::FlashError::BadInput(format!("{}: {e}", what.display()))
    };
    let table: ChunkTable = std::fs::read(&args.table)
        .map_err(|e| bad(&args.table, &e))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(&args.table, &e)))?;
    let patch = match &args.patch {
        Some(path) => std::fs::read(path)
            .map_err(|e| bad(path, &e))
            .and_then(|b| Patch::decode(&b).map_err(|e| bad(path, &e)))?,
        None => Patch::empty(table.image_size()),
    };
    let base = std::fs::File::open(&args.base).map_err(|e| bad(&args.base, &e))?;
    Composer::new(base, table, patch, ComposeOptions::default()).map_err(|e| bad(&args.base, &e))
}
