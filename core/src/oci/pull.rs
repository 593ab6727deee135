//! Pulling artifacts into the cache: an OCI image layout at the platform
//! cache directory.
//!
//! Each blob streams into `incoming/<hex>.partial`, hashed as it arrives, and
//! is renamed into `blobs/sha256/` only when its digest matches. An
//! interrupted pull leaves the partial file; the next pull hashes what is
//! there and asks the registry for the rest (`Range`), or starts over when
//! the registry cannot resume. The tag is recorded in `index.json` last, so
//! a tag in the cache always has all its blobs.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::layout::{Layout, LayoutRef};
use super::manifest::{sha256_digest, sha256_hex, Descriptor, ImageManifest};
use super::registry::{retry, Progress, Registry};
use super::{OciError, MAX_SMALL_BYTES, MEDIA_TYPE_IMAGE_MANIFEST};
use crate::digest::Hasher;
use crate::trust::{signature_payloads, signature_tag};

/// Environment variable overriding the cache directory.
pub const ENV_CACHE: &str = "METIS_CACHE";

/// The cache directory: `explicit`, else `$METIS_CACHE`, else
/// `~/.cache/metis` (Linux), `~/Library/Caches/metis` (macOS),
/// `%LOCALAPPDATA%\metis\cache` (Windows).
pub fn cache_dir(explicit: Option<&Path>) -> Result<PathBuf, OciError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(ENV_CACHE).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    #[cfg(windows)]
    let dir = dirs::data_local_dir().map(|d| d.join("metis").join("cache"));
    #[cfg(not(windows))]
    let dir = dirs::cache_dir().map(|d| d.join("metis"));
    dir.ok_or_else(|| OciError::Layout {
        dir: PathBuf::from("<cache>"),
        reason: format!(
            "no home directory to put the cache in; pass --cache DIR or set {ENV_CACHE}"
        ),
    })
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Blobs downloaded at once.
    pub parallel: usize,
    /// Attempts per blob for transient failures; each resumes where the last stopped.
    pub attempts: u32,
    /// Progress reports (bytes).
    pub progress: Progress,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            parallel: 4,
            attempts: 4,
            progress: Progress::none(),
        }
    }
}

/// What a pull brought into the cache.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Bytes downloaded in this pull.
    pub downloaded_bytes: u64,
    /// Bytes of blobs the cache already held.
    pub reused_bytes: u64,
}

/// Now, RFC 3339 UTC, for the `dev.metis.fetched` annotation.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// How long ago `fetched` (RFC 3339) was, in words: `3 h 12 min`.
pub fn age_of(fetched: &str) -> Option<String> {
    let then = chrono::DateTime::parse_from_rfc3339(fetched).ok()?;
    let secs = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    Some(match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 3 * 86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} days", s / 86400),
    })
}

/// The cached tag `<repository>:<tag>`, if any.
pub fn cached(cache: &Layout, repository: &str, tag: &str) -> Result<Option<LayoutRef>, OciError> {
    cache.resolve(repository, tag)
}

/// What the verifier of [`pull_verified`] sees: the artifact's manifest and
/// its signature, each fetched within [`MAX_SMALL_BYTES`]. Nothing else has
/// been fetched yet and nothing has been written to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// `sha256:` digest of `manifest` (checked against the bytes).
    pub digest: String,
    /// The artifact manifest, exactly as the registry holds it.
    pub manifest: Vec<u8>,
    /// The signature manifest at `sha256-<hex>.sig`; `None` when the
    /// registry has no signature for this digest.
    pub signature_manifest: Option<Vec<u8>>,
    /// The simple-signing payloads the signature manifest names, in its order,
    /// each checked against its descriptor's digest; empty without a
    /// signature, or when the signature manifest names none (or is malformed:
    /// the verifier refuses it with its own words).
    pub payloads: Vec<Vec<u8>>,
}

/// Why [`pull_verified`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullVerifiedError<E> {
    /// Fetching or storing failed (unreachable, too large, size or digest
    /// mismatch, disk full, …).
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The verifier refused what it saw: no blob of the artifact was fetched
    /// and nothing was written to the cache.
    #[error(transparent)]
    Refused(E),
}

/// Pulls `<repository>:<tag>` from `registry` into `cache`, trusting nothing
/// it has not verified first.
///
/// In order: the manifest (at most [`MAX_SMALL_BYTES`]); the signature
/// manifest at `sha256-<hex>.sig` and its simple-signing payloads (each at
/// most [`MAX_SMALL_BYTES`]); then `verify` sees them ([`SignedHead`]; no
/// signature is `signature_manifest: None`, for the caller to refuse). Only
/// when it returns `Ok` are the blobs the manifest names downloaded, each
/// bounded by its descriptor's size (an announced length that differs, or a
/// byte more than the descriptor says, stops it) and checked against its
/// digest. The signature is then cached under its `.sig` tag (manifest,
/// config and payloads, as `metis-flash` reads it offline), and the tag is
/// recorded last, so a tag in the cache always has its blobs and, when the
/// registry had one, its signature.
pub async fn pull_verified<E>(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    tag: &str,
    options: &PullOptions,
    verify: impl FnOnce(&SignedHead) -> Result<(), E>,
) -> Result<Pulled, PullVerifiedError<E>> {
    let attempts = options.attempts.max(1);
    let (bytes, digest) = fetch_manifest(registry, repository, tag, attempts).await?;
    let sig_tag = signature_tag(&digest).ok_or_else(|| OciError::Manifest {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: digest.clone(),
        reason: "not a sha256 digest".into(),
    })?;
    let signature = match retry(attempts, || {
        registry.pull_manifest_raw(repository, &sig_tag)
    })
    .await
    {
        Ok((sig, sig_digest)) => {
            check_digest(registry, repository, &sig, &sig_digest)?;
            Some(sig)
        }
        Err(OciError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let mut payloads = Vec::new();
    // A malformed signature manifest names no payloads; the verifier refuses it.
    let named = signature
        .as_deref()
        .and_then(|sig| signature_payloads(sig).ok())
        .unwrap_or_default();
    // Cosign writes one payload; a signature manifest naming many must not
    // make the pull hold many caps' worth before anything is verified.
    let total = named.iter().fold(0u64, |sum, p| sum.saturating_add(p.size));
    if total > MAX_SMALL_BYTES {
        return Err(OciError::TooLarge {
            registry: registry.name(),
            repository: repository.to_owned(),
            what: format!("the signature payloads of {sig_tag} together"),
            size: total,
            at_least: false,
            cap: MAX_SMALL_BYTES,
        }
        .into());
    }
    for payload in &named {
        payloads.push(
            retry(attempts, || {
                registry.fetch_small_blob(repository, &payload.digest, payload.size)
            })
            .await?,
        );
    }
    let head = SignedHead {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        digest,
        manifest: bytes,
        signature_manifest: signature,
        payloads,
    };
    verify(&head).map_err(PullVerifiedError::Refused)?;

    let manifest = parse_manifest(registry, repository, tag, &head.digest, &head.manifest)?;
    let (downloaded, reused) = fetch_blobs(registry, cache, repository, &manifest, options).await?;
    if let Some(sig) = &head.signature_manifest {
        store_signature(
            registry,
            cache,
            repository,
            &sig_tag,
            sig,
            &head.payloads,
            attempts,
        )
        .await?;
    }
    record(cache, repository, tag, &head.manifest)?;
    Ok(Pulled {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        digest: head.digest,
        manifest,
        downloaded_bytes: downloaded,
        reused_bytes: reused,
    })
}

/// Pulls `<repository>:<tag>` from `registry` into `cache`, verifying
/// nothing but digests and sizes: the manifest within [`MAX_SMALL_BYTES`],
/// each blob bounded by its descriptor's size. For content whose signature
/// is checked, use [`pull_verified`], which checks it before any blob moves.
pub async fn pull_into(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    tag: &str,
    options: &PullOptions,
) -> Result<Pulled, OciError> {
    let attempts = options.attempts.max(1);
    let (bytes, digest) = fetch_manifest(registry, repository, tag, attempts).await?;
    let manifest = parse_manifest(registry, repository, tag, &digest, &bytes)?;
    let (downloaded, reused) = fetch_blobs(registry, cache, repository, &manifest, options).await?;
    record(cache, repository, tag, &bytes)?;
    Ok(Pulled {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        digest,
        manifest,
        downloaded_bytes: downloaded,
        reused_bytes: reused,
    })
}

/// The manifest `<repository>:<tag>` (capped by the registry) and its
/// digest, the bytes checked against it. Not parsed: the verifier of
/// [`pull_verified`] judges the bytes first.
async fn fetch_manifest(
    registry: &Registry,
    repository: &str,
    tag: &str,
    attempts: u32,
) -> Result<(Vec<u8>, String), OciError> {
    let (bytes, digest) = retry(attempts, || registry.pull_manifest_raw(repository, tag)).await?;
    check_digest(registry, repository, &bytes, &digest)?;
    Ok((bytes, digest))
}

/// Parses manifest `bytes`; its config, read into memory by whoever uses
/// it, must be small too.
fn parse_manifest(
    registry: &Registry,
    repository: &str,
    tag: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<ImageManifest, OciError> {
    let manifest = ImageManifest::parse(bytes).map_err(|reason| OciError::Manifest {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: digest.to_owned(),
        reason: reason.to_string(),
    })?;
    if manifest.config.size > MAX_SMALL_BYTES {
        return Err(OciError::TooLarge {
            registry: registry.name(),
            repository: repository.to_owned(),
            what: format!("config blob {} of {tag}", manifest.config.digest),
            size: manifest.config.size,
            at_least: false,
            cap: MAX_SMALL_BYTES,
        });
    }
    Ok(manifest)
}

fn check_digest(
    registry: &Registry,
    repository: &str,
    bytes: &[u8],
    digest: &str,
) -> Result<(), OciError> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(OciError::DigestMismatch {
            registry: registry.name(),
            repository: repository.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Brings every blob `manifest` names into `cache` (those it lacks);
/// returns the bytes downloaded and the bytes the cache already held.
async fn fetch_blobs(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    manifest: &ImageManifest,
    options: &PullOptions,
) -> Result<(u64, u64), OciError> {
    let attempts = options.attempts.max(1);
    let mut wanted: Vec<&Descriptor> = Vec::new();
    let mut reused = 0;
    for blob in manifest.blobs() {
        if wanted.iter().any(|w| w.digest == blob.digest) {
            continue;
        }
        if cache.has_blob(&blob.digest, Some(blob.size)) {
            reused += blob.size;
        } else {
            wanted.push(blob);
        }
    }
    options.progress.total(wanted.iter().map(|b| b.size).sum());
    let downloaded: Result<Vec<u64>, OciError> = futures_util::stream::iter(wanted.iter().copied())
        .map(|blob| async move {
            retry(attempts, || {
                fetch_blob(registry, cache, repository, blob, &options.progress)
            })
            .await
        })
        .buffer_unordered(options.parallel.max(1))
        .try_collect()
        .await;
    match downloaded {
        Ok(d) => Ok((d.iter().sum(), reused)),
        Err(e) => {
            // A full disk: give back the space this pull took. Content that is
            // not what the manifest says: keep nothing of this pull (the
            // downloads stopped mid-way beside it included), since retrying
            // the same content cannot help. Other failures (an unreachable
            // registry above all) leave partial files to resume.
            if matches!(
                e,
                OciError::DiskFull { .. }
                    | OciError::SizeMismatch { .. }
                    | OciError::DigestMismatch { .. }
                    | OciError::TooLarge { .. }
            ) {
                for hex in wanted.iter().filter_map(|b| sha256_hex(&b.digest)) {
                    let partial = cache.incoming_dir().join(format!("{hex}.partial"));
                    let _ = tokio::fs::remove_file(partial).await;
                }
            }
            Err(e)
        }
    }
}

/// Caches the signature manifest `sig` of `repository` under `sig_tag`, with
/// every blob it names: the payloads already fetched, the rest (its config)
/// fetched now within [`MAX_SMALL_BYTES`]. The layout `metis-flash` reads
/// offline, and the one `pull_into` of the `.sig` tag has always written.
async fn store_signature(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    sig_tag: &str,
    sig: &[u8],
    payloads: &[Vec<u8>],
    attempts: u32,
) -> Result<(), OciError> {
    let digest = sha256_digest(sig);
    let parsed = ImageManifest::parse(sig).map_err(|reason| OciError::Manifest {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: digest.clone(),
        reason: format!("signature manifest: {reason}"),
    })?;
    for blob in parsed.blobs() {
        if cache.has_blob(&blob.digest, Some(blob.size)) {
            continue;
        }
        match payloads.iter().find(|p| sha256_digest(p) == blob.digest) {
            Some(payload) => cache.put_blob_bytes(payload)?,
            None => {
                let bytes = retry(attempts, || {
                    registry.fetch_small_blob(repository, &blob.digest, blob.size)
                })
                .await?;
                cache.put_blob_bytes(&bytes)?
            }
        };
    }
    record(cache, repository, sig_tag, sig)
}

/// Stores manifest `bytes` and points `<repository>:<tag>` at it: last,
/// after every blob it names is in the cache.
fn record(cache: &Layout, repository: &str, tag: &str, bytes: &[u8]) -> Result<(), OciError> {
    cache.put_blob_bytes(bytes)?;
    let desc = Descriptor::of_bytes(MEDIA_TYPE_IMAGE_MANIFEST, bytes);
    cache.set_ref(repository, tag, &desc, Some(&now_rfc3339()))
}

/// One attempt at bringing `blob` into the cache, resuming a partial file.
/// Returns the bytes downloaded in this attempt.
async fn fetch_blob(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    blob: &Descriptor,
    progress: &Progress,
) -> Result<u64, OciError> {
    let hex = sha256_hex(&blob.digest).ok_or_else(|| OciError::Manifest {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: blob.digest.clone(),
        reason: "not a sha256 digest".into(),
    })?;
    let incoming = cache.incoming_dir();
    tokio::fs::create_dir_all(&incoming)
        .await
        .map_err(|e| OciError::io("creating", &incoming, e))?;
    let partial = incoming.join(format!("{hex}.partial"));
    let io = |action: &'static str| {
        let partial = partial.clone();
        move |e: std::io::Error| OciError::io(action, partial, e)
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .await
        .map_err(io("opening"))?;

    // Hash what an earlier attempt left.
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(io("reading"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    drop(buf);
    if hasher.len() > blob.size {
        file.set_len(0).await.map_err(io("truncating"))?;
        hasher = Hasher::new();
    }
    let mut have = hasher.len();
    let mut source = registry.open_blob(repository, &blob.digest, have).await?;
    let size_mismatch = |actual: u64, at_least: bool| OciError::SizeMismatch {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: blob.digest.clone(),
        expected: blob.size,
        actual,
        at_least,
    };
    let start = if source.from_start { 0 } else { have };
    if let Some(length) = source.length {
        if start + length != blob.size {
            drop(file);
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(size_mismatch(start + length, false));
        }
    }
    if source.from_start && have > 0 {
        file.set_len(0).await.map_err(io("truncating"))?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io("seeking"))?;
        hasher = Hasher::new();
        have = 0;
    } else {
        progress.advance(have);
    }
    let resumed_at = have;
    // Chunks off the network are small (~16 KiB); writing them one by one
    // through tokio's file would cost a thread hand-off each.
    let mut out = tokio::io::BufWriter::with_capacity(4 << 20, file);
    let full = |e| cache.write_error(&partial, &blob.digest, e);
    let streamed = async {
        while let Some(chunk) = source.stream.try_next().await? {
            if have + chunk.len() as u64 > blob.size {
                // More than the manifest says: stop here, keep none of it.
                return Err(size_mismatch(have + chunk.len() as u64, true));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(full)?;
            have += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        Ok::<(), OciError>(())
    }
    .await;
    match streamed {
        // Keep what arrived: the next attempt resumes after it.
        Err(e @ OciError::Unreachable { .. }) => {
            let _ = out.flush().await;
            return Err(e);
        }
        Err(e @ OciError::SizeMismatch { .. }) => {
            drop(out);
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        Err(e) => return Err(e),
        Ok(()) => {
            out.flush().await.map_err(full)?;
            out.get_mut().sync_all().await.map_err(full)?;
        }
    }
    drop(out);
    if have != blob.size {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(size_mismatch(have, false));
    }
    let (actual, _) = hasher.finish();
    if actual != blob.digest {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(OciError::DigestMismatch {
            registry: registry.name(),
            repository: repository.to_owned(),
            expected: blob.digest.clone(),
            actual: actual.to_string(),
        });
    }
    let dest = cache.blob_path(&blob.digest)?;
    tokio::fs::rename(&partial, &dest)
        .await
        .map_err(|e| OciError::io("renaming into", &dest, e))?;
    Ok(have - resumed_at)
}
