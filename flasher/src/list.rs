//! `metis-flash list`: the nodes of the signed lab index, whether each is in the
//! cache (and current), and whether the cached artifact's signature verifies.

use anyhow::{Context, Result};
use metis_core::oci::{self, ImageManifest};
use metis_core::trust::{self, HeldSignature, SeenRevisions};

use crate::cli::ListArgs;
use crate::{node, pull};

/// Lists the lab's nodes from the verified index.
pub fn list(args: ListArgs) -> Result<()> {
    let target = pull::target(&args.registry, args.offline)?;
    let cache = pull::open_cache(args.cache.as_deref())?;
    let repo = oci::index_repository(&target.prefix);
    let registry = pull::open_registry(&target, args.offline)?;
    pull::pull_one(registry.as_ref(), &cache, &repo, "lab index", "latest")?;
    let keys = node::trusted_keys(&args.trust_key)?;
    let latest =
        oci::cached(&cache, &repo, "latest")?.context("the lab index is not in the cache")?;
    let manifest_bytes = cache.read_blob(&latest.manifest.digest)?;
    let manifest = ImageManifest::parse(&manifest_bytes)
        .map_err(|e| anyhow::anyhow!("the cached lab index manifest is malformed: {e}"))?;
    let config = cache.read_blob(&manifest.config.digest)?;
    let layer = manifest
        .layers
        .first()
        .context("the lab index manifest has no layer")?;
    let doc = cache.read_blob(&layer.digest)?;
    let (sig, payloads) =
        pull::cached_signature(&cache, &repo, &latest.manifest.digest, "lab index")?;
    let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let mut seen = SeenRevisions::load(cache.dir())?;
    let (index, verified) = trust::verify_index(
        &keys,
        &HeldSignature {
            manifest: &sig,
            payloads: &payload_refs,
        },
        &manifest_bytes,
        &config,
        &doc,
        &mut seen,
        false,
    )
    .context("verifying the lab index")?;

    let mut rows = Vec::new();
    for (name, entry) in &index.nodes {
        let node_repo = oci::node_repository(&target.prefix, name);
        let cached = oci::cached(&cache, &node_repo, "latest")?;
        let state = match &cached {
            None => "not cached",
            Some(r) if r.manifest.digest == entry.digest => "cached",
            Some(_) => "stale",
        };
        // The signature only (blobs are checked at flash time): cheap enough for a list.
        let verifies = match &cached {
            Some(r) => pull::cached_signature(&cache, &node_repo, &r.manifest.digest, name)
                .ok()
                .and_then(|(sig, payloads)| {
                    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let m = cache.read_blob(&r.manifest.digest).ok()?;
                    trust::verify_signature(
                        &keys,
                        &HeldSignature {
                            manifest: &sig,
                            payloads: &refs,
                        },
                        &m,
                    )
                    .ok()
                })
                .is_some(),
            None => false,
        };
        rows.push(serde_json::json!({
            "node": name, "class": entry.class, "revision": entry.revision,
            "digest": entry.digest, "cache": state, "verifies": verifies,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "index_revision": verified.metadata.revision, "nodes": rows,
            }))?
        );
    } else {
        eprintln!(
            "lab index revision {} verified with key {}",
            verified.metadata.revision, verified.key_fingerprint
        );
        println!(
            "{:<12} {:<22} {:>10}  {:<10}  SIGNATURE",
            "NODE", "CLASS", "REVISION", "CACHE"
        );
        for r in &rows {
            println!(
                "{:<12} {:<22} {:>10}  {:<10}  {}",
                r["node"].as_str().unwrap_or(""),
                r["class"].as_str().unwrap_or(""),
                r["revision"].as_u64().unwrap_or(0),
                r["cache"].as_str().unwrap_or(""),
                if r["verifies"] == true { "ok" } else { "-" }
            );
        }
    }
    Ok(())
}
