//! `metis-flash pull` and `metis-flash cache`: thin glue over
//! `metis_core::oci`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use metis_core::oci::{
    self, Layout, Progress, ProgressEvent, PullOptions, Registry, RegistryOptions,
};

use metis_core::trust::SeenRevisions;

use crate::cli::{CacheCommand, PullArgs, RegistryArgs};

/// The registry location, prefix and options, from the flags or the inventory.
pub(crate) struct Target {
    pub(crate) location: String,
    pub(crate) prefix: String,
    pub(crate) options: RegistryOptions,
    /// Node names of the inventory, when it could be loaded.
    nodes: Option<Vec<String>>,
}

pub(crate) fn target(args: &RegistryArgs, offline: bool) -> Result<Target> {
    let inventory = if args.inventory.join("metis.yaml").exists() {
        match metis_core::inventory::load(&args.inventory) {
            Ok(inv) => Some(inv),
            // With the registry on the command line the inventory is optional.
            Err(e) if args.registry.is_some() || offline => {
                eprintln!(
                    "notice: ignoring the inventory {}: {e}",
                    args.inventory.display()
                );
                None
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("loading the inventory {}", args.inventory.display()))
            }
        }
    } else {
        None
    };
    let nodes = inventory
        .as_ref()
        .map(|i| i.nodes.keys().cloned().collect());
    let (location, mut prefix, mut ca_file) = match (&args.registry, &inventory) {
        (Some(r), _) => {
            let (location, prefix) = oci::parse_registry_arg(r);
            (location, prefix, None)
        }
        (None, Some(inv)) => (
            oci::lab_location(inv),
            Some(inv.lab.registry.prefix.clone()),
            oci::lab_ca_file(inv),
        ),
        // Offline, only the prefix matters.
        (None, None) if offline => (String::new(), None, None),
        (None, None) => bail!(
            "no registry: pass --registry HOST/PREFIX (or oci:DIR), or --inventory DIR \
             with a metis.yaml (none at {})",
            args.inventory.display()
        ),
    };
    if let Some(p) = &args.prefix {
        prefix = Some(p.clone());
    }
    let prefix = prefix
        .or_else(|| inventory.as_ref().map(|i| i.lab.registry.prefix.clone()))
        .unwrap_or_else(|| "metis".into());
    if args.ca_file.is_some() {
        ca_file = args.ca_file.clone();
    }
    Ok(Target {
        location,
        prefix,
        options: RegistryOptions {
            ca_file,
            insecure_http: args.insecure_http,
            ..Default::default()
        },
        nodes,
    })
}

/// The registry to pull from; `None` when offline (no socket is ever opened).
pub(crate) fn open_registry(target: &Target, offline: bool) -> Result<Option<Registry>> {
    if offline {
        return Ok(None);
    }
    Registry::open(&target.location, &target.options)
        .map(Some)
        .with_context(|| format!("opening the registry {}", target.location))
}

/// The cached signature of `repository`'s manifest `digest`: the signature
/// manifest and its simple-signing payloads. `what` names the artifact in errors.
pub(crate) fn cached_signature(
    cache: &Layout,
    repository: &str,
    digest: &str,
    what: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let tag = metis_core::trust::signature_tag(digest)
        .with_context(|| format!("{what}: the cached manifest digest {digest} is not sha256"))?;
    let sig_ref = oci::cached(cache, repository, &tag)?.with_context(|| {
        format!(
            "{what}: the artifact {digest} has no signature in the cache ({repository}:{tag}); \
             pull it again online — an unsigned artifact is never written"
        )
    })?;
    let manifest = cache.read_blob(&sig_ref.manifest.digest)?;
    let payloads = metis_core::trust::signature_payloads(&manifest)?
        .iter()
        .map(|d| cache.read_blob(&d.digest))
        .collect::<Result<_, _>>()?;
    Ok((manifest, payloads))
}

/// The operator's record of seen revisions (`<config dir>/metis/seen.json`, beside
/// the pinned keys), with any copy an older version kept in `cache` folded in.
pub(crate) fn seen_revisions(cache: &Layout) -> Result<SeenRevisions> {
    let dir = SeenRevisions::default_dir().context(
        "this system has no per-user config directory for the record of seen revisions \
         (set XDG_CONFIG_HOME or HOME)",
    )?;
    let mut seen = SeenRevisions::load(&dir)?;
    let legacy = SeenRevisions::legacy_path(cache.dir());
    if seen.migrate(&legacy)? {
        eprintln!(
            "notice: moved the record of seen revisions from {} to {}",
            legacy.display(),
            seen.path().display()
        );
    }
    Ok(seen)
}

pub(crate) fn open_cache(dir: Option<&Path>) -> Result<Layout> {
    let dir = oci::cache_dir(dir)?;
    Layout::open_or_create(&dir).with_context(|| format!("opening the cache {}", dir.display()))
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

const MIB: f64 = (1u64 << 20) as f64;

pub fn pull(args: PullArgs) -> Result<()> {
    let target = target(&args.registry, args.offline)?;
    let cache = open_cache(args.cache.as_deref())?;
    let nodes: Vec<String> = if args.all {
        target
            .nodes
            .clone()
            .context("--all needs the inventory (--inventory DIR)")?
    } else {
        args.nodes.clone()
    };
    if let Some(dir) = target.location.strip_prefix("oci:") {
        // Opening a layout creates it; a mistyped path should not.
        if !args.offline && !Path::new(dir).join("index.json").exists() {
            bail!("{dir} is not an OCI image layout (no index.json); check --registry or the inventory's registry.host");
        }
    }
    let registry = open_registry(&target, args.offline)?;
    let mut failed = 0;
    for node in &nodes {
        let repository = oci::node_repository(&target.prefix, node);
        if let Err(e) = pull_one(
            registry.as_ref(),
            &cache,
            &repository,
            &Pulling::Node(node),
            &args.tag,
        ) {
            eprintln!("error: {node}: {e:#}");
            failed += 1;
        }
    }
    // The signed lab index travels with the nodes, so `list --offline` and the
    // offline node picker work from what was pulled. Without it the nodes are
    // still usable (each carries its own signature): a warning, not a failure.
    if let Some(registry) = &registry {
        let repository = oci::index_repository(&target.prefix);
        if let Err(e) = pull_one(
            Some(registry),
            &cache,
            &repository,
            &Pulling::Index,
            "latest",
        ) {
            eprintln!(
                "warning: the signed lab index was not cached ({e:#}); `metis-flash list \
                 --offline` and the offline node picker need it: check that `metis-build \
                 publish` ran, then pull again"
            );
        }
    }
    if failed > 0 {
        bail!("{failed} of {} node(s) could not be pulled", nodes.len());
    }
    Ok(())
}

/// What is being pulled: names it in messages and says which command caches it.
pub(crate) enum Pulling<'a> {
    /// A node's artifact.
    Node(&'a str),
    /// The signed lab index.
    Index,
}

impl Pulling<'_> {
    fn name(&self) -> &str {
        match self {
            Pulling::Node(node) => node,
            Pulling::Index => "lab index",
        }
    }

    fn command(&self) -> String {
        match self {
            Pulling::Node(node) => format!("`metis-flash pull {node}`"),
            Pulling::Index => "`metis-flash list`, or `metis-flash pull NODE…`, \
                               which caches the lab index too"
                .into(),
        }
    }
}

fn use_cached(cache: &Layout, repository: &str, node: &str, tag: &str) -> Result<Option<String>> {
    Ok(oci::cached(cache, repository, tag)?.map(|r| {
        let age = r
            .fetched
            .as_deref()
            .and_then(oci::age_of)
            .map_or_else(|| "at an unknown time".into(), |a| format!("{a} ago"));
        format!(
            "{node}: using the cached {repository}:{tag} ({}), fetched {age}",
            r.manifest.digest
        )
    }))
}

pub(crate) fn pull_one(
    registry: Option<&Registry>,
    cache: &Layout,
    repository: &str,
    what: &Pulling,
    tag: &str,
) -> Result<()> {
    let node = what.name();
    let Some(registry) = registry else {
        return match use_cached(cache, repository, node, tag)? {
            Some(line) => {
                eprintln!("{line}");
                Ok(())
            }
            None => Err(oci::OciError::NotCached {
                command: what.command(),
                repository: repository.into(),
                tag: tag.into(),
                cache: cache.dir().to_path_buf(),
            }
            .into()),
        };
    };
    let bar = bar();
    bar.set_message(node.to_owned());
    let progress = {
        let bar = bar.clone();
        Progress::new(move |event| match event {
            ProgressEvent::Total(n) => bar.set_length(n),
            ProgressEvent::Advance(n) => bar.inc(n),
            _ => {}
        })
    };
    let options = PullOptions {
        progress,
        ..Default::default()
    };
    let result = oci::block_on(oci::pull_into(registry, cache, repository, tag, &options));
    bar.finish_and_clear();
    match result {
        Ok(p) => {
            eprintln!(
                "{node}: {repository}:{tag} is {} ({:.1} MiB downloaded, {:.1} MiB already cached)",
                p.digest,
                p.downloaded_bytes as f64 / MIB,
                p.reused_bytes as f64 / MIB
            );
            // The signature travels with the artifact, so offline flashing can verify it.
            // An unsigned artifact is cached all the same (pull moves bytes;
            // `flash` refuses to write it), with a notice saying so.
            if let Some(sig_tag) = metis_core::trust::signature_tag(&p.digest) {
                match oci::block_on(oci::pull_into(
                    registry,
                    cache,
                    repository,
                    &sig_tag,
                    &PullOptions::default(),
                )) {
                    Ok(_) => {}
                    Err(oci::OciError::NotFound { .. }) => eprintln!(
                        "notice: {node}: {repository}:{tag} has no signature; metis-flash will refuse to write it"
                    ),
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            "{node}: fetching the signature {repository}:{sig_tag}: {e}"
                        ))
                    }
                }
            }
            Ok(())
        }
        Err(e) if e.is_unreachable() => match use_cached(cache, repository, node, tag)? {
            Some(line) => {
                eprintln!("notice: {e}");
                eprintln!("{line}");
                Ok(())
            }
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

pub fn cache(command: CacheCommand, dir: Option<PathBuf>) -> Result<()> {
    let cache = open_cache(dir.as_deref())?;
    match command {
        CacheCommand::Ls { json } => {
            let refs = cache.refs()?;
            let mut rows = Vec::new();
            for r in refs {
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
