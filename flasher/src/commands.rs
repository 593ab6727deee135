//! The subcommands: each turns its flags into engine calls and shows the result.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use metis_engine::device::{self, Backend, Candidate, Policy};
use metis_engine::flash::{self, size_text, FlashSummary, Target, WriteMode};
use metis_engine::{
    CacheState, CancelToken, Engine, EngineError, EngineOptions, Exit, FlashOptions,
    PrepareOptions, RegistryFlags,
};

use crate::cli::{CacheCommand, FlashArgs, ListArgs, PullArgs, RegistryArgs, TrustCommand};
use crate::report::{self, Mode};
use crate::{fail, fail_flash, fail_other, picker};

fn registry_flags(args: &RegistryArgs) -> RegistryFlags {
    RegistryFlags {
        registry: args.registry.clone(),
        prefix: args.prefix.clone(),
        ca_file: args.ca_file.clone(),
        insecure_http: args.insecure_http,
        inventory: args.inventory.clone(),
    }
}

fn open(
    registry: &RegistryArgs,
    offline: bool,
    cache: Option<&Path>,
    trust_keys: &[PathBuf],
    mode: Mode,
) -> Result<Engine, EngineError> {
    Engine::open(
        EngineOptions {
            registry: registry_flags(registry),
            offline,
            cache: cache.map(Path::to_path_buf),
            trust_keys: trust_keys.to_vec(),
            config_dir: None,
        },
        report::events(mode),
    )
}

/// The cancellation token SIGINT/SIGTERM cancel. Until the engine opens the
/// target a signal ends the process with 130 at once (nothing has been written,
/// and a picker's hidden cursor is shown again); afterwards it only cancels, so
/// the engine can wipe the card instead of dying mid-write.
pub fn cancel_on_signals() -> CancelToken {
    static TOKEN: std::sync::OnceLock<CancelToken> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancelToken::new();
            let handler_token = token.clone();
            let _ = ctrlc::set_handler(move || {
                if handler_token.is_armed() {
                    handler_token.cancel();
                } else {
                    let _ = dialoguer::console::Term::stderr().show_cursor();
                    eprintln!("\ninterrupted: nothing was written");
                    std::process::exit(Exit::Interrupted.code().into());
                }
            });
            token
        })
        .clone()
}

/// Asks on the terminal for the node name before writing over `candidate`.
fn confirm_on_terminal(candidate: &Candidate, node: &str) -> bool {
    eprint!(
        "Everything on this disk will be lost:\n{}Type the node name ({node}) to write it: ",
        flash::candidate_text(candidate)
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer);
    if !matches!(read, Ok(n) if n > 0) {
        eprintln!("\n(no answer on stdin; scripts pass --yes with an explicit --device)");
        return false;
    }
    answer.trim() == node
}

fn mode(quiet: bool, json: bool) -> Mode {
    if json {
        Mode::Json
    } else if quiet {
        Mode::Quiet
    } else {
        Mode::Normal
    }
}

/// `metis-flash NODE` / `metis-flash flash NODE`.
pub fn flash_node(args: FlashArgs) -> Exit {
    let json = args.json;
    let mode = mode(args.quiet, json);
    let interactive = picker::interactive();
    let cancel = cancel_on_signals();
    // Without a terminal there is no picker: say what to name before any work.
    if args.node.is_none() && !interactive {
        return fail_flash(
            &EngineError::BadInput(
                "name the node to flash: metis-flash NODE (metis-flash list shows the lab's nodes)"
                    .into(),
            ),
            json,
        );
    }
    let target = Target::from_flags(
        args.device.as_deref(),
        args.output.as_deref(),
        args.yes,
        args.force_non_removable,
    );
    if target.is_none() && !interactive {
        return fail_flash(
            &EngineError::BadInput(
                "name where to write: --device /dev/sdX (the card) or --output FILE.img \
                 (the disk picker needs a terminal)"
                    .into(),
            ),
            json,
        );
    }
    let engine = match open(
        &args.registry,
        args.offline,
        args.cache.as_deref(),
        &args.trust_key,
        mode,
    ) {
        Ok(e) => e,
        Err(e) => return fail_flash(&e, json),
    };
    let node = match args.node.clone() {
        Some(node) => node,
        None => match picker::pick_node(&engine) {
            Ok(node) => node,
            Err(e) => return e.report(json),
        },
    };
    let prepared = match engine.prepare(
        &node,
        &PrepareOptions {
            identity: args.identity.clone(),
            allow_downgrade: args.allow_downgrade,
        },
    ) {
        Ok(p) => p,
        Err(e) => return fail_flash(&e, json),
    };
    let policy = Policy {
        force_non_removable: args.force_non_removable,
    };
    // The disk is picked once the image size is known and everything is verified
    // and decrypted, so the pick is the last step before the confirmation.
    // `--yes` does not skip that confirmation for a picked disk.
    let target = match target {
        Some(target) => target,
        None => match picker::pick_disk(&device::Native, &node, prepared.image_size(), policy) {
            Ok(path) => Target::Device {
                path,
                assume_yes: false,
                policy,
            },
            Err(e) => return e.report(json),
        },
    };
    let outcome = engine.flash(
        prepared,
        target,
        FlashOptions {
            mode: WriteMode::from_flags(args.sparse, args.full),
            block_size: args.block_size,
            compare: !args.full,
            confirm: Some(Box::new(confirm_on_terminal)),
            cancel,
        },
    );
    finish(outcome, json, args.quiet)
}

/// Prints the outcome of a flash for people or scripts and picks the exit code.
/// The success line is printed only after the read-back verified the card.
pub fn finish(outcome: Result<FlashSummary, EngineError>, json: bool, quiet: bool) -> Exit {
    match outcome {
        Ok(summary) => {
            if json {
                let mut value = serde_json::to_value(&summary).expect("a summary serializes");
                value["ok"] = serde_json::Value::Bool(true);
                println!("{value}");
            } else if let (Some(comparison), false) = (summary.comparison_text(), quiet) {
                eprintln!(
                    "{}: {comparison} to {}; the {} chunks written read back and verified in {:.1} s, \
                     the other {} verified by the comparison in {:.1} s",
                    summary.node,
                    summary.target.display(),
                    summary.chunks.rewritten,
                    summary.verify_seconds,
                    summary.chunks.skipped,
                    summary.compare_seconds,
                );
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
            Exit::Ok
        }
        Err(e) => fail_flash(&e, json),
    }
}

/// `metis-flash list`.
pub fn list(args: ListArgs) -> Exit {
    let mode = if args.json { Mode::Quiet } else { Mode::Normal };
    let lab = match open(
        &args.registry,
        args.offline,
        args.cache.as_deref(),
        &args.trust_key,
        mode,
    )
    .and_then(|engine| engine.lab_nodes())
    {
        Ok(lab) => lab,
        Err(e) => return fail(&e, args.json),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lab).expect("the lab index serializes")
        );
        return Exit::Ok;
    }
    let age = lab
        .fetched
        .as_deref()
        .and_then(metis_core::oci::age_of)
        .map_or_else(|| "at an unknown time".into(), |a| format!("{a} ago"));
    eprintln!(
        "lab index revision {} verified with key {}, fetched {age}",
        lab.revision, lab.key
    );
    println!(
        "{:<12} {:<22} {:>10}  {:<10}  SIGNATURE",
        "NODE", "CLASS", "REVISION", "CACHE"
    );
    for n in &lab.nodes {
        println!(
            "{:<12} {:<22} {:>10}  {:<10}  {}",
            n.node,
            n.class,
            n.revision,
            n.cache.as_str(),
            match (&n.cache, n.verifies) {
                (_, true) => "ok",
                (CacheState::NotCached, _) => "-",
                _ => "FAILED",
            }
        );
    }
    for n in &lab.nodes {
        if let Some(problem) = &n.problem {
            eprintln!("{}: {problem}", n.node);
        }
    }
    Exit::Ok
}

/// `metis-flash pull NODE…` / `pull --all`.
pub fn pull(args: PullArgs) -> Exit {
    let engine = match open(
        &args.registry,
        args.offline,
        args.cache.as_deref(),
        &args.trust_key,
        Mode::Normal,
    ) {
        Ok(e) => e,
        Err(e) => return fail(&e, false),
    };
    let result = if args.all {
        engine.pull_all()
    } else {
        engine
            .pull(&args.nodes, &args.tag)
            .map(|failed| (args.nodes.clone(), failed))
    };
    match result {
        Ok((_, 0)) => Exit::Ok,
        Ok((nodes, failed)) => {
            eprintln!(
                "error: {failed} of {} node(s) could not be pulled",
                nodes.len()
            );
            Exit::Failure
        }
        Err(e) => fail(&e, false),
    }
}

/// `metis-flash cache …`.
pub fn cache(command: CacheCommand, dir: Option<PathBuf>) -> Exit {
    match cache_command(command, dir) {
        Ok(()) => Exit::Ok,
        Err(e) => fail_other(&e),
    }
}

const MIB: f64 = (1u64 << 20) as f64;

fn cache_command(command: CacheCommand, dir: Option<PathBuf>) -> anyhow::Result<()> {
    use metis_core::oci::{self, Layout};
    let dir = oci::cache_dir(dir.as_deref())?;
    let cache = Layout::open_or_create(&dir)
        .with_context(|| format!("opening the cache {}", dir.display()))?;
    match command {
        CacheCommand::Ls { json } => {
            let mut rows = Vec::new();
            for r in cache.refs()? {
                let size: u64 = cache
                    .manifest(&r.manifest.digest)
                    .map(|m| m.blobs().map(|b| b.size).sum())
                    .unwrap_or(0);
                rows.push(serde_json::json!({
                    "ref": oci::ref_name(&r.repository, &r.tag),
                    "digest": r.manifest.digest,
                    "size": size,
                    "fetched": r.fetched,
                }));
                if !json {
                    let age = r
                        .fetched
                        .as_deref()
                        .and_then(oci::age_of)
                        .unwrap_or_else(|| "?".into());
                    println!(
                        "{:<40} {:.19} {:>10.1} MiB  fetched {age} ago",
                        oci::ref_name(&r.repository, &r.tag),
                        r.manifest.digest,
                        size as f64 / MIB
                    );
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
        }
        CacheCommand::Prune => {
            let (files, bytes) = cache.prune()?;
            eprintln!(
                "removed {files} file(s), {:.1} MiB, from {}",
                bytes as f64 / MIB,
                cache.dir().display()
            );
        }
        CacheCommand::Verify => {
            let problems = cache.verify()?;
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("damaged: {p}");
                }
                bail!(
                    "{} problem(s) in the cache {}; run `metis-flash cache prune` and pull again",
                    problems.len(),
                    cache.dir().display()
                );
            }
            eprintln!("cache {} is sound", cache.dir().display());
        }
    }
    Ok(())
}

/// `metis-flash trust add|ls`.
pub fn trust(command: TrustCommand) -> Exit {
    use metis_core::trust::TrustedKeys;
    let run = || -> anyhow::Result<()> {
        let dir =
            TrustedKeys::default_dir().context("this system has no per-user config directory")?;
        match command {
            TrustCommand::Add { key } => {
                let public = TrustedKeys::pin(&dir, &key)
                    .with_context(|| format!("pinning {}", key.display()))?;
                eprintln!("pinned in {}", dir.display());
                println!("{}", public.fingerprint());
            }
            TrustCommand::Ls => {
                let keys = TrustedKeys::load_dir(&dir)
                    .with_context(|| format!("reading pinned keys in {}", dir.display()))?;
                if keys.is_empty() {
                    eprintln!(
                        "no key pinned in {}: run `metis-flash setup lab.metis` or \
                         `metis-flash trust add cosign.pub`",
                        dir.display()
                    );
                }
                for key in keys.keys() {
                    println!("{}", key.fingerprint());
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => Exit::Ok,
        Err(e) => fail_other(&e),
    }
}

/// `metis-flash devices`.
pub fn devices(json: bool) -> Exit {
    let disks = match device::Native.list() {
        Ok(d) => d,
        Err(e) => return fail(&EngineError::Devices(e), json),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&disks).expect("disks serialize")
        );
    } else {
        if disks.is_empty() && std::io::stderr().is_terminal() {
            eprintln!("no disk found");
        }
        for d in disks {
            println!(
                "{:<14} {:>10}  {:<5} {}{}{}",
                d.path.display(),
                size_text(d.size),
                d.bus,
                d.model,
                if d.removable { "  [removable]" } else { "" },
                if d.read_only { "  [read-only]" } else { "" },
            );
        }
    }
    Exit::Ok
}

/// `metis-flash probe DEVICE`.
pub fn probe(device: &Path) -> Exit {
    match device::Native.describe(device) {
        Ok(d) => {
            println!(
                "{}: {} bytes, bus {}, model {:?}",
                d.path.display(),
                d.size,
                d.bus,
                d.model
            );
            Exit::Ok
        }
        Err(e) => fail(&EngineError::Devices(e), false),
    }
}

/// `metis-flash write`: flash from local, unsigned artifact files (development
/// and benchmarks; compiled only into debug builds and `--features dev-write`,
/// so the binary operators run has no way to write without verification).
#[cfg(any(debug_assertions, feature = "dev-write"))]
pub fn write(args: crate::cli::WriteArgs) -> Exit {
    use metis_core::image::chunks::ChunkTable;
    use metis_core::image::compose::{ComposeOptions, Composer};
    use metis_core::image::patch::Patch;
    let json = args.json;
    if !(args.quiet || json) {
        eprintln!(
            "warning: `metis-flash write` checks no signature, node or revision \
             (development and benchmarks only); operators flash with `metis-flash NODE`"
        );
    }
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        EngineError::BadInput(format!("{}: {e}", what.display()))
    };
    let opened = (|| -> Result<_, EngineError> {
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
        let composer = Composer::new(base, table, patch, ComposeOptions::default())
            .map_err(|e| bad(&args.base, &e))?;
        let slot = match (&args.slot_offset, &args.slot_file) {
            (Some(offset), Some(file)) => Some((
                *offset,
                zeroize::Zeroizing::new(std::fs::read(file).map_err(|e| bad(file, &e))?),
            )),
            _ => None,
        };
        Ok((composer, slot))
    })();
    let (composer, slot) = match opened {
        Ok(o) => o,
        Err(e) => return fail(&e, json),
    };
    let target = Target::from_flags(
        args.device.as_deref(),
        args.output.as_deref(),
        args.yes,
        args.force_non_removable,
    )
    .expect("clap requires --device or --output");
    let outcome = flash::run_with(
        &device::Native,
        composer,
        flash::FlashRequest {
            node: args.node.clone(),
            slot,
            target,
            mode: WriteMode::from_flags(args.sparse, args.full),
            block_size: args.block_size,
            card: args.class.clone().map(|class| flash::CardLabel {
                class,
                revision: args.revision,
            }),
            compare: !args.full,
            probe_capacity: !args.skip_capacity_probe,
            signature_verified: false,
            confirm: Some(Box::new(confirm_on_terminal)),
            events: report::events(mode(args.quiet, json)),
            cancel: cancel_on_signals(),
        },
    )
    .map_err(EngineError::from);
    finish(outcome, json, args.quiet)
}
