//! `metis-flash`: thin dispatch over metis-core and the device backend.
#![forbid(unsafe_code)]

mod cli;
mod device;
mod pull;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};
use device::Backend;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let backend = device::Native;
    match cli.command {
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
        Command::Cache { command, cache } => pull::cache(command, cache)?,
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
