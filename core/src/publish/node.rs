//! One node artifact: the node's image as a patch over its class base, its
//! sealed secrets and its config blob, pushed and signed.

use std::sync::Arc;

use super::base::Base;
use super::inputs::SecretsSource;
use super::plan::PlannedNode;
use super::{io_err, push_signature, PublishError, PublishOptions, BUILDER_VERSION};
use crate::artifact::{NodeConfig, SlotLocation, NODE_CONFIG_VERSION};
use crate::build::node::node_image_with;
use crate::image::compose::compose_table;
use crate::image::golden::GoldenImage;
use crate::inventory::Inventory;
use crate::oci::{self, block_on, LayerFile, NodeProvenance, Progress, Registry};
use crate::trust::{Metadata, PrivateKey};

#[allow(clippy::too_many_arguments)]
pub(super) fn publish_node(
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
    let sealed = secrets
        .sealed_bundle(inv, node)
        .map_err(|e| fail(e.to_string()))?;
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
            digest: Some(base.digest),
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
