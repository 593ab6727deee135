//! The signed lab index (node → artifact digest and revision) that the
//! flasher's `list` and picker read, and pruning the artifacts of nodes that
//! left it.

use super::plan::Plan;
use super::report::{NodeStatus, Report};
use super::{push_signature, PublishError, PublishOptions, ATTEMPTS};
use crate::inventory::Inventory;
use crate::oci::{self, block_on, Registry};
use crate::trust::{self, LabIndex, Metadata, PrivateKey};

/// Pushes and signs the index of this run: every inventory node that has a
/// signed artifact, built now at `revision` or kept from before. Returns the
/// index manifest's digest.
pub(super) fn publish_index(
    inv: &Inventory,
    registry: &Registry,
    key: &PrivateKey,
    plan: &Plan,
    report: &Report,
    revision: u64,
    opts: &PublishOptions,
) -> Result<String, PublishError> {
    let index_repo = oci::index_repository(&inv.lab.registry.prefix);
    let mut index = LabIndex::new();
    for (name, node) in &inv.nodes {
        let r = report.nodes.iter().find(|n| &n.node == name);
        let planned = plan.nodes.iter().find(|n| &n.node == name);
        let entry = match r {
            Some(r) if r.status == NodeStatus::Built => {
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
    Ok(art.manifest.digest)
}

/// Deletes the artifacts of the report's removed nodes; a node whose deletion
/// fails is reported failed. Run only once the published index no longer
/// names them.
pub(super) fn prune(registry: &Registry, prefix: &str, report: &mut Report) {
    for r in report
        .nodes
        .iter_mut()
        .filter(|n| n.status == NodeStatus::Removed)
    {
        let repo = oci::node_repository(prefix, &r.node);
        match block_on(registry.delete_repository_manifests(&repo)) {
            Ok(n) => {
                r.detail = format!(
                    "removed from the inventory: left the index, {n} manifests deleted (--prune)"
                );
                r.digest = None;
            }
            Err(e) => {
                r.status = NodeStatus::Failed;
                r.detail = format!("left the index, but deleting its artifact failed: {e}");
            }
        }
    }
}
