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
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::layout::{Layout, LayoutRef};
use super::manifest::{digest_hex, sha256_digest, Descriptor, ImageManifest};
use super::registry::{retry, Progress, Registry};
use super::{OciError, MEDIA_TYPE_IMAGE_MANIFEST};

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

/// Pulls `<repository>:<tag>` from `registry` into `cache`.
pub async fn pull_into(
    registry: &Registry,
    cache: &Layout,
    repository: &str,
    tag: &str,
    options: &PullOptions,
) -> Result<Pulled, OciError> {
    let attempts = options.attempts.max(1);
    let (bytes, digest) = retry(attempts, || registry.pull_manifest_raw(repository, tag)).await?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(OciError::DigestMismatch {
            registry: registry.name(),
            repository: repository.to_owned(),
            expected: digest,
            actual,
        });
    }
    let manifest = ImageManifest::parse(&bytes).map_err(|reason| OciError::Manifest {
        registry: registry.name(),
        repository: repository.to_owned(),
        digest: digest.clone(),
        reason,
    })?;

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
    let downloaded = match downloaded {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, OciError::DiskFull { .. }) {
                // Give back the space this pull took: its partial files.
                for hex in wanted.iter().filter_map(|b| digest_hex(&b.digest)) {
                    let partial = cache.incoming_dir().join(format!("{hex}.partial"));
                    let _ = tokio::fs::remove_file(partial).await;
                }
            }
            return Err(e);
        }
    };

    cache.put_blob_bytes(&bytes)?;
    let desc = Descriptor::of_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
    cache.set_ref(repository, tag, &desc, Some(&now_rfc3339()))?;
    Ok(Pulled {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        digest,
        manifest,
        downloaded_bytes: downloaded.iter().sum(),
        reused_bytes: reused,
    })
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
    let hex = digest_hex(&blob.digest).ok_or_else(|| OciError::Manifest {
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
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(io("reading"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
    drop(buf);
    if have > blob.size {
        file.set_len(0).await.map_err(io("truncating"))?;
        hasher = Sha256::new();
        have = 0;
    }
    let mut source = registry.open_blob(repository, &blob.digest, have).await?;
    if source.from_start && have > 0 {
        file.set_len(0).await.map_err(io("truncating"))?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io("seeking"))?;
        hasher = Sha256::new();
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
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(full)?;
            have += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
            if have > blob.size {
                break;
            }
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
        Err(e) => return Err(e),
        Ok(()) => {
            out.flush().await.map_err(full)?;
            out.get_mut().sync_all().await.map_err(full)?;
        }
    }
    drop(out);
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != blob.digest || have != blob.size {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(OciError::DigestMismatch {
            registry: registry.name(),
            repository: repository.to_owned(),
            expected: blob.digest.clone(),
            actual: if have == blob.size {
                actual
            } else {
                format!("{actual} ({have} bytes, expected {})", blob.size)
            },
        });
    }
    let dest = cache.blob_path(&blob.digest)?;
    tokio::fs::rename(&partial, &dest)
        .await
        .map_err(|e| OciError::io("renaming into", &dest, e))?;
    Ok(have - resumed_at)
}
