//! `metis-flash list`: the nodes of the signed lab index, whether each is in the
//! cache (and current), and whether the cached artifact's signature verifies.
//! The node picker shows the same rows ([`lab_nodes`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metis_core::oci::{self, ImageManifest};
use metis_core::trust::{self, HeldSignature};

use crate::cli::{ListArgs, RegistryArgs};
use crate::{node, pull};

/// Whether a node's artifact is in the offline cache, and the one the index names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CacheState {
    /// The cached artifact is the one the index names.
    #[serde(rename = "cached")]
    Cached,
    /// A different (older or newer) artifact is cached.
    #[serde(rename = "stale")]
    Stale,
    /// Nothing is cached for the node.
    #[serde(rename = "not cached")]
    NotCached,
}

impl CacheState {
    /// How `list` and the picker print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Cached => "cached",
            CacheState::Stale => "stale",
            CacheState::NotCached => "not cached",
        }
    }
}

/// One node of the verified lab index, with its cache state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabNode {
    /// The node's name.
    pub node: String,
    /// Its class.
    pub class: String,
    /// The signed revision the index names.
    pub revision: u64,
    /// The artifact's manifest digest the index names.
    pub digest: String,
    /// Whether it is cached, and current.
    pub cache: CacheState,
    /// Whether the cached artifact would be accepted for this node: its signature
    /// verifies with a pinned key, it is signed for this node, its revision is the
    /// one the index names (when it is the artifact the index names) and not older
    /// than the newest seen here. Blobs are checked at flash time.
    pub verifies: bool,
    /// Why a cached artifact does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The verified lab index and its nodes.
pub struct LabNodes {
    /// The index's signed revision.
    pub revision: u64,
    /// Fingerprint of the key that signed it.
    pub key: String,
    /// Every node of the index, by name.
    pub nodes: Vec<LabNode>,
}

/// Where to find the lab index: the flags `list` and `flash` share.
pub struct IndexSource<'a> {
    /// The registry flags.
    pub registry: &'a RegistryArgs,
    /// Use only the cache.
    pub offline: bool,
    /// The cache directory flag.
    pub cache: Option<&'a Path>,
    /// Extra trusted keys.
    pub trust_key: &'a [PathBuf],
}

/// Pulls (unless offline) and verifies the lab index, and states each node's cache.
pub fn lab_nodes(source: &IndexSource) -> Result<LabNodes> {
    let target = pull::target(source.registry, source.offline)?;
    let cache = pull::open_cache(source.cache)?;
    let repo = oci::index_repository(&target.prefix);
    let registry = pull::open_registry(&target, source.offline)?;
    pull::pull_one(
        registry.as_ref(),
        &cache,
        &repo,
        &pull::Pulling::Index,
        "latest",
    )?;
    let keys = node::trusted_keys(source.trust_key)?;
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
    let mut seen = pull::seen_revisions(&cache)?;
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

    let mut nodes = Vec::new();
    for (name, entry) in &index.nodes {
        let node_repo = oci::node_repository(&target.prefix, name);
        let cached = oci::cached(&cache, &node_repo, "latest")?;
        let state = match &cached {
            None => CacheState::NotCached,
            Some(r) if r.manifest.digest == entry.digest => CacheState::Cached,
            Some(_) => CacheState::Stale,
        };
        // Everything but the blobs (checked at flash time): cheap enough for a list.
        let problem = match &cached {
            Some(r) => check_cached(&cache, &keys, &seen, &node_repo, name, entry, r).err(),
            None => None,
        };
        nodes.push(LabNode {
            node: name.clone(),
            class: entry.class.clone(),
            revision: entry.revision,
            digest: entry.digest.clone(),
            cache: state,
            verifies: cached.is_some() && problem.is_none(),
            problem,
        });
    }
    Ok(LabNodes {
        revision: verified.metadata.revision,
        key: verified.key_fingerprint,
        nodes,
    })
}

/// The checks of the cached artifact `cached` of `node` that need no blob: the
/// signature, the node it is signed for, its revision against the index `entry`
/// and against the newest seen. The error says which failed.
fn check_cached(
    cache: &oci::Layout,
    keys: &trust::TrustedKeys,
    seen: &trust::SeenRevisions,
    repository: &str,
    node: &str,
    entry: &trust::IndexEntry,
    cached: &oci::LayoutRef,
) -> Result<(), String> {
    let digest = &cached.manifest.digest;
    let (sig, payloads) =
        pull::cached_signature(cache, repository, digest, node).map_err(|e| format!("{e:#}"))?;
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let manifest = cache.read_blob(digest).map_err(|e| e.to_string())?;
    let (payload, _) = trust::verify_signature(
        keys,
        &HeldSignature {
            manifest: &sig,
            payloads: &refs,
        },
        &manifest,
    )
    .map_err(|e| e.to_string())?;
    let metadata =
        trust::Metadata::from_optional(payload.optional.as_ref()).map_err(|e| e.to_string())?;
    if metadata.kind != trust::Kind::Node {
        return Err(format!(
            "kind check failed: the signature is for a {}, not a node artifact",
            metadata.kind.as_str()
        ));
    }
    let signed_for = metadata.node.as_deref().unwrap_or_default();
    if signed_for != node {
        return Err(format!(
            "node check failed: the cached artifact is signed for node `{signed_for}`, not `{node}`"
        ));
    }
    if *digest == entry.digest && metadata.revision != entry.revision {
        return Err(format!(
            "revision check failed: the artifact is signed as revision {}, the lab index says {}",
            metadata.revision, entry.revision
        ));
    }
    seen.check(trust::Subject::Node(node), metadata.revision, false)
        .map_err(|e| e.to_string())
}

/// Lists the lab's nodes from the verified index.
pub fn list(args: ListArgs) -> Result<()> {
    let lab = lab_nodes(&IndexSource {
        registry: &args.registry,
        offline: args.offline,
        cache: args.cache.as_deref(),
        trust_key: &args.trust_key,
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "index_revision": lab.revision, "nodes": lab.nodes,
            }))?
        );
    } else {
        eprintln!(
            "lab index revision {} verified with key {}",
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
    }
    Ok(())
}
