//! `metis-build`: thin dispatch over metis-core.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use metis_core::inventory;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Nodes(args) => nodes(args),
        Command::Keys(cli::KeysCommand::Generate { out }) => keys_generate(&out),
    }
}

fn check(args: cli::CheckArgs) -> Result<ExitCode> {
    let dir = &args.inventory.inventory;
    let checked = inventory::check(dir);
    let errors = checked.error_count();
    let warnings = checked.diagnostics.len() - errors;
    if args.json {
        let out = serde_json::json!({
            "inventory": dir,
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "nodes": checked.inventory.as_ref().map(|i| i.nodes.len()),
            "diagnostics": checked.diagnostics,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for d in &checked.diagnostics {
            // Paths relative to the working directory, so editors can jump to file:line.
            let mut d = d.clone();
            if d.file != *dir {
                d.file = dir.join(&d.file);
            }
            eprintln!("{d}");
        }
        match &checked.inventory {
            Some(inv) => eprintln!(
                "ok: {} node(s) in {} class(es), {} warning(s)",
                inv.nodes.len(),
                inv.classes.len(),
                warnings
            ),
            None => eprintln!("{errors} error(s), {warnings} warning(s): fix the errors above and run check again"),
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn nodes(args: cli::NodesArgs) -> Result<ExitCode> {
    let inv = inventory::load(&args.inventory.inventory)?;
    if args.json {
        let list: Vec<_> = inv
            .nodes
            .values()
            .map(|n| {
                serde_json::json!({
                    "node": n.name,
                    "class": n.class,
                    "role": n.role,
                    "ip": n.primary_ipv4(),
                    "hostname": n.hostname,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!("{:<12} {:<22} {:<7} IP", "NODE", "CLASS", "ROLE");
        for n in inv.nodes.values() {
            let ip = n
                .primary_ipv4()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "dhcp".into());
            println!(
                "{:<12} {:<22} {:<7} {}",
                n.name,
                n.class,
                n.role.to_string(),
                ip
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keys_generate(out: &std::path::Path) -> Result<ExitCode> {
    let password = metis_core::trust::password_from_env()?;
    let public = metis_core::trust::generate_key_pair(out, password.as_bytes())
        .with_context(|| format!("generating a cosign key pair in {}", out.display()))?;
    eprintln!(
        "wrote {} (keep it secret: CI secret COSIGN_PRIVATE_KEY) and {} (goes in metis.yaml)",
        out.join("cosign.key").display(),
        out.join("cosign.pub").display()
    );
    println!("{}", public.fingerprint());
    Ok(ExitCode::SUCCESS)
}
