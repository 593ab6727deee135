//! One registry abstraction over a real registry and an `oci:DIR` layout.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::TryStreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::auth::Credentials;
use super::layout::Layout;
use super::remote::Remote;
use super::{OciError, MAX_SMALL_BYTES};
use crate::digest::Sha256Digest;
use crate::location::{self, RegistryLocation};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Extra CA certificate(s), PEM, trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP; refused unless the host is loopback.
    pub insecure_http: bool,
    /// Credentials to use; `None`: the environment, then `~/.docker/config.json`.
    pub credentials: Option<Credentials>,
    /// Attempts for a transient failure (5xx, connection trouble); `None`: 4.
    pub attempts: Option<u32>,
}

/// Where progress goes: a callback told how many bytes moved.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(ProgressEvent) + Send + Sync>>);

/// A progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// This many bytes are to be moved in all.
    Total(u64),
    /// This many more bytes moved.
    Advance(u64),
}

impl Progress {
    /// Reports to `f`.
    pub fn new(f: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    /// No reporting.
    pub fn none() -> Self {
        Progress(None)
    }

    pub(crate) fn total(&self, n: u64) {
        if let Some(f) = &self.0 {
            f(ProgressEvent::Total(n));
        }
    }

    pub(crate) fn advance(&self, n: u64) {
        if let Some(f) = &self.0 {
            f(ProgressEvent::Advance(n));
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(callback)"
        } else {
            "Progress(none)"
        })
    }
}

/// A blob being read.
pub struct BlobStream {
    /// `true` when the stream starts at byte 0 even though an offset was
    /// asked (the source cannot resume): the caller starts over.
    pub from_start: bool,
    /// How many bytes the source says the stream holds (`Content-Length`,
    /// the file's remaining length), when it says.
    pub length: Option<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, Result<bytes::Bytes, OciError>>,
}

/// A registry: a real one, or an OCI image-layout directory (`oci:DIR`).
#[derive(Debug)]
pub enum Registry {
    /// A registry spoken to over HTTP(S).
    Remote(Box<Remote>),
    /// An OCI image-layout directory.
    Layout(Layout),
}

impl Registry {
    /// Opens `location`: `oci:DIR` (created if missing) or `host[:port]`.
    /// Opening a remote registry does not touch the network.
    pub fn open(location: &str, options: &RegistryOptions) -> Result<Self, OciError> {
        match location::layout_dir(location) {
            Some("") => Err(OciError::InvalidReference {
                reference: location.to_owned(),
                reason: "expected oci:DIR".into(),
            }),
            Some(dir) => Ok(Registry::Layout(Layout::open_or_create(Path::new(dir))?)),
            None => Ok(Registry::Remote(Box::new(Remote::new(location, options)?))),
        }
    }

    /// Opens a parsed location: its directory (created if missing) or its host.
    /// Opening a remote registry does not touch the network.
    pub fn open_at(
        location: &RegistryLocation,
        options: &RegistryOptions,
    ) -> Result<Self, OciError> {
        match location {
            RegistryLocation::Layout(dir) => Ok(Registry::Layout(Layout::open_or_create(dir)?)),
            RegistryLocation::Remote(host) => {
                Ok(Registry::Remote(Box::new(Remote::new(host, options)?)))
            }
        }
    }

    /// The registry's name in messages: `host[:port]` or `oci:DIR`.
    pub fn name(&self) -> String {
        match self {
            Registry::Remote(r) => r.host().to_owned(),
            Registry::Layout(l) => location::layout_name(l.dir()),
        }
    }

    /// Whether `repository` holds blob `digest`.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, OciError> {
        match self {
            Registry::Remote(r) => r.blob_exists(repository, digest).await,
            Registry::Layout(l) => Ok(l.has_blob(digest, None)),
        }
    }

    /// Makes `digest` available in `repository` by mounting it from `from`;
    /// `false` when that was not possible.
    pub async fn mount_blob(
        &self,
        repository: &str,
        from: &str,
        digest: &str,
    ) -> Result<bool, OciError> {
        match self {
            Registry::Remote(r) => r.mount_blob(repository, from, digest).await,
            Registry::Layout(l) => Ok(l.has_blob(digest, None)),
        }
    }

    /// Uploads the file `path` (hashing to `digest`, `size` bytes) into `repository`.
    pub async fn push_blob_file(
        &self,
        repository: &str,
        digest: &Sha256Digest,
        size: u64,
        path: &Path,
        progress: &Progress,
    ) -> Result<(), OciError> {
        match self {
            Registry::Remote(r) => {
                r.push_blob_file(repository, &digest.to_string(), size, path, progress)
                    .await
            }
            Registry::Layout(l) => {
                let (l_dir, path, digest) = (l.dir().to_path_buf(), path.to_path_buf(), *digest);
                let n =
                    blocking(move || Layout::open_or_create(&l_dir)?.put_blob_file(&path, &digest))
                        .await?;
                progress.advance(n);
                Ok(())
            }
        }
    }

    /// Uploads a small blob held in memory (a config).
    pub async fn push_blob_bytes(
        &self,
        repository: &str,
        bytes: &[u8],
    ) -> Result<Sha256Digest, OciError> {
        let digest = Sha256Digest::of(bytes);
        match self {
            Registry::Remote(r) => {
                r.push_blob_bytes(repository, bytes, &digest.to_string())
                    .await?
            }
            Registry::Layout(l) => {
                l.put_blob_bytes(bytes)?;
            }
        }
        Ok(digest)
    }

    /// Stores manifest `bytes` exactly as given and points `tag` at it.
    pub async fn push_manifest_raw(
        &self,
        repository: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), OciError> {
        match self {
            Registry::Remote(r) => {
                r.push_manifest_raw(repository, tag, bytes, media_type)
                    .await
            }
            Registry::Layout(l) => {
                l.put_blob_bytes(bytes)?;
                let desc = super::Descriptor::of_bytes(media_type, bytes);
                l.set_ref(repository, tag, &desc, None)
            }
        }
    }

    /// The manifest `reference` (tag or digest) of `repository`: bytes and digest.
    pub async fn pull_manifest_raw(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), OciError> {
        match self {
            Registry::Remote(r) => r.pull_manifest_raw(repository, reference).await,
            Registry::Layout(l) => {
                let digest = if reference.starts_with("sha256:") {
                    reference.to_owned()
                } else {
                    l.resolve(repository, reference)?
                        .ok_or_else(|| OciError::NotFound {
                            registry: self.name(),
                            repository: repository.to_owned(),
                            what: format!("tag {reference}"),
                        })?
                        .manifest
                        .digest
                };
                Ok((l.read_blob(&digest)?, digest))
            }
        }
    }

    /// Reads small blob `digest` of `repository` (`size` bytes, as its
    /// descriptor says) into memory: one over [`MAX_SMALL_BYTES`] is refused
    /// before it is fetched, an announced length other than `size` before it
    /// is read, and reading stops at the first byte beyond `size`. The bytes
    /// are checked against `digest`.
    pub async fn fetch_small_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> Result<Vec<u8>, OciError> {
        let size_mismatch = |actual: u64, at_least: bool| OciError::SizeMismatch {
            registry: self.name(),
            repository: repository.to_owned(),
            digest: digest.to_owned(),
            expected: size,
            actual,
            at_least,
        };
        if size > MAX_SMALL_BYTES {
            return Err(OciError::TooLarge {
                registry: self.name(),
                repository: repository.to_owned(),
                what: format!("blob {digest}"),
                size,
                at_least: false,
                cap: MAX_SMALL_BYTES,
            });
        }
        let mut source = self.open_blob(repository, digest, 0).await?;
        if let Some(length) = source.length.filter(|&l| l != size) {
            return Err(size_mismatch(length, false));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = source.stream.try_next().await? {
            let have = (bytes.len() + chunk.len()) as u64;
            if have > size {
                return Err(size_mismatch(have, true));
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != size {
            return Err(size_mismatch(bytes.len() as u64, false));
        }
        let actual = super::sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                registry: self.name(),
                repository: repository.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Deletes every tagged manifest of `repository` (and so its tags);
    /// returns how many manifests. A layout also drops the blobs nothing else
    /// needs; a remote registry frees them in its garbage collection.
    pub async fn delete_repository_manifests(&self, repository: &str) -> Result<usize, OciError> {
        match self {
            Registry::Remote(r) => {
                let mut digests = std::collections::BTreeSet::new();
                for tag in r.list_tags(repository).await? {
                    match r.pull_manifest_raw(repository, &tag).await {
                        Ok((_, digest)) => {
                            digests.insert(digest);
                        }
                        Err(OciError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                for digest in &digests {
                    retry(4, || r.delete_manifest(repository, digest)).await?;
                }
                Ok(digests.len())
            }
            Registry::Layout(l) => {
                let n = l.remove_repository(repository)?;
                l.prune()?;
                Ok(n)
            }
        }
    }

    /// Streams blob `digest` from byte `offset` on.
    pub async fn open_blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        match self {
            Registry::Remote(r) => r.open_blob(repository, digest, offset).await,
            Registry::Layout(l) => {
                let path = l.blob_path(digest)?;
                let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        OciError::NotFound {
                            registry: self.name(),
                            repository: repository.to_owned(),
                            what: format!("blob {digest}"),
                        }
                    } else {
                        OciError::io("opening", &path, e)
                    }
                })?;
                let length = file
                    .metadata()
                    .await
                    .map_err(|e| OciError::io("reading", &path, e))?
                    .len()
                    .saturating_sub(offset);
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| OciError::io("reading", &path, e))?;
                let stream =
                    futures_util::stream::try_unfold((file, path), |(mut file, path)| async move {
                        let mut buf = vec![0u8; 1 << 20];
                        let n = file
                            .read(&mut buf)
                            .await
                            .map_err(|e| OciError::io("reading", &path, e))?;
                        if n == 0 {
                            return Ok(None);
                        }
                        buf.truncate(n);
                        Ok(Some((bytes::Bytes::from(buf), (file, path))))
                    });
                Ok(BlobStream {
                    from_start: false,
                    length: Some(length),
                    stream: Box::pin(stream),
                })
            }
        }
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OciError> + Send + 'static,
) -> Result<T, OciError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Runs `op` up to `attempts` times while it fails transiently (5xx,
/// connection trouble), waiting 0.25 s, 0.5 s, 1 s … between attempts.
pub(crate) async fn retry<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, OciError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciError>>,
{
    let mut wait = std::time::Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
