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
//! One file per stage, in the order a run takes them:
//!
//! * `inputs`: a node's input digest and where its sealed secrets come from;
//! * `registry_state`: what the registry already holds (published `latest`
//!   manifests, their signatures, the lab index);
//! * `plan`: inputs against registry state, node by node ([`plan()`]);
//! * `base`: the class base, compressed once per golden digest into the work
//!   directory and uploaded once per class;
//! * `node`: building, pushing and signing one node artifact;
//! * `index`: the signed lab index, and pruning removed nodes after it;
//! * `report`: what a run did, node by node.
//!
//! [`publish()`] below drives them. The config blob's format ([`NodeConfig`])
//! lives in [`artifact`](crate::artifact), where the flasher reads it. This
//! module needs the `build` and `signing` features: a publish signs, and the
//! plan is its first half (every crate that builds also signs).

mod base;
mod index;
mod inputs;
mod node;
mod plan;
mod registry_state;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::image::golden::GoldenImage;
use crate::inventory::Inventory;
use crate::oci::{self, block_on, Registry};
use crate::trust::{self, Metadata, PrivateKey};
use base::{prepare_class, Base};
use node::publish_node;
use registry_state::signed_at;

pub use crate::artifact::{Inputs, NodeConfig, SlotLocation, Sources, NODE_CONFIG_VERSION};
pub use inputs::{node_inputs, SealedSecrets, SecretsSource, SecretsSourceError};
pub use plan::{plan, Action, Plan, PlannedNode};
pub use report::{NodeResult, NodeStatus, Report};

/// The builder's version, part of every input digest: a new builder rebuilds every node.
pub const BUILDER_VERSION: &str = concat!("metis-build ", env!("CARGO_PKG_VERSION"));
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

/// The words of a per-node error, without the node name a report shows beside it.
fn node_message(e: PublishError) -> String {
    match e {
        PublishError::Node { message, .. } => message,
        other => other.to_string(),
    }
}

/// Attempts for each registry request that fails transiently.
const ATTEMPTS: u32 = 4;

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
            Action::Skip => (NodeStatus::Skipped, n.reason.clone()),
            Action::Remove => (NodeStatus::Removed, n.reason.clone()),
            Action::Fail if selected(n) => (NodeStatus::Failed, n.reason.clone()),
            Action::Build | Action::Fail => (NodeStatus::Skipped, "not selected".to_string()),
        };
        results.insert(
            n.node.clone(),
            NodeResult {
                node: n.node.clone(),
                status,
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
                    status: NodeStatus::WouldBuild,
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
                    status: NodeStatus::Failed,
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
                status: NodeStatus::Built,
                detail: reason,
                digest: Some(digest),
                uploaded_bytes: uploaded,
            },
            Err(e) => NodeResult {
                node: node.clone(),
                status: NodeStatus::Failed,
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
        .any(|n| n.status == NodeStatus::Built || n.status == NodeStatus::Removed);
    if (report.failed() && !opts.partial) || (!changed && plan.index_update.is_none()) {
        return Ok(report);
    }

    let digest = index::publish_index(inv, registry, key, plan, &report, revision, opts)?;
    report.index_published = true;
    report.index_digest = Some(digest);
    // Artifacts of removed nodes go only once the index no longer names them.
    if opts.prune {
        index::prune(registry, prefix, &mut report);
    }
    Ok(report)
}

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
