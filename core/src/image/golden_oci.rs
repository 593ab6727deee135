//! Golden images kept in the lab registry, so CI can build from them without
//! the image in git.
//!
//! `metis-build golden import … --push` stores a checked golden image at
//! `<prefix>/golden/<class>` as an OCI artifact: one layer, the image as a
//! class base (seekable zstd, which `zstd -d` turns back into the raw image),
//! and a small JSON config naming the class and the raw image's SHA-256. The
//! class then pins it by manifest digest (`golden: {oci: REPO@sha256:…}`), and
//! the manifest digest pins the config and the layer in turn.
//!
//! Building from it pulls the artifact into an image layout in the builder's
//! work directory (blobs verified as they land, kept for the next build) and
//! opens the layer as a compressed golden image. Because the publisher makes
//! the same class base from the same raw image, the base it would upload is
//! the very blob already there: nothing is uploaded again.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::base::{write_base, BaseError, BaseOptions};
use super::golden::{GoldenError, GoldenImage, GoldenOptions};
use crate::oci::{
    self, block_on, pull_into, sha256_hex, LayerFile, Layout, OciError, Progress, PullOptions,
    Registry,
};

/// Artifact type of a golden image in the registry.
pub const ARTIFACT_TYPE_GOLDEN: &str = "application/vnd.metis.golden-image.v1";
/// Media type of its config blob.
pub const MEDIA_TYPE_GOLDEN_CONFIG: &str = "application/vnd.metis.golden.config.v1+json";

/// Errors storing or fetching a golden image in a registry.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GoldenOciError {
    /// The class's `golden.oci` reference cannot be used.
    #[error("golden image reference `{reference}`: {why}")]
    Reference {
        /// The reference as written.
        reference: String,
        /// What is wrong and what to write instead.
        why: String,
    },
    /// Talking to the registry or the local layout failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The artifact is not a Metis golden image.
    #[error(
        "`{reference}` is not a Metis golden image ({why}); \
         store one with `metis-build golden import CLASS FILE --sha256 HEX --push`"
    )]
    NotGolden {
        /// The reference.
        reference: String,
        /// What was found instead.
        why: String,
    },
    /// Compressing the image into its base failed.
    #[error("compressing the golden image: {0}")]
    Base(#[from] BaseError),
    /// The pulled image did not open (digest or decompression).
    #[error(transparent)]
    Golden(#[from] GoldenError),
    /// A local file could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The golden artifact's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoldenConfig {
    /// Format version of this config (1).
    pub version: u32,
    /// The class it was imported for.
    pub class: String,
    /// SHA-256 (hex) of the image file as imported (raw or compressed).
    pub sha256: String,
    /// Size of the raw image in bytes.
    pub image_size: u64,
}

/// A golden image stored in a registry.
#[derive(Debug, Clone)]
pub struct PushedGolden {
    /// `REPOSITORY@sha256:<manifest digest>`, what a class pins (prefixed
    /// with the registry host for a remote registry).
    pub reference: String,
    /// Bytes uploaded (0 when the registry had it all).
    pub uploaded_bytes: u64,
}

/// Stores `golden` (already checked) in `registry` at `<prefix>/golden/<class>`,
/// tagged with the first 12 hex digits of its digest. `work` holds the
/// compressed base while it uploads.
pub fn push_golden(
    registry: &Registry,
    registry_host: Option<&str>,
    prefix: &str,
    class: &str,
    golden: &GoldenImage,
    work: &Path,
) -> Result<PushedGolden, GoldenOciError> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| GoldenOciError::Io { what, path, source }
    };
    std::fs::create_dir_all(work).map_err(io("cannot create", work))?;
    let base = tempfile::Builder::new()
        .prefix(".metis-golden-base-")
        .suffix(".zst")
        .tempfile_in(work)
        .map_err(io("cannot create a file in", work))?;
    let raw = golden.raw_path();
    write_base(
        BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(raw).map_err(io("cannot read", raw))?,
        ),
        BufWriter::new(base.as_file()),
        &BaseOptions::default(),
    )?;
    let config = GoldenConfig {
        version: 1,
        class: class.to_owned(),
        sha256: golden.sha256().to_owned(),
        image_size: golden.size(),
    };
    let config = serde_json::to_vec(&config).expect("config serialises");
    let repo = oci::golden_repository(prefix, class);
    let mut annotations = BTreeMap::new();
    annotations.insert("dev.metis.class".to_owned(), class.to_owned());
    annotations.insert(
        "dev.metis.golden.sha256".to_owned(),
        golden.sha256().to_owned(),
    );
    let published = block_on(oci::publish_artifact(
        registry,
        &repo,
        &[golden.sha256()[..12].to_owned()],
        ARTIFACT_TYPE_GOLDEN,
        (MEDIA_TYPE_GOLDEN_CONFIG, &config),
        &[LayerFile {
            media_type: oci::MEDIA_TYPE_BASE.into(),
            path: base.path().to_owned(),
            shared_in: None,
            digest: None,
        }],
        &annotations,
        &Progress::none(),
    ))?;
    let repo_ref = format!("{repo}@{}", published.digest);
    Ok(PushedGolden {
        reference: match registry_host {
            Some(host) => format!("{host}/{repo_ref}"),
            None => repo_ref,
        },
        uploaded_bytes: published.uploaded_bytes,
    })
}

/// Splits a class's `golden.oci` reference into repository and manifest
/// digest. The reference is `[HOST/]REPOSITORY@sha256:<hex>` in the lab
/// registry (`lab_host`; `None` for an `oci:` directory, where no host is
/// written).
pub fn parse_reference(
    reference: &str,
    lab_host: Option<&str>,
) -> Result<(String, String), GoldenOciError> {
    let bad = |why: String| GoldenOciError::Reference {
        reference: reference.to_owned(),
        why,
    };
    let (name, hex) = reference
        .split_once("@sha256:")
        .ok_or_else(|| bad("not pinned by digest; write `REPOSITORY@sha256:<64 hex>`".into()))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the digest is not 64 hex digits".into()));
    }
    let repo = match name.split_once('/') {
        // A first component with a dot or a port, or `localhost`, is a host,
        // as in Docker references.
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            match lab_host {
                Some(host) if host == first => rest,
                Some(host) => {
                    return Err(bad(format!(
                        "golden images are pulled from the lab registry {host}, not {first}; \
                         push it there with `metis-build golden import … --push`"
                    )))
                }
                None => {
                    return Err(bad(format!(
                        "the lab registry is an oci: directory, so write the reference without \
                         the host {first}"
                    )))
                }
            }
        }
        _ => name,
    };
    if repo.is_empty() {
        return Err(bad("no repository before `@`".into()));
    }
    Ok((
        repo.to_owned(),
        format!("sha256:{}", hex.to_ascii_lowercase()),
    ))
}

/// Brings the golden image `reference` from `registry` into the image layout
/// at `cache` (reusing what is already there) and opens it, its layer's digest
/// checked; decompressed raw images are kept in `raw_cache`.
pub fn fetch_golden(
    registry: &Registry,
    lab_host: Option<&str>,
    reference: &str,
    cache: &Path,
    raw_cache: &Path,
) -> Result<GoldenImage, GoldenOciError> {
    let (repo, digest) = parse_reference(reference, lab_host)?;
    let layout = Layout::open_or_create(cache)?;
    let pulled = block_on(pull_into(
        registry,
        &layout,
        &repo,
        &digest,
        &PullOptions::default(),
    ))?;
    if pulled.digest != digest {
        return Err(GoldenOciError::NotGolden {
            reference: reference.to_owned(),
            why: format!("the registry answered with manifest {}", pulled.digest),
        });
    }
    let manifest = &pulled.manifest;
    if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE_GOLDEN) {
        return Err(GoldenOciError::NotGolden {
            reference: reference.to_owned(),
            why: format!("artifact type {:?}", manifest.artifact_type),
        });
    }
    let layer = match manifest.layers.as_slice() {
        [l] if l.media_type == oci::MEDIA_TYPE_BASE => l,
        _ => {
            return Err(GoldenOciError::NotGolden {
                reference: reference.to_owned(),
                why: "not exactly one class-base layer".into(),
            })
        }
    };
    let hex = sha256_hex(&layer.digest).ok_or_else(|| GoldenOciError::NotGolden {
        reference: reference.to_owned(),
        why: format!("layer digest {}", layer.digest),
    })?;
    let path = layout.blob_path(&layer.digest)?;
    Ok(GoldenImage::open_with(
        &path,
        hex,
        &GoldenOptions {
            cache_dir: Some(raw_cache.to_owned()),
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_resolve_against_the_lab_registry() {
        let r = format!("harbor.lab:8443/metis/golden/rpi@sha256:{HEX}");
        assert_eq!(
            parse_reference(&r, Some("harbor.lab:8443")).unwrap(),
            ("metis/golden/rpi".into(), format!("sha256:{HEX}"))
        );
        let plain = format!("metis/golden/rpi@sha256:{HEX}");
        assert_eq!(parse_reference(&plain, None).unwrap().0, "metis/golden/rpi");
        assert_eq!(
            parse_reference(&plain, Some("harbor.lab")).unwrap().0,
            "metis/golden/rpi"
        );
        let other = parse_reference(&r, Some("registry.example")).unwrap_err();
        assert!(other.to_string().contains("registry.example"), "{other}");
        assert!(parse_reference(&r, None).is_err());
        assert!(parse_reference("metis/golden/rpi:latest", None).is_err());
        assert!(parse_reference("metis/golden/rpi@sha256:abc", None).is_err());
    }
}
