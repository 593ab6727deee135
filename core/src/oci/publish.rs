//! Publishing an artifact: blobs first (each uploaded at most once, a shared
//! class base mounted across repositories), then the manifest bytes exactly
//! as built, under each tag.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::layout::hash_file;
use super::manifest::{Descriptor, ImageManifest};
use super::registry::{blocking, retry, Progress, Registry};
use super::{OciError, ARTIFACT_TYPE_NODE, MEDIA_TYPE_IMAGE_MANIFEST, MEDIA_TYPE_NODE_CONFIG};
use crate::digest::Sha256Digest;

/// A layer to publish from a file.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Its media type, e.g. [`MEDIA_TYPE_BASE`](super::MEDIA_TYPE_BASE).
    pub media_type: String,
    /// The file, streamed (never read whole into memory).
    pub path: PathBuf,
    /// A repository that should hold this blob too and that other
    /// repositories mount it from: for a class base, `<prefix>/golden/<class>`.
    /// The blob is uploaded there once and mounted everywhere else.
    pub shared_in: Option<String>,
    /// Its digest when the caller already knows it, as for a class base
    /// hashed once when it was made, instead of hashing the file for every
    /// node. A wrong value is caught by the registry on upload, and by every
    /// reader, which checks blob digests.
    pub digest: Option<Sha256Digest>,
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Digest of the manifest (what gets signed).
    pub digest: String,
    /// The exact manifest bytes pushed.
    pub manifest: Vec<u8>,
    /// Blob bytes uploaded (config included).
    pub uploaded_bytes: u64,
    /// Blobs uploaded.
    pub uploaded_blobs: u64,
    /// Blobs mounted from another repository instead of uploaded.
    pub mounted_blobs: u64,
    /// Blobs the repository already had.
    pub present_blobs: u64,
}

/// Publishes a node artifact: config `application/vnd.metis.node.config.v1+json`,
/// artifact type `application/vnd.metis.node-image.v1`, the given layers and
/// annotations; tags it with every tag in `tags` (e.g. the build revision and
/// `latest`). Returns the manifest digest and what was moved.
pub async fn publish_node_artifact(
    registry: &Registry,
    repository: &str,
    tags: &[String],
    config: &[u8],
    layers: &[LayerFile],
    annotations: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<Published, OciError> {
    publish_artifact(
        registry,
        repository,
        tags,
        ARTIFACT_TYPE_NODE,
        (MEDIA_TYPE_NODE_CONFIG, config),
        layers,
        annotations,
        progress,
    )
    .await
}

/// Publishes any artifact (see [`publish_node_artifact`]).
#[allow(clippy::too_many_arguments)]
pub async fn publish_artifact(
    registry: &Registry,
    repository: &str,
    tags: &[String],
    artifact_type: &str,
    (config_media_type, config): (&str, &[u8]),
    layers: &[LayerFile],
    annotations: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<Published, OciError> {
    if tags.is_empty() {
        return Err(OciError::InvalidReference {
            reference: repository.to_owned(),
            reason: "publishing needs at least one tag".into(),
        });
    }
    if config.is_empty() {
        return Err(OciError::InvalidReference {
            reference: repository.to_owned(),
            reason: "the config blob must not be empty (Harbor mishandles empty configs)".into(),
        });
    }
    let attempts = 4;
    let mut report = Published::default();

    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for layer in layers {
        let (path, known) = (layer.path.clone(), layer.digest);
        let (digest, size) = blocking(move || {
            let size = std::fs::metadata(&path)
                .map_err(|e| OciError::io("reading", &path, e))?
                .len();
            let digest = match known {
                Some(d) => d,
                None => hash_file(&path)?,
            };
            Ok((digest, size))
        })
        .await?;
        descriptors.push(Descriptor {
            media_type: layer.media_type.clone(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
        });
        digests.push(digest);
    }
    progress.total(descriptors.iter().map(|d| d.size).sum::<u64>() + config.len() as u64);

    for ((layer, desc), digest) in layers.iter().zip(&descriptors).zip(&digests) {
        let upload = |repo: String| {
            let (digest, path) = (*digest, layer.path.clone());
            async move {
                retry(attempts, || {
                    registry.push_blob_file(&repo, &digest, desc.size, &path, progress)
                })
                .await
            }
        };
        if retry(attempts, || registry.blob_exists(repository, &desc.digest)).await? {
            report.present_blobs += 1;
            progress.advance(desc.size);
            continue;
        }
        if let Some(shared) = layer.shared_in.as_deref().filter(|s| *s != repository) {
            if !retry(attempts, || registry.blob_exists(shared, &desc.digest)).await? {
                upload(shared.to_owned()).await?;
                report.uploaded_bytes += desc.size;
                report.uploaded_blobs += 1;
            } else {
                progress.advance(desc.size);
            }
            if retry(attempts, || {
                registry.mount_blob(repository, shared, &desc.digest)
            })
            .await?
            {
                report.mounted_blobs += 1;
                continue;
            }
        }
        upload(repository.to_owned()).await?;
        report.uploaded_bytes += desc.size;
        report.uploaded_blobs += 1;
    }

    let config_desc = Descriptor::of_bytes(config_media_type, config);
    if retry(attempts, || {
        registry.blob_exists(repository, &config_desc.digest)
    })
    .await?
    {
        report.present_blobs += 1;
    } else {
        retry(attempts, || registry.push_blob_bytes(repository, config)).await?;
        report.uploaded_bytes += config.len() as u64;
        report.uploaded_blobs += 1;
    }
    progress.advance(config.len() as u64);

    let (bytes, digest) = ImageManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
        artifact_type: Some(artifact_type.into()),
        config: config_desc,
        layers: descriptors,
        annotations: annotations.clone(),
    }
    .to_bytes();
    for tag in tags {
        retry(attempts, || {
            registry.push_manifest_raw(repository, tag, &bytes, MEDIA_TYPE_IMAGE_MANIFEST)
        })
        .await?;
    }
    report.digest = digest;
    report.manifest = bytes;
    Ok(report)
}
