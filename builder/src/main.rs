//! `metis-build`: thin dispatch over metis-core.
#![forbid(unsafe_code)]

mod cli;
mod interrupt;
mod man;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use metis_core::location::RegistryLocation;
use metis_core::{lab, render as node_render};

use cli::{Cli, Command};

fn main() -> ExitCode {
    // The release profile aborts on panic, so nothing is dropped: wipe any
    // plaintext `secrets edit`/`init` still has on disk before the abort.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        metis_core::secrets::wipe_plaintext_dirs();
        report(info);
    }));
    let cli = Cli::parse();
    let result = run(cli);
    if interrupt::received() {
        if let Err(e) = &result {
            eprintln!("error: {e:#}");
        } else {
            eprintln!("interrupted");
        }
        return ExitCode::from(interrupt::EXIT);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if registry_unreachable(&e) {
                eprintln!(
                    "hint: metis-build needs the registry (--registry, or registry.host in \
                     the inventory's metis.yaml): check that it is running and reachable \
                     from this machine, then run the same command again"
                );
            }
            ExitCode::from(1)
        }
    }
}

/// Whether `e` is the registry client saying the registry could not be
/// reached. The client's error passes through publish and golden errors
/// transparently (they forward its source, so it is not itself in the
/// chain), hence each wrapper is looked into.
fn registry_unreachable(e: &anyhow::Error) -> bool {
    use metis_core::image::golden_oci::GoldenOciError;
    use metis_core::oci::OciError;
    use metis_core::publish::PublishError;
    e.chain().any(|cause| {
        let oci = cause.downcast_ref::<OciError>().or_else(|| {
            match (
                cause.downcast_ref::<PublishError>(),
                cause.downcast_ref::<GoldenOciError>(),
            ) {
                (Some(PublishError::Oci(o)), _) | (_, Some(GoldenOciError::Oci(o))) => Some(o),
                _ => None,
            }
        });
        oci.is_some_and(OciError::is_unreachable)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Nodes(args) => nodes(args),
        Command::Render(args) => render(args),
        Command::Keys(cli::KeysCommand::Generate { out }) => keys_generate(&out),
        Command::Golden(cli::GoldenCommand::Import(args)) => golden_import(args),
        Command::PushArtifact(args) => push_artifact(args),
        Command::Secrets(cmd) => secrets(cmd),
        Command::Plan(args) => plan(args),
        Command::Publish(args) => publish(args),
        Command::OperatorProfile(args) => operator_profile(args),
        Command::Man { dir } => man::write(&dir).map(|()| ExitCode::SUCCESS),
        Command::SignBlob(args) => sign_blob(args),
        Command::VerifyBlob(args) => verify_blob(args),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            // Into memory first: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "metis-build", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("writing the completion script")
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn sign_blob(args: cli::SignBlobArgs) -> Result<ExitCode> {
    let key = metis_core::trust::PrivateKey::from_file_or_env(args.key.as_deref())
        .context("loading the signing key")?;
    let blob =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let signature = metis_core::trust::sign_blob(&key, &blob);
    match &args.output_signature {
        Some(path) => std::fs::write(path, &signature)
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{signature}"),
    }
    eprintln!(
        "signed {} with key {}",
        args.file.display(),
        key.public_key().fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify_blob(args: cli::VerifyBlobArgs) -> Result<ExitCode> {
    let keys = metis_core::trust::TrustedKeys::read_files(std::path::Path::new("."), &args.keys)
        .context("reading the public keys")?;
    let blob =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let signature = std::fs::read_to_string(&args.signature)
        .with_context(|| format!("reading {}", args.signature.display()))?;
    match metis_core::trust::verify_blob(&keys, &blob, &signature) {
        Ok(key) => {
            eprintln!(
                "Verified OK: {} (key {})",
                args.file.display(),
                key.fingerprint()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn operator_profile(args: cli::OperatorProfileArgs) -> Result<ExitCode> {
    let inv = lab::load(&args.inventory.inventory)?;
    let exported = lab::operator_profile(&inv, args.lab.as_deref())
        .context("exporting the operator profile")?;
    for w in &exported.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", exported.profile.to_json());
    Ok(ExitCode::SUCCESS)
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
                digest: None,
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
    let checked = lab::check(dir);
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
    let inv = lab::load(&args.inventory.inventory)?;
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

/// Writes the node's seed (never its secrets) for inspection:
/// DIR/seed/<seed files>, DIR/root/<root files>, DIR/render.json.
fn render(args: cli::RenderArgs) -> Result<ExitCode> {
    let inv = lab::load(&args.inventory.inventory)?;
    let rendered = match &args.image {
        Some(image) => {
            let started = std::time::Instant::now();
            let built = metis_core::build::node::write_node_image(&inv, &args.node, image, None)
                .with_context(|| format!("building the card image of {}", args.node))?;
            let p = &built.personalised;
            eprintln!(
                "wrote {} ({} bytes, {} changed from the golden image) in {:.1}s; secrets slot at bytes {}..{} (zeroed)",
                image.display(),
                p.image_size,
                p.overlay.dirty_bytes(),
                started.elapsed().as_secs_f64(),
                p.slot.offset,
                p.slot.offset + p.slot.len
            );
            built.rendered
        }
        None => node_render::render(&inv, &args.node)?,
    };
    if let Some(out) = &args.out {
        write_render_dir(&rendered, out)?;
    }
    if let Some(cmds) = &rendered.server_rejoin_commands {
        eprintln!(
            "{} is a k3s server with embedded etcd: before its card boots, remove its old etcd member and node from the live cluster:",
            rendered.node
        );
        for c in cmds {
            eprintln!("    {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_render_dir(rendered: &node_render::Rendered, out: &std::path::Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; render into a new or empty directory so no stale file is mistaken for part of the seed",
            out.display()
        );
    }
    let write = |rel: &std::path::Path, bytes: &[u8]| -> Result<()> {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    for (path, bytes) in &rendered.seed {
        write(&std::path::Path::new("seed").join(path), bytes)?;
    }
    for f in &rendered.root_files {
        write(
            &std::path::Path::new("root").join(f.path.trim_start_matches('/')),
            &f.content,
        )?;
    }
    let edits = |edits: &[node_render::KeyValueEdit]| -> Vec<serde_json::Value> {
        edits
            .iter()
            .map(|e| serde_json::json!({"path": e.path, "key": e.key, "value": e.value}))
            .collect()
    };
    let summary = serde_json::json!({
        "node": rendered.node,
        "instance_id": rendered.instance_id,
        "machine_id": rendered.machine_id,
        "seed_files": rendered.seed.keys().collect::<Vec<_>>(),
        "root_files": rendered.root_files.iter().map(|f| serde_json::json!({"path": f.path, "mode": format!("{:04o}", f.mode)})).collect::<Vec<_>>(),
        "root_edits": edits(&rendered.root_edits),
        "seed_edits": edits(&rendered.seed_edits),
        "secrets_slot": {"file": node_render::SLOT_FILE, "size": node_render::SLOT_SIZE},
        "server_rejoin_commands": rendered.server_rejoin_commands,
    });
    write(
        std::path::Path::new("render.json"),
        format!("{}\n", serde_json::to_string_pretty(&summary)?).as_bytes(),
    )?;
    eprintln!(
        "rendered {} (instance-id {}) into {}; its secrets are not written",
        rendered.node,
        rendered.instance_id,
        out.display()
    );
    Ok(())
}
fn golden_import(args: cli::GoldenImportArgs) -> Result<ExitCode> {
    use metis_core::build::import;
    let inv = lab::load(&args.inventory.inventory)?;
    eprintln!(
        "checking {} (sha256, then the golden-image contract for class {}) ...",
        args.file.display(),
        args.class
    );
    let imported = import::import_golden(&inv, &args.class, &args.file, &args.sha256)?;
    let kept = inv.dir.join(&imported.path);
    eprintln!(
        "{} {} ({:.1} MiB){}",
        if imported.already_kept {
            "already kept as"
        } else {
            "kept as"
        },
        kept.display(),
        imported.size as f64 / f64::from(1u32 << 20),
        if imported.already_kept {
            "; nothing copied"
        } else {
            ""
        }
    );
    if args.push {
        let (inv, registry) = lab_registry(inv, &args.registry)?;
        let golden = metis_core::image::golden::GoldenImage::open(&kept, &imported.sha256)?;
        eprintln!(
            "storing it in {} as {} ...",
            registry.name(),
            metis_core::oci::golden_repository(&inv.lab.registry.prefix, &args.class)
        );
        // The compressed base is a temporary file beside the kept image.
        let work = kept.parent().unwrap_or(&inv.dir).to_path_buf();
        let pushed = metis_core::image::golden_oci::push_golden(
            &registry,
            inv.registry_host(),
            &inv.lab.registry.prefix,
            &args.class,
            &golden,
            &work,
        )
        .with_context(|| format!("storing the golden image in {}", registry.name()))?;
        eprintln!("stored ({} bytes uploaded)", pushed.uploaded_bytes);
        if args.pin {
            let file = import::pin_golden_oci(&inv, &args.class, &pushed.reference, &imported)?;
            eprintln!(
                "pinned class {} to {} in {}; `metis-build plan` shows the nodes it rebuilds",
                args.class,
                pushed.reference,
                file.display()
            );
        } else {
            eprintln!(
                "pin it in classes/{}.yaml (or run again with --pin):",
                args.class
            );
            println!("golden:\n  oci: {}", pushed.reference);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.pin {
        let file = import::pin_golden(&inv, &args.class, &imported)?;
        eprintln!(
            "pinned class {} to it in {}; `metis-build plan` shows the nodes it rebuilds",
            args.class,
            file.display()
        );
    } else {
        eprintln!(
            "pin it in classes/{}.yaml (or run again with --pin):",
            args.class
        );
        println!(
            "golden:\n  path: {}\n  sha256: {}",
            imported.path.display(),
            imported.sha256
        );
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

fn ci_identity(arg: &cli::IdentityArg) -> Result<metis_core::secrets::Identities> {
    Ok(metis_core::secrets::Identities::from_ci_env_or_file(
        arg.identity.as_deref(),
    )?)
}

/// The CI identity when one is given; commands that may create a new sealed
/// file do not need one.
fn optional_ci_identity(arg: &cli::IdentityArg) -> Result<Option<metis_core::secrets::Identities>> {
    if arg.identity.is_none() && std::env::var_os(metis_core::secrets::CI_IDENTITY_ENV).is_none() {
        return Ok(None);
    }
    ci_identity(arg).map(Some)
}

fn secrets(cmd: cli::SecretsCommand) -> Result<ExitCode> {
    use cli::SecretsCommand as S;
    use metis_core::secrets;
    let shown = |p: &std::path::Path| p.display().to_string();
    match cmd {
        S::Init { inventory } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            interrupt::defer();
            let written =
                secrets::init(&inv, &interrupt::received).context("creating the sealed secrets")?;
            for p in &written {
                eprintln!("sealed {}", shown(p));
            }
            eprintln!(
                "{} file(s) created; existing sealed files were left as they are",
                written.len()
            );
        }
        S::Set {
            node,
            key,
            identity,
            inventory,
        } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            let key: secrets::SecretKey = key.parse()?;
            let ci = optional_ci_identity(&identity)?;
            // Sized up front so reading never reallocates (which would leave an
            // unzeroed copy of the value behind).
            let mut value = zeroize::Zeroizing::new(Vec::with_capacity(1 << 20));
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut value)
                .context("reading the value from stdin")?;
            secrets::set(&inv, ci.as_ref(), &node, &key, &value)
                .with_context(|| format!("setting a secret of {node}"))?;
            eprintln!("sealed {}", shown(&secrets::sealed_path(&inv, &node)));
        }
        S::Edit {
            node,
            identity,
            inventory,
        } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            let ci = ci_identity(&identity)?;
            let editor = ["VISUAL", "EDITOR"]
                .iter()
                .filter_map(|v| std::env::var(v).ok())
                .find(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "vi".into());
            interrupt::defer();
            let changed = secrets::edit(&inv, &ci, &node, &editor, &interrupt::received)
                .with_context(|| format!("editing the secrets of {node}"))?;
            if changed {
                eprintln!("sealed {}", shown(&secrets::sealed_path(&inv, &node)));
            } else {
                eprintln!("no change");
            }
        }
        S::Rekey {
            identity,
            inventory,
        } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            let ci = ci_identity(&identity)?;
            let written = secrets::rekey(&inv, &ci).context("re-encrypting the sealed secrets")?;
            for p in &written {
                eprintln!("re-encrypted {}", shown(p));
            }
            eprintln!(
                "{} file(s) re-encrypted to the current recipients",
                written.len()
            );
        }
        S::Capture {
            node,
            dir,
            identity,
            inventory,
        } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            let ci = optional_ci_identity(&identity)?;
            let imported = secrets::capture(&inv, ci.as_ref(), &node, &dir)
                .with_context(|| format!("capturing {node}'s identity from {}", dir.display()))?;
            eprintln!(
                "imported {} into {}",
                imported.join(", "),
                shown(&secrets::sealed_path(&inv, &node))
            );
        }
        S::Bundle {
            node,
            out,
            identity,
            inventory,
        } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            let ci = ci_identity(&identity)?;
            let sealed = secrets::seal_node_bundle(&inv, &node, &ci)
                .with_context(|| format!("sealing the secrets bundle of {node}"))?;
            std::fs::write(&out, &sealed).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({} bytes, encrypted to {} operator recipient(s))",
                out.display(),
                sealed.len(),
                inv.lab.operator_recipients.len()
            );
        }
        S::Digest { node, inventory } => {
            let inv = lab::load_for_sealing(&inventory.inventory)?;
            println!("{}", secrets::sealed_digest(&inv, &node)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The inventory with the registry the flags name (prefix included), and the registry opened.
fn lab_registry(
    mut inv: metis_core::inventory::Inventory,
    arg: &cli::RegistryArg,
) -> Result<(metis_core::inventory::Inventory, metis_core::oci::Registry)> {
    let location = match &arg.registry {
        Some(r) => {
            // A relative `oci:DIR` on the command line is relative to the working
            // directory, as the flasher's is. Anchored here, because the inventory's
            // own `registry.host`, which this overrides, is read relative to the
            // inventory directory by whatever reads it later.
            let (location, prefix) = RegistryLocation::parse_with_prefix(r)?;
            let location = location.absolute();
            inv.lab.registry.host = location.to_string();
            if let Some(prefix) = prefix {
                inv.lab.registry.prefix = prefix;
            }
            location
        }
        None => inv.registry_location(),
    };
    let options = metis_core::oci::RegistryOptions {
        ca_file: arg.ca_file.clone().or_else(|| inv.registry_ca_file()),
        insecure_http: arg.insecure_http,
        ..Default::default()
    };
    let registry = metis_core::oci::Registry::open_at(&location, &options)
        .with_context(|| format!("opening the registry {location}"))?;
    Ok((inv, registry))
}

fn plan(args: cli::PlanArgs) -> Result<ExitCode> {
    let inv = lab::load(&args.inventory.inventory)?;
    let (inv, registry) = lab_registry(inv, &args.registry)?;
    // A plan compares ciphertext digests; it never decrypts.
    let source = metis_core::publish::SealedSecrets::new(optional_ci_identity(&args.identity)?);
    let plan = metis_core::publish::plan(&inv, &registry, &source)
        .with_context(|| format!("planning against {}", registry.name()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_plan(&plan);
    }
    let failed = plan.failed().count();
    if failed > 0 {
        eprintln!(
            "error: {failed} node(s) cannot be planned (action `fail`, the reason says why); `metis-build check` names the file and line"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &metis_core::publish::Plan) {
    println!("{:<12} {:<22} {:<7} REASON", "NODE", "CLASS", "ACTION");
    for n in &plan.nodes {
        let action = serde_json::to_value(&n.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("{:<12} {:<22} {:<7} {}", n.node, n.class, action, n.reason);
    }
    let build = plan.to_build().count();
    eprintln!("{build} to build, {} unchanged", plan.nodes.len() - build);
    if let Some(why) = &plan.index_update {
        eprintln!("the lab index will be published again: {why}");
    }
}

fn publish(args: cli::PublishArgs) -> Result<ExitCode> {
    use metis_core::publish::NodeStatus;
    let inv = lab::load(&args.inventory.inventory)?;
    let (inv, registry) = lab_registry(inv, &args.registry)?;
    let key = metis_core::trust::PrivateKey::from_file_or_env(args.key.as_deref())
        .context("loading the signing key")?;
    let ci = if args.dry_run {
        optional_ci_identity(&args.identity)?
    } else {
        Some(ci_identity(&args.identity)?)
    };
    let source = metis_core::publish::SealedSecrets::new(ci);
    let plan = metis_core::publish::plan(&inv, &registry, &source)
        .with_context(|| format!("planning against {}", registry.name()))?;
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let opts = metis_core::publish::PublishOptions {
        only: args.nodes.clone(),
        jobs: args.jobs,
        dry_run: args.dry_run,
        partial: args.partial,
        rebuild: args.rebuild,
        prune: args.prune,
        revision: args.revision,
        work_dir: args.work_dir.clone(),
        built,
        source: std::env::var("GITHUB_REPOSITORY")
            .map(|r| format!("https://github.com/{r}"))
            .unwrap_or_else(|_| inv.dir.display().to_string()),
    };
    let started = std::time::Instant::now();
    let report = metis_core::publish::publish(&inv, &registry, &key, &source, &plan, &opts)
        .with_context(|| format!("publishing to {}", registry.name()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for n in &report.nodes {
            eprintln!("{:<12} {:<12} {}", n.node, n.status, n.detail);
        }
        let uploaded: u64 =
            report.nodes.iter().map(|n| n.uploaded_bytes).sum::<u64>() + report.base_bytes_uploaded;
        let touched = report.nodes.iter().any(|n| n.status != NodeStatus::Skipped);
        if !touched && !report.index_published {
            eprintln!(
                "no node changed: nothing published, the registry's latest revision stays ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
            "revision {}: {} built, {} failed, {} bytes uploaded ({} of class bases), index {} in {:.1}s",
            report.revision,
            report.nodes.iter().filter(|n| n.status == NodeStatus::Built).count(),
            report.nodes.iter().filter(|n| n.status == NodeStatus::Failed).count(),
            uploaded,
            report.base_bytes_uploaded,
            if report.index_published { "published" } else { "not published" },
            started.elapsed().as_secs_f64()
        );
        }
    }
    if report.failed() && !report.index_published && !args.dry_run {
        eprintln!(
            "error: some nodes failed (see above); the lab index was not published, so flashers keep \
             the last complete lab. Fix them and run publish again (built nodes are kept), or pass \
             --partial to publish the index with the failed nodes' previous artifacts"
        );
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
