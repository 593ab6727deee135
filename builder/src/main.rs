//! `metis-build`: thin dispatch over metis-core.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use anyhow::Result;
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
        Command::PushArtifact(args) => push_artifact(args),
    }
}

fn push_artifact(args: cli::PushArtifactArgs) -> Result<ExitCode> {
    use anyhow::Context;
    use metis_core::oci;
    let split = |s: &str, what: &str| {
        s.split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .with_context(|| format!("{what} {s:?} is not KEY=VALUE"))
    };
    let layers = args
        .layers
        .iter()
        .map(|l| {
            let (media_type, path) = split(l, "--layer")?;
            Ok(oci::LayerFile {
                media_type,
                path: path.into(),
                shared_in: args.shared_in.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let annotations = args
        .annotations
        .iter()
        .map(|a| split(a, "--annotation"))
        .collect::<Result<_>>()?;
    let config = std::fs::read(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let registry = oci::Registry::open(
        &args.registry,
        &oci::RegistryOptions {
            ca_file: args.ca_file,
            insecure_http: args.insecure_http,
            ..Default::default()
        },
    )?;
    let published = oci::block_on(oci::publish_node_artifact(
        &registry,
        &args.repository,
        &args.tags,
        &config,
        &layers,
        &annotations,
        &oci::Progress::none(),
    ))
    .with_context(|| format!("pushing {} to {}", args.repository, registry.name()))?;
    eprintln!(
        "pushed {}:{} = {} ({} bytes uploaded, {} blob(s) mounted, {} already there)",
        args.repository,
        args.tags.join(","),
        published.digest,
        published.uploaded_bytes,
        published.mounted_blobs,
        published.present_blobs
    );
    println!("{}", published.digest);
    Ok(ExitCode::SUCCESS)
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
