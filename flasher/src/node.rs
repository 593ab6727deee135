//! `metis-flash NODE` (or `metis-flash flash NODE`): the operator's whole job. Resolve the node, use the
//! cache or pull, verify signature and every digest offline against the pinned
//! keys, decrypt the secrets with the operator's identity, compose base, patch
//! and secrets chunk by chunk (each chunk checked against the signed table), write,
//! read back, and only then say `insert and power on`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use metis_core::image::compose::{ComposeOptions, Composer};
use metis_core::image::patch::Patch;
use metis_core::oci::{self, ImageManifest};
use metis_core::publish::NodeConfig;
use metis_core::trust::{self, BlobContent, HeldArtifact, HeldBlob, HeldSignature, TrustedKeys};

use crate::cli::FlashArgs;
use crate::device::{self, Policy};
use crate::list::IndexSource;
use crate::{exit, flash, picker, pull};

/// A verified node artifact in the cache, ready to compose.
struct Verified {
    config: NodeConfig,
    base: PathBuf,
    patch: Vec<u8>,
    secrets: Vec<u8>,
    digest: String,
    revision: u64,
    key: String,
}

fn load_verified(args: &FlashArgs, node: &str) -> Result<Verified> {
    let target = pull::target(&args.registry, args.offline)?;
    let cache = pull::open_cache(args.cache.as_deref())?;
    let repo = oci::node_repository(&target.prefix, node);
    let registry = pull::open_registry(&target, args.offline)?;
    pull::pull_one(
        registry.as_ref(),
        &cache,
        &repo,
        &pull::Pulling::Node(node),
        "latest",
    )?;

    let latest = oci::cached(&cache, &repo, "latest")?.with_context(|| {
        format!(
            "{repo}:latest is not in the cache {}",
            cache.dir().display()
        )
    })?;
    let digest = latest.manifest.digest.clone();
    let manifest_bytes = cache.read_blob(&digest)?;
    let (sig_manifest, payloads) = pull::cached_signature(&cache, &repo, &digest, node)?;
    let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();

    let manifest = ImageManifest::parse(&manifest_bytes)
        .map_err(|e| anyhow::anyhow!("{node}: the cached manifest is malformed: {e}"))?;
    // The small blobs (config, patch, secrets) are read once: the bytes verified
    // are the bytes used, so a cache file changed after verification changes
    // nothing. The base is large and streamed: verified here as a file, and each
    // chunk of it is checked again against the signed chunk table as it is written.
    let mut blobs: Vec<(&str, &str, Held)> = Vec::new();
    for d in manifest.blobs() {
        let path = cache.blob_path(&d.digest)?;
        let held = if d.media_type == oci::MEDIA_TYPE_BASE {
            Held::File(path)
        } else {
            match std::fs::read(&path) {
                Ok(bytes) => Held::Bytes(bytes),
                // Missing: verification names it (BlobMissing) with the check that failed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Held::File(path),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        };
        blobs.push((&d.media_type, &d.digest, held));
    }
    let held: Vec<HeldBlob> = blobs
        .iter()
        .map(|(media_type, digest, content)| HeldBlob {
            media_type,
            digest,
            content: match content {
                Held::Bytes(b) => BlobContent::Bytes(b),
                Held::File(p) => BlobContent::File(p),
            },
        })
        .collect();

    let keys = trusted_keys(&args.trust_key)?;
    let mut seen = pull::seen_revisions(&cache)?;
    let verified = trust::verify_node(
        &keys,
        &HeldSignature {
            manifest: &sig_manifest,
            payloads: &payload_refs,
        },
        &HeldArtifact {
            manifest: &manifest_bytes,
            blobs: &held,
        },
        node,
        &mut seen,
        args.allow_downgrade,
    )
    .with_context(|| format!("verifying {node}'s artifact {digest}: nothing was written"))?;
    drop(held);

    // Takes the verified blob of `media_type` out of `blobs`.
    let mut take = |media_type: &str| -> Result<Held> {
        let at = blobs
            .iter()
            .position(|(mt, _, _)| *mt == media_type)
            .with_context(|| format!("{node}: the artifact has no {media_type} layer"))?;
        Ok(blobs.swap_remove(at).2)
    };
    let config_bytes = take(&manifest.config.media_type)?.into_bytes(node)?;
    let patch = take(oci::MEDIA_TYPE_PATCH)?.into_bytes(node)?;
    let secrets = take(oci::MEDIA_TYPE_SECRETS)?.into_bytes(node)?;
    let base = match take(oci::MEDIA_TYPE_BASE)? {
        Held::File(path) => path,
        Held::Bytes(_) => bail!("{node}: the base layer was not held as a file"),
    };
    let config: NodeConfig = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("{node}: the signed config is not a Metis node config"))?;
    if config.node != node {
        bail!(
            "{node}: the signed config is for {}; nothing was written",
            config.node
        );
    }
    Ok(Verified {
        base,
        patch,
        secrets,
        config,
        digest,
        revision: verified.metadata.revision,
        key: verified.key_fingerprint,
    })
}

/// A blob of the artifact as held for verification.
enum Held {
    /// Read once; these bytes are verified and then used.
    Bytes(Vec<u8>),
    /// Streamed from the cache (the base), or missing.
    File(PathBuf),
}

impl Held {
    fn into_bytes(self, node: &str) -> Result<Vec<u8>> {
        match self {
            Held::Bytes(bytes) => Ok(bytes),
            Held::File(path) => bail!(
                "{node}: {} was verified as a file, not read; nothing was written",
                path.display()
            ),
        }
    }
}

/// The pinned keys: the operator's (`metis-flash trust add`) and any given with --trust-key.
pub(crate) fn trusted_keys(extra: &[PathBuf]) -> Result<TrustedKeys> {
    let mut keys = match TrustedKeys::default_dir() {
        Some(dir) if dir.is_dir() => TrustedKeys::load_dir(&dir)?.keys().to_vec(),
        _ => Vec::new(),
    };
    for k in extra {
        keys.push(trust::PublicKey::read(k).with_context(|| format!("reading {}", k.display()))?);
    }
    if keys.is_empty() {
        bail!(
            "no trusted signing key: pin the lab's key once with `metis-flash trust add cosign.pub` \
             (or pass --trust-key FILE); nothing was written"
        );
    }
    Ok(TrustedKeys::new(keys))
}

/// Prints why the flow stopped (and the JSON failure line with `--json`).
fn stop(error: &str, code: exit::Exit, json: bool) -> exit::Exit {
    eprintln!("error: {error}");
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "error": error, "exit_code": code as u8})
        );
    }
    code
}

/// Runs the whole flow and returns the exit code.
pub fn flash_node(args: FlashArgs) -> exit::Exit {
    let json = args.json;
    let quiet = args.quiet || json;
    let interactive = picker::interactive();
    // Without a terminal there is no picker: say what to name before any work.
    if args.node.is_none() && !interactive {
        return stop(
            "name the node to flash: metis-flash NODE (metis-flash list shows the lab's nodes)",
            exit::Exit::BadInput,
            json,
        );
    }
    let target = flash::Target::from_flags(
        args.device.as_deref(),
        args.output.as_deref(),
        args.yes,
        args.force_non_removable,
    );
    if target.is_none() && !interactive {
        return stop(
            "name where to write: --device /dev/sdX (the card) or --output FILE.img \
             (the disk picker needs a terminal)",
            exit::Exit::BadInput,
            json,
        );
    }
    let node = match args.node.clone() {
        Some(node) => node,
        None => {
            let source = IndexSource {
                registry: &args.registry,
                offline: args.offline,
                cache: args.cache.as_deref(),
                trust_key: &args.trust_key,
            };
            match picker::pick_node(&source) {
                Ok(node) => node,
                Err(e) => return stop(&e.to_string(), e.exit(), json),
            }
        }
    };
    let verified = match load_verified(&args, &node) {
        Ok(v) => v,
        Err(e) => return stop(&format!("{e:#}"), exit::Exit::Verification, json),
    };
    if !quiet {
        eprintln!(
            "{node}: revision {} ({}) verified with key {}",
            verified.revision, verified.digest, verified.key
        );
    }
    if verified.key == trust::DEMO_KEY_FINGERPRINT && !demo_ok(&args) {
        eprintln!(
            "WARNING: {node}'s artifact is signed with the example lab's DEMO key, whose private half is \
             public: anyone could have signed it. Replace the demo keys (inventory/demo-keys/README.md) \
             before using a real registry."
        );
    }
    let identities = match metis_core::secrets::Identities::for_operator(args.identity.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e:#}; nothing was written");
            return exit::Exit::BadInput;
        }
    };
    if let Some(recipient) = identities.demo_recipient() {
        if !demo_ok(&args) {
            eprintln!(
                "WARNING: your operator identity is the example lab's DEMO identity ({recipient}), \
                 whose private half is public: anyone can decrypt {node}'s secrets. Generate your own \
                 (age-keygen), have the lab rekey its secrets to it (inventory/demo-keys/README.md) \
                 before using a real registry."
            );
        }
    }
    let bundle = match metis_core::secrets::open_node_bundle(&verified.secrets, &identities) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {node}: {e:#}; nothing was written");
            return exit::Exit::BadInput;
        }
    };
    if verified.config.slot.len != bundle.len() as u64 {
        eprintln!(
            "error: {node}: the secrets bundle is {} bytes but the card's slot is {}; nothing was written",
            bundle.len(),
            verified.config.slot.len
        );
        return exit::Exit::Verification;
    }
    if !verified.config.rejoin_commands.is_empty() && !quiet {
        eprintln!("{node} is a k3s server with embedded etcd: before its card boots, remove its old etcd member and node from the live cluster:");
        for c in &verified.config.rejoin_commands {
            eprintln!("    {c}");
        }
    }
    let policy = Policy {
        force_non_removable: args.force_non_removable,
    };
    // The disk is picked once the image size is known and everything is verified
    // and decrypted, so the pick is the last step before the confirmation.
    // `--yes` does not skip that confirmation for a picked disk.
    let target = match target {
        Some(target) => target,
        None => {
            let image_size = verified.config.composed_table.image_size();
            match picker::pick_disk(&device::Native, &node, image_size, policy) {
                Ok(path) => flash::Target::Device {
                    path,
                    assume_yes: false,
                    policy,
                },
                Err(e) => return stop(&e.to_string(), e.exit(), json),
            }
        }
    };
    let composer = Path::new(&verified.base);
    let outcome = (|| {
        let patch = Patch::decode(&verified.patch)
            .map_err(|e| flash::FlashError::BadInput(format!("{node}: the node patch: {e}")))?;
        let base = std::fs::File::open(composer)
            .map_err(|e| flash::FlashError::BadInput(format!("{}: {e}", composer.display())))?;
        let c = Composer::new(
            base,
            verified.config.composed_table.clone(),
            patch,
            ComposeOptions::default(),
        )
        .map_err(|e| flash::FlashError::BadInput(format!("{node}: {e}")))?;
        flash::run(
            c,
            flash::FlashRequest {
                node: node.clone(),
                slot: Some((verified.config.slot.offset, bundle)),
                target,
                mode: flash::WriteMode::from_flags(args.sparse, args.full),
                block_size: args.block_size,
                verbosity: if quiet {
                    flash::Verbosity::Quiet
                } else {
                    flash::Verbosity::Normal
                },
                probe_capacity: true,
                signature_verified: true,
            },
        )
    })();
    crate::finish(outcome, json, args.quiet)
}

/// Whether the demo key is acceptable: the registry is an `oci:` directory or on loopback.
fn demo_ok(args: &FlashArgs) -> bool {
    pull::target(&args.registry, true)
        .map(|t| metis_core::inventory::is_test_registry(&t.location))
        .unwrap_or(false)
}
