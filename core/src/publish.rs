//! The GitOps pipeline: decide which nodes changed ([`plan`]) and publish
//! exactly those as signed node artifacts plus a signed lab index ([`publish`]).
//!
//! "Unchanged" is decided from a node's *input digest* — golden image digest,
//! rendered seed, sealed-secrets ciphertext digest, the operators' recipients,
//! builder and format versions — compared with the `dev.metis.input-digest`
//! annotation of the node's published `latest` manifest. The parts (and the
//! digests of the node, class and lab files, which only explain a change) are
//! kept in the node's config blob, so a plan can say what changed. Nothing is rebuilt to find out: age
//! encryption is randomised, so a rebuilt node always has a new manifest digest.
//! Comparing against each node's own `latest` (not the index) makes a rerun
//! after a crash finish the rest instead of starting over.
//!
//! The config blob's format ([`NodeConfig`]) lives in [`artifact`](crate::artifact),
//! where the flasher reads it; this module needs the `build` feature, and
//! [`publish`] signs, so it exists only with `signing` too.
#![cfg_attr(not(feature = "signing"), allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::image::base::{write_base, BaseOptions};
use crate::image::chunks::{ChunkTable, CHUNK_TABLE_VERSION, DEFAULT_CHUNK_SIZE};
use crate::image::compose::compose_table;
use crate::image::golden::GoldenImage;
use crate::image::node::{node_image_with, open_class_golden_via};
use crate::image::patch::PATCH_VERSION;
use crate::inventory::Inventory;
use crate::oci::{self, block_on, ImageManifest, LayerFile, NodeProvenance, Progress, Registry};
use crate::render;
#[cfg(feature = "signing")]
use crate::trust::PrivateKey;
use crate::trust::{self, LabIndex, Metadata};

pub use crate::artifact::{Inputs, NodeConfig, SlotLocation, Sources, NODE_CONFIG_VERSION};

/// The builder's version, part of every input digest: a new builder rebuilds every node.
pub const BUILDER_VERSION: &str = concat!("metis-build ", env!("CARGO_PKG_VERSION"));
/// Version of what the input digest covers (2: operator recipients added).
const INPUTS_VERSION: u32 = 2;
/// Annotation holding the build revision as a number (the signed `metis.revision`).
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
/// Annotation holding the input digest.
pub const INPUT_DIGEST_ANNOTATION: &str = "dev.metis.input-digest";

/// Errors of planning or publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Building a node's image failed.
    #[error("{node}: {message}")]
    Node {
        /// The node.
        node: String,
        /// What failed (never a secret value).
        message: String,
    },
    /// The registry refused or failed.
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] trust::SignError),
    /// Reading or writing the work directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A node named on the command line is not in the inventory.
    #[error("no node `{0}` in the inventory; `metis-build nodes` lists them")]
    UnknownNode(String),
    /// The requested revision does not move forward.
    #[error("revision {asked} is older than the published revision {published}; flashers refuse rollbacks — pass a larger --revision or none")]
    Revision {
        /// Asked for.
        asked: u64,
        /// Newest published.
        published: u64,
    },
    /// The requested revision equals the published one, and something signed
    /// already holds it that this run would replace.
    #[error("revision {revision} is already signed for {what}; a second signed artifact at the same revision could be swapped for the first, as flashers refuse only older revisions — pass a larger --revision or none")]
    RevisionTaken {
        /// Asked for (and published).
        revision: u64,
        /// What holds it: `node NAME` or `the lab index`.
        what: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a node's secrets layer comes from: the age ciphertext for the
/// operators, and the digest of the *sealed* sources (never of clear values)
/// for the input digest.
pub trait SecretsSource: Sync {
    /// The secrets layer (age-encrypted bundle) of `node`.
    fn sealed_bundle(&self, inv: &Inventory, node: &str) -> Result<Vec<u8>, String>;
    /// Digest of the sealed source files of `node` (ciphertext), for the input digest.
    fn sealed_digest(&self, inv: &Inventory, node: &str) -> Result<String, String>;
}

/// Secrets from the inventory's age-sealed sources, decrypted with the CI
/// identity and re-sealed to the operators only.
pub struct SealedSecrets {
    ci: Option<Mutex<crate::secrets::Identities>>,
}

impl SealedSecrets {
    /// Uses the CI builder's identity; without one, only digests (plans) work.
    pub fn new(ci: Option<crate::secrets::Identities>) -> Self {
        Self {
            ci: ci.map(Mutex::new),
        }
    }
}

impl SecretsSource for SealedSecrets {
    fn sealed_bundle(&self, inv: &Inventory, node: &str) -> Result<Vec<u8>, String> {
        let ci = self
            .ci
            .as_ref()
            .ok_or_else(|| {
                "no CI identity to decrypt the sealed secrets: pass --identity FILE or set METIS_AGE_IDENTITY"
                    .to_string()
            })?
            .lock()
            .map_err(|_| "secrets lock poisoned".to_string())?;
        crate::secrets::seal_node_bundle(inv, node, &ci).map_err(|e| e.to_string())
    }

    fn sealed_digest(&self, inv: &Inventory, node: &str) -> Result<String, String> {
        crate::secrets::sealed_digest(inv, node).map_err(|e| e.to_string())
    }
}

/// Digest of the sorted operator recipients.
fn recipients_digest(inv: &Inventory) -> String {
    let mut recipients: Vec<&str> = inv
        .lab
        .operator_recipients
        .iter()
        .map(|r| r.trim())
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(recipients.join("\n").as_bytes()))
    )
}

/// sha256 of an inventory file; empty when it cannot be read (the digest only
/// explains a change, it decides nothing).
fn source_digest(inv: &Inventory, file: &Path) -> String {
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        inv.dir.join(file)
    };
    std::fs::read(path)
        .map(|b| format!("sha256:{}", hex::encode(Sha256::digest(&b))))
        .unwrap_or_default()
}

/// Computes a node's inputs without building its image.
pub fn node_inputs(
    inv: &Inventory,
    node: &str,
    secrets: &dyn SecretsSource,
) -> Result<Inputs, PublishError> {
    let n = inv
        .nodes
        .get(node)
        .ok_or_else(|| PublishError::UnknownNode(node.to_string()))?;
    let class = inv.class_of(n);
    let rendered = render::render(inv, node).map_err(|e| PublishError::Node {
        node: node.to_string(),
        message: e.to_string(),
    })?;
    let mut h = Sha256::new();
    let mut field = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (path, bytes) in &rendered.seed {
        field(&format!("seed:{path}"), bytes);
    }
    for f in &rendered.root_files {
        field(&format!("root:{}:{:o}", f.path, f.mode), &f.content);
    }
    for e in rendered.root_edits.iter().chain(&rendered.seed_edits) {
        field(&format!("edit:{}:{}", e.path, e.key), e.value.as_bytes());
    }
    let golden_sha = match &class.golden {
        crate::inventory::Golden::Path { sha256, .. }
        | crate::inventory::Golden::Url { sha256, .. } => sha256.clone(),
        crate::inventory::Golden::Oci { reference } => reference.clone(),
    };
    let secrets = secrets
        .sealed_digest(inv, node)
        .map_err(|message| PublishError::Node {
            node: node.to_string(),
            message,
        })?;
    Ok(Inputs {
        builder: format!(
            "{BUILDER_VERSION} config/{NODE_CONFIG_VERSION} chunks/{CHUNK_TABLE_VERSION} patch/{PATCH_VERSION} bundle/{} chunk-size/{DEFAULT_CHUNK_SIZE} inputs/{INPUTS_VERSION}",
            render::BUNDLE_FORMAT
        ),
        golden: format!("{}@{golden_sha}", class.name),
        seed: format!("sha256:{}", hex::encode(h.finalize())),
        secrets,
        recipients: recipients_digest(inv),
        sources: Sources {
            node: source_digest(inv, &n.file),
            class: source_digest(inv, &class.file),
            lab: source_digest(inv, Path::new("metis.yaml")),
        },
    })
}

/// What a plan decided for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Build and publish it.
    Build,
    /// Its published artifact is current.
    Skip,
    /// In the registry's index but no longer in the inventory: leaves the index.
    Remove,
    /// Its inputs could not be computed (the reason says why): not built, and
    /// a publish reports it failed.
    Fail,
}

/// One node of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedNode {
    /// Node name.
    pub node: String,
    /// Class (empty for removed nodes).
    pub class: String,
    /// Build, skip, remove or fail.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The node's input digest now (empty for removed and failed nodes).
    pub input_digest: String,
    /// Digest of the published `latest` manifest, if any.
    pub published: Option<String>,
    /// Revision of the published `latest`, if any.
    pub published_revision: Option<u64>,
    #[serde(skip)]
    published_signed: bool,
    #[serde(skip)]
    inputs: Option<Inputs>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every node of the inventory, plus removed ones.
    pub nodes: Vec<PlannedNode>,
    /// Newest revision published so far (0: none).
    pub published_revision: u64,
    /// Why the lab index must be published again even if no node is built
    /// (none yet, unsigned, or behind the nodes' `latest` after an interrupted
    /// run); `null` when it is current.
    pub index_update: Option<String>,
    /// The lab index as published, if any.
    #[serde(skip)]
    pub index: Option<LabIndex>,
}

impl Plan {
    /// Nodes to build.
    pub fn to_build(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes.iter().filter(|n| n.action == Action::Build)
    }

    /// Nodes whose inputs could not be computed.
    pub fn failed(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes.iter().filter(|n| n.action == Action::Fail)
    }
}

/// A published node manifest, as much as a plan needs.
struct PublishedNode {
    signed: bool,
    digest: String,
    revision: u64,
    input_digest: Option<String>,
    inputs: Option<Inputs>,
}

/// A small published blob (a node config, the index document): within its
/// descriptor's size and `oci::MAX_SMALL_BYTES`, digest checked.
fn fetch_blob(
    registry: &Registry,
    repo: &str,
    blob: &oci::Descriptor,
) -> Result<Vec<u8>, PublishError> {
    Ok(block_on(registry.fetch_small_blob(
        repo,
        &blob.digest,
        blob.size,
    ))?)
}

/// `repo`'s published `latest` manifest and its digest; `None` when there is none.
fn published_latest(
    registry: &Registry,
    repo: &str,
) -> Result<Option<(String, ImageManifest)>, PublishError> {
    let (bytes, digest) = match block_on(registry.pull_manifest_raw(repo, "latest")) {
        Ok(m) => m,
        Err(oci::OciError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let manifest = ImageManifest::parse(&bytes).map_err(|reason| PublishError::Node {
        node: repo.to_string(),
        message: format!("published manifest is malformed: {reason}"),
    })?;
    Ok(Some((digest, manifest)))
}

fn published_node(registry: &Registry, repo: &str) -> Result<Option<PublishedNode>, PublishError> {
    let Some((digest, manifest)) = published_latest(registry, repo)? else {
        return Ok(None);
    };
    let ann = &manifest.annotations;
    let revision = ann
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let config: Option<NodeConfig> = fetch_blob(registry, repo, &manifest.config)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // A run killed between pushing a manifest and its signature leaves it
    // unsigned; such a node is built again rather than skipped.
    let signed = is_signed(registry, repo, &digest)?;
    Ok(Some(PublishedNode {
        signed,
        digest,
        revision,
        input_digest: ann.get(INPUT_DIGEST_ANNOTATION).cloned(),
        inputs: config.map(|c| c.inputs),
    }))
}

/// The published lab index and whether its `latest` is signed.
fn published_index(
    registry: &Registry,
    prefix: &str,
) -> Result<Option<(LabIndex, bool)>, PublishError> {
    let repo = oci::index_repository(prefix);
    let Some((digest, manifest)) = published_latest(registry, &repo)? else {
        return Ok(None);
    };
    let Some(layer) = manifest.layers.first() else {
        return Ok(None);
    };
    let doc = fetch_blob(registry, &repo, layer)?;
    let Ok(index) = LabIndex::parse(&doc) else {
        return Ok(None);
    };
    Ok(Some((index, is_signed(registry, &repo, &digest)?)))
}

/// Whether manifest `digest` of `repo` has a signature.
fn is_signed(registry: &Registry, repo: &str, digest: &str) -> Result<bool, PublishError> {
    let Some(tag) = trust::signature_tag(digest) else {
        return Ok(false);
    };
    match block_on(registry.pull_manifest_raw(repo, &tag)) {
        Ok(_) => Ok(true),
        Err(oci::OciError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether tag `tag` of `repo` names a signed manifest.
fn signed_at(registry: &Registry, repo: &str, tag: &str) -> Result<bool, PublishError> {
    match block_on(registry.pull_manifest_raw(repo, tag)) {
        Ok((_, digest)) => is_signed(registry, repo, &digest),
        Err(oci::OciError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The words of a per-node error, without the node name a report shows beside it.
fn node_message(e: PublishError) -> String {
    match e {
        PublishError::Node { message, .. } => message,
        other => other.to_string(),
    }
}

/// Compares every node's inputs with what the registry holds. A node whose
/// inputs cannot be computed (render error, unreadable sealed file, malformed
/// published manifest) is planned as [`Action::Fail`] and the others still
/// planned; only registry errors end the plan.
pub fn plan(
    inv: &Inventory,
    registry: &Registry,
    secrets: &dyn SecretsSource,
) -> Result<Plan, PublishError> {
    let prefix = &inv.lab.registry.prefix;
    let published_idx = published_index(registry, prefix)?;
    let mut nodes = Vec::new();
    let mut newest = published_idx
        .as_ref()
        .and_then(|(i, _)| i.nodes.values().map(|e| e.revision).max())
        .unwrap_or(0);
    for (name, node) in &inv.nodes {
        let failed = |reason: String, published: Option<&PublishedNode>| PlannedNode {
            node: name.clone(),
            class: node.class.clone(),
            action: Action::Fail,
            reason,
            input_digest: String::new(),
            published: published.map(|p| p.digest.clone()),
            published_revision: published.map(|p| p.revision),
            published_signed: published.is_some_and(|p| p.signed),
            inputs: None,
        };
        let published = match published_node(registry, &oci::node_repository(prefix, name)) {
            Ok(p) => p,
            Err(PublishError::Oci(e)) => return Err(e.into()),
            Err(e) => {
                nodes.push(failed(node_message(e), None));
                continue;
            }
        };
        if let Some(p) = &published {
            newest = newest.max(p.revision);
        }
        let inputs = match node_inputs(inv, name, secrets) {
            Ok(i) => i,
            Err(PublishError::Oci(e)) => return Err(e.into()),
            Err(e) => {
                nodes.push(failed(node_message(e), published.as_ref()));
                continue;
            }
        };
        let digest = inputs.digest();
        let (action, reason) = match &published {
            None => (Action::Build, "new node".to_string()),
            Some(p) if !p.signed => (
                Action::Build,
                "published artifact has no signature (interrupted run)".to_string(),
            ),
            Some(p) if p.input_digest.as_deref() == Some(digest.as_str()) => {
                (Action::Skip, "unchanged".to_string())
            }
            Some(p) => (Action::Build, change_reason(p.inputs.as_ref(), &inputs)),
        };
        nodes.push(PlannedNode {
            node: name.clone(),
            class: node.class.clone(),
            action,
            reason,
            input_digest: digest,
            published: published.as_ref().map(|p| p.digest.clone()),
            published_revision: published.as_ref().map(|p| p.revision),
            published_signed: published.as_ref().is_some_and(|p| p.signed),
            inputs: Some(inputs),
        });
    }
    if let Some((idx, _)) = &published_idx {
        for (name, entry) in &idx.nodes {
            if !inv.nodes.contains_key(name) {
                nodes.push(PlannedNode {
                    node: name.clone(),
                    class: entry.class.clone(),
                    action: Action::Remove,
                    reason: "removed from the inventory (leaves the index; artifact deleted only with --prune)".into(),
                    input_digest: String::new(),
                    published: Some(entry.digest.clone()),
                    published_revision: Some(entry.revision),
                    published_signed: true,
                    inputs: None,
                });
            }
        }
    }
    let index_update = index_update(published_idx.as_ref(), &nodes);
    Ok(Plan {
        nodes,
        published_revision: newest,
        index_update,
        index: published_idx.map(|(i, _)| i),
    })
}

/// Why the published index no longer matches the nodes' signed `latest`
/// artifacts, as after a run killed between its last node and the index.
fn index_update(published: Option<&(LabIndex, bool)>, nodes: &[PlannedNode]) -> Option<String> {
    let Some((index, signed)) = published else {
        return Some("no lab index published yet".into());
    };
    if !signed {
        return Some("the published index has no signature (interrupted run)".into());
    }
    for n in nodes {
        if n.action != Action::Skip {
            continue;
        }
        let current = n
            .published
            .as_ref()
            .zip(n.published_revision)
            .map(|(digest, revision)| (digest.as_str(), revision, n.class.as_str()));
        let listed = index
            .nodes
            .get(&n.node)
            .map(|e| (e.digest.as_str(), e.revision, e.class.as_str()));
        if current != listed {
            return Some(match listed {
                None => format!("the index lacks {} (interrupted run)", n.node),
                Some(_) => format!(
                    "the index lists an older artifact of {} (interrupted run)",
                    n.node
                ),
            });
        }
    }
    None
}

fn change_reason(old: Option<&Inputs>, new: &Inputs) -> String {
    let Some(old) = old else {
        return "inputs changed".into();
    };
    let mut what = Vec::new();
    if old.builder != new.builder {
        what.push("new builder or format version");
    }
    if old.golden != new.golden {
        what.push("changed class golden image");
    }
    if old.seed != new.seed {
        let (was, now) = (&old.sources, &new.sources);
        let before = what.len();
        if was.node.is_empty() {
            // Made by a builder that kept no sources: cannot tell which file.
            what.push("changed node, class or lab settings");
        } else {
            if was.node != now.node {
                what.push("changed node settings");
            }
            if was.class != now.class {
                what.push("changed class settings");
            }
            if was.lab != now.lab {
                what.push("changed lab settings (metis.yaml)");
            }
        }
        if what.len() == before {
            what.push("changed rendered seed (templates or hook files)");
        }
    }
    if old.secrets != new.secrets {
        what.push("changed secrets");
    }
    // An artifact from before recipients were an input says "new builder" already.
    if !old.recipients.is_empty() && old.recipients != new.recipients {
        what.push("operator recipients changed");
    }
    if what.is_empty() {
        "inputs changed".into()
    } else {
        what.join(", ")
    }
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Only these nodes (empty: every planned node).
    pub only: Vec<String>,
    /// Parallel node builds.
    pub jobs: usize,
    /// Plan and build nothing.
    pub dry_run: bool,
    /// Publish the index even if some nodes failed.
    pub partial: bool,
    /// Build every selected node, changed or not (to re-sign with a new key).
    pub rebuild: bool,
    /// Delete the artifacts of nodes leaving the index (removed from the inventory).
    pub prune: bool,
    /// Revision to publish; `None`: published + 1. It must be newer than the
    /// published one, or equal to finish an interrupted run (see [`publish`]).
    pub revision: Option<u64>,
    /// Scratch directory (class bases are kept here between runs).
    pub work_dir: PathBuf,
    /// RFC 3339 build time recorded in artifacts.
    pub built: String,
    /// Where the inventory lives (`org.opencontainers.image.source`).
    pub source: String,
}

/// What happened to one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// Node.
    pub node: String,
    /// `built`, `skipped`, `removed`, `failed` or (dry run) `would build`.
    pub status: String,
    /// Why (plan reason, or the error).
    pub detail: String,
    /// Manifest digest of the node's artifact after this run.
    pub digest: Option<String>,
    /// Blob bytes uploaded for this node.
    pub uploaded_bytes: u64,
}

/// What a publish did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The revision built nodes got.
    pub revision: u64,
    /// Per node.
    pub nodes: Vec<NodeResult>,
    /// Bytes of class bases uploaded.
    pub base_bytes_uploaded: u64,
    /// Whether the signed index was published.
    pub index_published: bool,
    /// Digest of the published index manifest.
    pub index_digest: Option<String>,
}

impl Report {
    /// Whether any node failed.
    pub fn failed(&self) -> bool {
        self.nodes.iter().any(|n| n.status == "failed")
    }
}

/// A class base compressed once per golden digest and kept in the work dir.
struct Base {
    path: PathBuf,
    table: ChunkTable,
    /// `sha256:<hex>` of the compressed file: its blob digest.
    digest: String,
}

fn class_base(golden: &GoldenImage, class: &str, work: &Path) -> Result<Base, PublishError> {
    let sha = golden.sha256();
    let dir = work.join("bases");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.zst"));
    let table_path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.table.json"));
    let digest_path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.digest"));
    // The base is renamed into place last, after its table and digest, so its
    // presence means all three are whole.
    if let (Ok(_), Ok(t), Ok(digest)) = (
        std::fs::metadata(&path),
        std::fs::read(&table_path),
        std::fs::read_to_string(&digest_path),
    ) {
        if let Ok(table) = serde_json::from_slice(&t) {
            return Ok(Base {
                path,
                table,
                digest,
            });
        }
    }
    let raw = golden.raw_path();
    let tmp = path.with_extension("zst.part");
    let summary = write_base(
        std::fs::File::open(raw).map_err(io_err(raw))?,
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err(&tmp))?),
        &BaseOptions::default(),
    )
    .map_err(|e| PublishError::Node {
        node: class.to_string(),
        message: format!("compressing the class base: {e}"),
    })?;
    std::fs::write(
        &table_path,
        serde_json::to_vec(&summary.table).expect("table serialises"),
    )
    .map_err(io_err(&table_path))?;
    let digest = oci::hash_file(&tmp)?;
    std::fs::write(&digest_path, &digest).map_err(io_err(&digest_path))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(Base {
        path,
        table: summary.table,
        digest,
    })
}

/// Attempts for each registry request that fails transiently.
const ATTEMPTS: u32 = 4;

/// Opens a class's golden image (checking its digest), makes its base and
/// uploads it once to the class's golden repository; returns the bytes uploaded.
fn prepare_class(
    inv: &Inventory,
    registry: &Registry,
    class: &str,
    work_dir: &Path,
) -> Result<(GoldenImage, Base, u64), PublishError> {
    let golden = open_class_golden_via(
        inv,
        class,
        Some(&work_dir.join("golden-raw")),
        Some(registry),
    )
    .map_err(|e| PublishError::Node {
        node: class.to_string(),
        message: e.to_string(),
    })?;
    let base = class_base(&golden, class, work_dir)?;
    let golden_repo = oci::golden_repository(&inv.lab.registry.prefix, class);
    let digest = base.digest.clone();
    let exists = block_on(oci::retry(ATTEMPTS, || {
        registry.blob_exists(&golden_repo, &digest)
    }))?;
    let mut uploaded = 0;
    if !exists {
        let size = std::fs::metadata(&base.path)
            .map_err(io_err(&base.path))?
            .len();
        let progress = Progress::none();
        block_on(oci::retry(ATTEMPTS, || {
            registry.push_blob_file(&golden_repo, &digest, size, &base.path, &progress)
        }))?;
        uploaded = size;
    }
    Ok((golden, base, uploaded))
}

/// Builds, pushes and signs every planned node, then the signed lab index.
///
/// Nothing to build and the index current: a no-op, whatever `revision` says,
/// so a rerun of a published commit succeeds. Otherwise built nodes and the
/// index get `opts.revision` (default: published + 1). A revision equal to the
/// published one finishes an interrupted run: it is refused when a node to
/// build or the index already has a *signed* artifact at it, because flashers
/// refuse only older revisions and would take either of two artifacts signed
/// at one revision.
///
/// A class whose golden image or base fails fails its nodes only; a node that
/// fails does not stop the others. The index is published when every node
/// succeeded, or with `opts.partial` (failed nodes keep their old entry).
#[cfg(feature = "signing")]
pub fn publish(
    inv: &Inventory,
    registry: &Registry,
    key: &PrivateKey,
    secrets: &dyn SecretsSource,
    plan: &Plan,
    opts: &PublishOptions,
) -> Result<Report, PublishError> {
    for n in &opts.only {
        if !inv.nodes.contains_key(n) {
            return Err(PublishError::UnknownNode(n.clone()));
        }
    }
    let selected = |n: &PlannedNode| opts.only.is_empty() || opts.only.contains(&n.node);
    let builds = |n: &PlannedNode| {
        selected(n) && (n.action == Action::Build || (opts.rebuild && n.action == Action::Skip))
    };
    let to_build: Vec<&PlannedNode> = plan.nodes.iter().filter(|n| builds(n)).collect();
    let mut results: BTreeMap<String, NodeResult> = BTreeMap::new();
    for n in &plan.nodes {
        let (status, detail) = match n.action {
            _ if builds(n) => continue,
            Action::Skip => ("skipped", n.reason.clone()),
            Action::Remove => ("removed", n.reason.clone()),
            Action::Fail if selected(n) => ("failed", n.reason.clone()),
            Action::Build | Action::Fail => ("skipped", "not selected".to_string()),
        };
        results.insert(
            n.node.clone(),
            NodeResult {
                node: n.node.clone(),
                status: status.into(),
                detail,
                digest: n.published.clone(),
                uploaded_bytes: 0,
            },
        );
    }
    let removing = plan.nodes.iter().any(|n| n.action == Action::Remove);
    if to_build.is_empty() && !removing && plan.index_update.is_none() {
        // Nothing to publish: a rerun of a published commit, whatever its --revision.
        return Ok(Report {
            revision: plan.published_revision,
            nodes: results.into_values().collect(),
            base_bytes_uploaded: 0,
            index_published: false,
            index_digest: None,
        });
    }
    let prefix = &inv.lab.registry.prefix;
    let index_repo = oci::index_repository(prefix);
    let revision = match opts.revision {
        None => plan.published_revision + 1,
        Some(r) if r > plan.published_revision => r,
        Some(r) if r == plan.published_revision => {
            if let Some(n) = to_build
                .iter()
                .find(|n| n.published_revision == Some(r) && n.published_signed)
            {
                return Err(PublishError::RevisionTaken {
                    revision: r,
                    what: format!("node {}", n.node),
                });
            }
            if signed_at(registry, &index_repo, &r.to_string())? {
                return Err(PublishError::RevisionTaken {
                    revision: r,
                    what: "the lab index".into(),
                });
            }
            r
        }
        Some(r) => {
            return Err(PublishError::Revision {
                asked: r,
                published: plan.published_revision,
            })
        }
    };
    let reason = |n: &PlannedNode| match n.action {
        Action::Skip => "forced (--rebuild)".to_string(),
        _ => n.reason.clone(),
    };
    if opts.dry_run {
        for n in &to_build {
            results.insert(
                n.node.clone(),
                NodeResult {
                    node: n.node.clone(),
                    status: "would build".into(),
                    detail: reason(n),
                    digest: n.published.clone(),
                    uploaded_bytes: 0,
                },
            );
        }
        return Ok(Report {
            revision,
            nodes: results.into_values().collect(),
            base_bytes_uploaded: 0,
            index_published: false,
            index_digest: None,
        });
    }

    // Class bases first, once per class, so the parallel node builds only mount them.
    // Each class's golden image is opened (its digest checked) once, for its base
    // and for all its nodes. A class that fails fails its own nodes only.
    let mut bases: BTreeMap<String, Base> = BTreeMap::new();
    let mut goldens: BTreeMap<String, Arc<GoldenImage>> = BTreeMap::new();
    let mut class_failures: BTreeMap<String, String> = BTreeMap::new();
    let mut base_bytes_uploaded = 0;
    for n in &to_build {
        if bases.contains_key(&n.class) || class_failures.contains_key(&n.class) {
            continue;
        }
        match prepare_class(inv, registry, &n.class, &opts.work_dir) {
            Ok((golden, base, uploaded)) => {
                base_bytes_uploaded += uploaded;
                goldens.insert(n.class.clone(), Arc::new(golden));
                bases.insert(n.class.clone(), base);
            }
            Err(e) => {
                class_failures.insert(
                    n.class.clone(),
                    format!("class {}: {}", n.class, node_message(e)),
                );
            }
        }
    }
    for n in &to_build {
        if let Some(message) = class_failures.get(&n.class) {
            results.insert(
                n.node.clone(),
                NodeResult {
                    node: n.node.clone(),
                    status: "failed".into(),
                    detail: message.clone(),
                    digest: n.published.clone(),
                    uploaded_bytes: 0,
                },
            );
        }
    }

    let queue = Mutex::new(
        to_build
            .iter()
            .filter(|n| bases.contains_key(&n.class))
            .copied()
            .collect::<Vec<_>>(),
    );
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let Some(n) = queue.lock().expect("queue lock").pop() else {
                    break;
                };
                let r = publish_node(
                    inv,
                    registry,
                    key,
                    secrets,
                    n,
                    &bases[&n.class],
                    Arc::clone(&goldens[&n.class]),
                    revision,
                    opts,
                );
                done.lock().expect("results lock").push((
                    n.node.clone(),
                    reason(n),
                    n.published.clone(),
                    r,
                ));
            });
        }
    });
    for (node, reason, published, r) in done.into_inner().expect("results lock") {
        let res = match r {
            Ok((digest, uploaded)) => NodeResult {
                node: node.clone(),
                status: "built".into(),
                detail: reason,
                digest: Some(digest),
                uploaded_bytes: uploaded,
            },
            Err(e) => NodeResult {
                node: node.clone(),
                status: "failed".into(),
                detail: node_message(e),
                digest: published,
                uploaded_bytes: 0,
            },
        };
        results.insert(node, res);
    }
    let mut report = Report {
        revision,
        nodes: results.into_values().collect(),
        base_bytes_uploaded,
        index_published: false,
        index_digest: None,
    };
    let changed = report
        .nodes
        .iter()
        .any(|n| n.status == "built" || n.status == "removed");
    if (report.failed() && !opts.partial) || (!changed && plan.index_update.is_none()) {
        return Ok(report);
    }

    // The index lists every inventory node that has an artifact, with its signed revision.
    let mut index = LabIndex::new();
    for (name, node) in &inv.nodes {
        let r = report.nodes.iter().find(|n| &n.node == name);
        let planned = plan.nodes.iter().find(|n| &n.node == name);
        let entry = match r {
            Some(r) if r.status == "built" => {
                Some((r.digest.clone().unwrap_or_default(), revision))
            }
            _ => planned
                .filter(|p| p.published_signed)
                .and_then(|p| p.published.clone().zip(p.published_revision)),
        };
        if let Some((digest, rev)) = entry {
            index.nodes.insert(
                name.clone(),
                trust::IndexEntry {
                    class: node.class.clone(),
                    digest,
                    revision: rev,
                },
            );
        }
    }
    let art = index.to_artifact();
    block_on(async {
        for blob in [&art.config.bytes, &art.layer.bytes] {
            oci::retry(ATTEMPTS, || registry.push_blob_bytes(&index_repo, blob)).await?;
        }
        for tag in ["latest".to_string(), revision.to_string()] {
            oci::retry(ATTEMPTS, || {
                registry.push_manifest_raw(
                    &index_repo,
                    &tag,
                    &art.manifest.bytes,
                    oci::MEDIA_TYPE_IMAGE_MANIFEST,
                )
            })
            .await?;
        }
        Ok::<_, oci::OciError>(())
    })?;
    let meta = Metadata::index(revision, &opts.built);
    push_signature(registry, &index_repo, &art.manifest.digest, &meta, key)?;
    report.index_published = true;
    report.index_digest = Some(art.manifest.digest.clone());

    // Artifacts of removed nodes go only once the index no longer names them.
    if opts.prune {
        for r in report.nodes.iter_mut().filter(|n| n.status == "removed") {
            let repo = oci::node_repository(prefix, &r.node);
            match block_on(registry.delete_repository_manifests(&repo)) {
                Ok(n) => {
                    r.detail = format!("removed from the inventory: left the index, {n} manifests deleted (--prune)");
                    r.digest = None;
                }
                Err(e) => {
                    r.status = "failed".into();
                    r.detail = format!("left the index, but deleting its artifact failed: {e}");
                }
            }
        }
    }
    Ok(report)
}

#[cfg(feature = "signing")]
fn push_signature(
    registry: &Registry,
    repo: &str,
    digest: &str,
    meta: &Metadata,
    key: &PrivateKey,
) -> Result<(), PublishError> {
    let reference = match registry {
        Registry::Layout(_) => repo.to_string(),
        Registry::Remote(_) => format!("{}/{repo}", registry.name()),
    };
    let sig = trust::sign(&reference, digest, Some(meta), key)?;
    block_on(async {
        for blob in [&sig.payload.bytes, &sig.config.bytes] {
            oci::retry(ATTEMPTS, || registry.push_blob_bytes(repo, blob)).await?;
        }
        oci::retry(ATTEMPTS, || {
            registry.push_manifest_raw(
                repo,
                &sig.tag,
                &sig.manifest.bytes,
                oci::MEDIA_TYPE_IMAGE_MANIFEST,
            )
        })
        .await
    })?;
    Ok(())
}

#[cfg(feature = "signing")]
#[allow(clippy::too_many_arguments)]
fn publish_node(
    inv: &Inventory,
    registry: &Registry,
    key: &PrivateKey,
    secrets: &dyn SecretsSource,
    planned: &PlannedNode,
    base: &Base,
    golden: Arc<GoldenImage>,
    revision: u64,
    opts: &PublishOptions,
) -> Result<(String, u64), PublishError> {
    let node = planned.node.as_str();
    let fail = |message: String| PublishError::Node {
        node: node.to_string(),
        message,
    };
    let inputs = planned
        .inputs
        .clone()
        .ok_or_else(|| fail("no inputs planned".into()))?;
    let img = node_image_with(inv, node, golden).map_err(|e| fail(e.to_string()))?;
    let patch = img.patch().map_err(|e| fail(e.to_string()))?;
    let composed = compose_table(
        std::fs::File::open(&base.path).map_err(io_err(&base.path))?,
        &base.table,
        &patch,
    )
    .map_err(|e| fail(format!("composing the chunk table: {e}")))?;
    let dir = opts.work_dir.join("nodes").join(node);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let patch_path = dir.join("patch.zst");
    std::fs::write(
        &patch_path,
        patch.encode().map_err(|e| fail(e.to_string()))?,
    )
    .map_err(io_err(&patch_path))?;
    let secrets_path = dir.join("secrets.age");
    let sealed = secrets.sealed_bundle(inv, node).map_err(fail)?;
    std::fs::write(&secrets_path, sealed).map_err(io_err(&secrets_path))?;

    let class = inv.class_of(&inv.nodes[node]).name.clone();
    let config = NodeConfig {
        version: NODE_CONFIG_VERSION,
        node: node.to_string(),
        class: class.clone(),
        role: inv.nodes[node].role.to_string(),
        rejoin_commands: img
            .rendered
            .server_rejoin_commands
            .clone()
            .unwrap_or_default(),
        image_size: img.personalised.image_size,
        base_table: base.table.clone(),
        composed_table: composed,
        slot: SlotLocation {
            offset: img.personalised.slot.offset,
            len: img.personalised.slot.len,
        },
        revision,
        inputs: inputs.clone(),
        builder: BUILDER_VERSION.to_string(),
    };
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let prefix = &inv.lab.registry.prefix;
    let repo = oci::node_repository(prefix, node);
    let layers = [
        LayerFile {
            media_type: oci::MEDIA_TYPE_BASE.into(),
            path: base.path.clone(),
            shared_in: Some(oci::golden_repository(prefix, &class)),
            digest: Some(base.digest.clone()),
        },
        LayerFile {
            media_type: oci::MEDIA_TYPE_PATCH.into(),
            path: patch_path,
            shared_in: None,
            digest: None,
        },
        LayerFile {
            media_type: oci::MEDIA_TYPE_SECRETS.into(),
            path: secrets_path.clone(),
            shared_in: None,
            digest: None,
        },
    ];
    let provenance = NodeProvenance {
        node: node.to_string(),
        class: class.clone(),
        revision: revision.to_string(),
        created: opts.built.clone(),
        source: opts.source.clone(),
        input_digest: inputs.digest(),
    };
    let published = block_on(oci::publish_node_artifact(
        registry,
        &repo,
        &[revision.to_string(), "latest".to_string()],
        &config_bytes,
        &layers,
        &provenance.annotations(),
        &Progress::none(),
    ));
    // The sealed bundle is ciphertext, but nothing of a node's secrets stays around.
    let _ = std::fs::remove_file(&secrets_path);
    let published = published?;
    let meta = Metadata::node(node, &class, revision, &opts.built);
    push_signature(registry, &repo, &published.digest, &meta, key)?;
    Ok((published.digest, published.uploaded_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            builder: "metis-build 1 inputs/2".into(),
            golden: "rpi5@aa".into(),
            seed: "sha256:01".into(),
            secrets: "sha256:02".into(),
            recipients: "sha256:03".into(),
            sources: Sources {
                node: "sha256:n".into(),
                class: "sha256:c".into(),
                lab: "sha256:l".into(),
            },
        }
    }

    #[test]
    fn sources_explain_but_do_not_decide() {
        let mut edited = inputs();
        edited.sources.node = "sha256:comment-only".into();
        assert_eq!(edited.digest(), inputs().digest());
        edited.recipients = "sha256:another-operator".into();
        assert_ne!(edited.digest(), inputs().digest());
    }

    #[test]
    fn change_reasons_name_what_changed() {
        type Edit = fn(&mut Inputs);
        let cases: [(Edit, &str); 9] = [
            (
                |i| i.builder = "metis-build 2".into(),
                "new builder or format version",
            ),
            (
                |i| i.golden = "rpi5@bb".into(),
                "changed class golden image",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.node = "sha256:n2".into();
                },
                "changed node settings",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.class = "sha256:c2".into();
                },
                "changed class settings",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.lab = "sha256:l2".into();
                },
                "changed lab settings (metis.yaml)",
            ),
            (
                |i| i.seed = "sha256:x".into(),
                "changed rendered seed (templates or hook files)",
            ),
            (|i| i.secrets = "sha256:s".into(), "changed secrets"),
            (
                |i| i.recipients = "sha256:r".into(),
                "operator recipients changed",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.node = "sha256:n2".into();
                    i.sources.class = "sha256:c2".into();
                    i.secrets = "sha256:s".into();
                },
                "changed node settings, changed class settings, changed secrets",
            ),
        ];
        for (edit, want) in cases {
            let mut new = inputs();
            edit(&mut new);
            assert_eq!(change_reason(Some(&inputs()), &new), want);
        }
        // An artifact from a builder that kept no sources or recipients.
        let mut old = inputs();
        old.sources = Sources::default();
        old.recipients = String::new();
        old.builder = "metis-build 0".into();
        let mut new = inputs();
        new.seed = "sha256:x".into();
        assert_eq!(
            change_reason(Some(&old), &new),
            "new builder or format version, changed node, class or lab settings"
        );
    }
}
