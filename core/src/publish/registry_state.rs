//! What the registry already holds: each node's published `latest`
//! manifest (its input digest, revision and signature) and the lab index.

use super::{PublishError, INPUT_DIGEST_ANNOTATION, REVISION_ANNOTATION};
use crate::artifact::{Inputs, NodeConfig};
use crate::oci::{self, block_on, ImageManifest, Registry};
use crate::trust::{self, LabIndex};

/// A published node manifest, as much as a plan needs.
pub(super) struct PublishedNode {
    pub(super) signed: bool,
    pub(super) digest: String,
    pub(super) revision: u64,
    pub(super) input_digest: Option<String>,
    pub(super) inputs: Option<Inputs>,
}

/// A small published blob (a node config, the index document): within its
/// descriptor's size and `oci::MAX_SMALL_BYTES`, digest checked.
pub(super) fn fetch_blob(
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
pub(super) fn published_latest(
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

pub(super) fn published_node(
    registry: &Registry,
    repo: &str,
) -> Result<Option<PublishedNode>, PublishError> {
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
pub(super) fn published_index(
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
pub(super) fn is_signed(
    registry: &Registry,
    repo: &str,
    digest: &str,
) -> Result<bool, PublishError> {
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
pub(super) fn signed_at(registry: &Registry, repo: &str, tag: &str) -> Result<bool, PublishError> {
    match block_on(registry.pull_manifest_raw(repo, tag)) {
        Ok((_, digest)) => is_signed(registry, repo, &digest),
        Err(oci::OciError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
