//! A class's golden image as given (raw, `.zst` or `.xz`), checked against the
//! class's SHA-256 before anything else reads it.
//!
//! Compressed inputs are decompressed once, streaming, to a raw file that is
//! sparse (all-zero blocks are skipped, not written), so a 4 GiB card image
//! that is mostly empty costs its data, not its size, on disk.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::chunks::read_full;
use super::overlay::Overlay;

/// Size of the blocks that decompression checks for zeros before writing.
const SPARSE_BLOCK: usize = 64 * 1024;

/// How a golden image file is compressed, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// A raw disk image.
    None,
    /// A zstd frame (`.img.zst`).
    Zstd,
    /// An xz stream (`.img.xz`).
    Xz,
}

/// Errors opening a golden image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// The file could not be opened or read.
    #[error("cannot read golden image {path}: {source}")]
    Read {
        /// The golden image file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file's SHA-256 is not the one the class names.
    #[error(
        "golden image {path} has sha256 {actual}, but its class expects {expected}: \
         the download is corrupt or the class's sha256 is out of date; \
         download the image again or fix the class's sha256"
    )]
    DigestMismatch {
        /// The golden image file.
        path: PathBuf,
        /// Digest the class names.
        expected: String,
        /// Digest of the file as given.
        actual: String,
    },
    /// The class's sha256 is not 64 hex digits.
    #[error(
        "sha256 {given:?} for golden image {path} is not 64 hex digits; fix the class's sha256"
    )]
    BadDigest {
        /// The golden image file.
        path: PathBuf,
        /// What was given.
        given: String,
    },
    /// Decompression failed: a truncated or damaged compressed image.
    #[error(
        "cannot decompress golden image {path} ({format:?}): {source}; \
         the file is truncated or damaged, download it again"
    )]
    Decompress {
        /// The golden image file.
        path: PathBuf,
        /// Its compression.
        format: Compression,
        /// The decoder's error.
        source: io::Error,
    },
    /// The raw image could not be written to the temporary or cache directory.
    #[error(
        "cannot write the decompressed golden image to {dir}: {source}; check free space there"
    )]
    WriteRaw {
        /// Directory of the raw file.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Downloading a class's `url:` golden image failed.
    #[error("downloading the golden image {url}: {detail}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The image is empty.
    #[error("golden image {path} is empty")]
    Empty {
        /// The golden image file.
        path: PathBuf,
    },
}

/// Where to put the raw file of a compressed golden image.
#[derive(Debug, Clone, Default)]
pub struct GoldenOptions {
    /// Keep the raw image as `<cache_dir>/<sha256>.img` and reuse it next
    /// time; `None` decompresses into a temporary file removed on drop.
    pub cache_dir: Option<PathBuf>,
}

/// A verified golden image, available as a raw file.
#[derive(Debug)]
pub struct GoldenImage {
    source: PathBuf,
    raw: PathBuf,
    sha256: String,
    compression: Compression,
    size: u64,
    _temp: Option<tempfile::TempPath>,
    /// The root filesystem's metadata copy its nodes share.
    root_scratch: super::rootfs::RootScratch,
}

impl GoldenImage {
    /// Opens `path`, checks it against `expected_sha256` (of the file as given),
    /// then decompresses it if needed to a temporary raw file.
    pub fn open(path: &Path, expected_sha256: &str) -> Result<Self, GoldenError> {
        Self::open_with(path, expected_sha256, &GoldenOptions::default())
    }

    /// As [`GoldenImage::open`], with options (a cache for the raw file).
    pub fn open_with(
        path: &Path,
        expected_sha256: &str,
        options: &GoldenOptions,
    ) -> Result<Self, GoldenError> {
        let read_err = |source| GoldenError::Read {
            path: path.to_owned(),
            source,
        };
        let expected = expected_sha256.trim().to_ascii_lowercase();
        let expected = expected.strip_prefix("sha256:").unwrap_or(&expected);
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GoldenError::BadDigest {
                path: path.to_owned(),
                given: expected_sha256.to_owned(),
            });
        }

        // The digest comes first: nothing parses a byte of an unverified file.
        // A stamp in the cache directory spares hashing a file again that has
        // not changed since it was verified (see `VerifiedStamp`).
        let mut file = File::open(path).map_err(read_err)?;
        let stamp = options
            .cache_dir
            .as_deref()
            .and_then(|dir| VerifiedStamp::of(dir, &file, expected));
        let actual = match &stamp {
            Some(stamp) if stamp.holds() => expected.to_owned(),
            _ => sha256_of(&mut file).map_err(read_err)?,
        };
        if actual != expected {
            return Err(GoldenError::DigestMismatch {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        if let Some(stamp) = &stamp {
            stamp.record();
        }

        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
        let mut magic = [0u8; 6];
        let n = read_full(&mut file, &mut magic).map_err(read_err)?;
        let compression = detect(&magic[..n]);
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;

        let (raw, temp) = match compression {
            Compression::None => (path.to_owned(), None),
            _ => decompress(path, file, compression, &actual, options)?,
        };
        let size = std::fs::metadata(&raw).map_err(read_err)?.len();
        if size == 0 {
            return Err(GoldenError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(GoldenImage {
            source: path.to_owned(),
            raw,
            sha256: actual,
            compression,
            size,
            _temp: temp,
            root_scratch: Default::default(),
        })
    }

    /// The file as given.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The raw (decompressed) image: the source itself when it was raw.
    pub fn raw_path(&self) -> &Path {
        &self.raw
    }

    /// SHA-256 (lowercase hex) of the file as given.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How the file as given was compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Size of the raw image in bytes: the card size this class needs.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The metadata copy of the root filesystem shared by the nodes built
    /// from this image (made by the first root edit).
    pub fn root_scratch(&self) -> &super::rootfs::RootScratch {
        &self.root_scratch
    }

    /// A fresh copy-on-write overlay over the raw image.
    pub fn overlay(&self) -> io::Result<Overlay> {
        let file = File::open(&self.raw)?;
        Ok(Overlay::with_len(file, self.size))
    }
}

/// A record that the file with a given identity (device, inode, size,
/// modification and change times) had a given SHA-256, kept as
/// `<cache_dir>/<sha256>.verified`. Rewriting the file changes its change
/// time, which no user-space call can set back, so a matching identity means
/// the bytes hashed last time are still the bytes; this is the check git makes
/// before trusting its index. A file changed within the last two seconds gets
/// no stamp, so a write landing in the same clock tick as the hash cannot hide.
#[derive(Debug)]
struct VerifiedStamp {
    path: PathBuf,
    identity: String,
    settled: bool,
}

impl VerifiedStamp {
    #[cfg(unix)]
    fn of(dir: &Path, file: &File, sha256: &str) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        Some(VerifiedStamp {
            path: dir.join(format!("{sha256}.verified")),
            identity: format!(
                "dev {} ino {} size {} mtime {}.{:09} ctime {}.{:09}\n",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            ),
            settled: now - m.ctime() >= 2,
        })
    }

    #[cfg(not(unix))]
    fn of(_dir: &Path, _file: &File, _sha256: &str) -> Option<Self> {
        None
    }

    /// Whether the stamp on disk names this file as it is now.
    fn holds(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|s| s == self.identity)
    }

    /// Records the stamp after a successful check; a failure only costs a
    /// hash next time.
    fn record(&self) {
        if !self.settled || self.holds() {
            return;
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) {
            if tmp.write_all(self.identity.as_bytes()).is_ok() {
                let _ = tmp.persist(&self.path);
            }
        }
    }
}

fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Compression::Zstd
    } else if magic.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

fn sha256_of(reader: &mut impl Read) -> io::Result<String> {
    let (digest, _) = crate::digest::HashingReader::new(reader).drain()?;
    Ok(digest.hex())
}

fn decompress(
    path: &Path,
    file: File,
    compression: Compression,
    sha256: &str,
    options: &GoldenOptions,
) -> Result<(PathBuf, Option<tempfile::TempPath>), GoldenError> {
    let dir = options.cache_dir.clone().unwrap_or_else(std::env::temp_dir);
    let write_err = |source| GoldenError::WriteRaw {
        dir: dir.clone(),
        source,
    };
    let cached = options
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{sha256}.img")));
    // The cached raw file is only ever created by the rename below, after a
    // complete decompression of a verified input, so its presence means it is whole.
    if let Some(cached) = &cached {
        if cached.is_file() {
            return Ok((cached.clone(), None));
        }
        std::fs::create_dir_all(&dir).map_err(write_err)?;
    }

    let mut out = tempfile::Builder::new()
        .prefix(".metis-golden-")
        .suffix(".img")
        .tempfile_in(&dir)
        .map_err(write_err)?;
    let input = BufReader::with_capacity(1 << 20, file);
    let result = match compression {
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(input) {
            Ok(decoder) => copy_sparse(decoder, out.as_file_mut()),
            Err(e) => Err(CopyError::Read(e)),
        },
        Compression::Xz => copy_sparse(liblzma::read::XzDecoder::new(input), out.as_file_mut()),
        Compression::None => unreachable!("raw images are not decompressed"),
    };
    match result {
        Ok(()) => {}
        Err(CopyError::Read(source)) => {
            return Err(GoldenError::Decompress {
                path: path.to_owned(),
                format: compression,
                source,
            })
        }
        Err(CopyError::Write(source)) => return Err(write_err(source)),
    }
    match cached {
        Some(cached) => {
            out.persist(&cached).map_err(|e| write_err(e.error))?;
            Ok((cached, None))
        }
        None => {
            let temp = out.into_temp_path();
            Ok((temp.to_path_buf(), Some(temp)))
        }
    }
}

pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` to `out`, seeking over all-zero blocks so `out` stays sparse.
pub(crate) fn copy_sparse(mut reader: impl Read, out: &mut File) -> Result<(), CopyError> {
    let mut buf = vec![0u8; SPARSE_BLOCK];
    let mut total: u64 = 0;
    loop {
        let n = read_full(&mut reader, &mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            out.seek(SeekFrom::Current(n as i64))
                .map_err(CopyError::Write)?;
        } else {
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        total += n as u64;
    }
    // A trailing run of zeros was skipped: set the length explicitly.
    out.set_len(total).map_err(CopyError::Write)?;
    out.flush().map_err(CopyError::Write)?;
    Ok(())
}

/// SHA-256 (lowercase hex, as a class pins it) of a file, as
/// [`GoldenImage::open`] computes it.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    Ok(crate::digest::hash_file(path)?.0.hex())
}

/// Downloads a class's `url:` golden image into `dir` as `<sha256>.download`,
/// streaming and hashing as it goes, and keeps it only if its SHA-256 is
/// `sha256`. A file already there is reused ([`GoldenImage::open_with`] checks
/// it again). Returns the file's path.
pub fn fetch_url(url: &str, sha256: &str, dir: &Path) -> Result<PathBuf, GoldenError> {
    let fail = |detail: String| GoldenError::Download {
        url: url.to_owned(),
        detail,
    };
    let expected = sha256.trim().to_ascii_lowercase();
    let path = dir.join(format!("{expected}.download"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let mut part = tempfile::Builder::new()
        .prefix(".metis-golden-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| fail(format!("creating a file in {}: {e}", dir.display())))?;
    let actual = crate::oci::block_on(async {
        use futures_util::StreamExt;
        let client = crate::oci::http_client()
            .build()
            .map_err(|e| fail(format!("setting up the HTTP client: {e}")))?;
        let response = client.get(url).send().await.map_err(|e| {
            fail(format!(
                "{e}; check the URL and that this machine can reach it"
            ))
        })?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "the server answered {}; check the class's golden url",
                response.status()
            )));
        }
        let mut hasher = crate::digest::Hasher::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| fail(format!("the download broke off: {e}; try again")))?;
            hasher.update(&chunk);
            part.write_all(&chunk).map_err(|e| {
                fail(format!(
                    "writing into {}: {e}; check free space",
                    dir.display()
                ))
            })?;
        }
        Ok(hasher.finish().0.hex())
    })?;
    if actual != expected {
        return Err(fail(format!(
            "it has sha256 {actual}, but its class expects {expected}: the file at that URL \
             changed or the class's sha256 is wrong; nothing was kept"
        )));
    }
    part.as_file()
        .sync_all()
        .map_err(|e| fail(format!("writing into {}: {e}", dir.display())))?;
    part.persist(&path)
        .map_err(|e| fail(format!("keeping {}: {}", path.display(), e.error)))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut raw = vec![0u8; 300 * 1024];
        raw[5..10].copy_from_slice(b"hello");
        raw[200 * 1024..200 * 1024 + 3].copy_from_slice(b"end");
        raw
    }

    #[cfg(unix)]
    #[test]
    fn a_verified_stamp_spares_the_hash_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let path = dir.path().join("g.img");
        let raw = sample();
        std::fs::write(&path, &raw).unwrap();
        let sha = crate::digest::Sha256Digest::of(&raw).hex();
        let options = GoldenOptions {
            cache_dir: Some(cache.clone()),
        };
        let stamp = cache.join(format!("{sha}.verified"));

        // Just written: too fresh to stamp.
        GoldenImage::open_with(&path, &sha, &options).unwrap();
        assert!(!stamp.exists(), "a file changed this second got a stamp");

        std::thread::sleep(std::time::Duration::from_millis(2100));
        GoldenImage::open_with(&path, &sha, &options).unwrap();
        assert!(stamp.exists(), "a verified, settled file got no stamp");
        GoldenImage::open_with(&path, &sha, &options).unwrap();

        // Same size, one byte changed in place: the change time moves, the
        // stamp no longer holds and the hash catches the change.
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(6)).unwrap();
        f.write_all(b"J").unwrap();
        drop(f);
        let err = GoldenImage::open_with(&path, &sha, &options).unwrap_err();
        assert!(matches!(err, GoldenError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn raw_zstd_and_xz_give_the_same_raw_image() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sample();
        let inputs = [
            ("a.img", raw.clone(), Compression::None),
            (
                "a.img.zst",
                zstd::encode_all(&raw[..], 3).unwrap(),
                Compression::Zstd,
            ),
            (
                "a.img.xz",
                {
                    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                    e.write_all(&raw).unwrap();
                    e.finish().unwrap()
                },
                Compression::Xz,
            ),
        ];
        for (name, bytes, compression) in inputs {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let sha = crate::digest::Sha256Digest::of(&bytes).hex();
            let golden = GoldenImage::open(&path, &sha).unwrap();
            assert_eq!(golden.compression(), compression);
            assert_eq!(golden.size(), raw.len() as u64);
            assert_eq!(std::fs::read(golden.raw_path()).unwrap(), raw, "{name}");
        }
    }

    #[test]
    fn digest_mismatch_names_both_digests_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.img");
        std::fs::write(&path, sample()).unwrap();
        let wrong = "0".repeat(64);
        let err = GoldenImage::open(&path, &wrong).unwrap_err();
        let msg = err.to_string();
        let actual = file_sha256(&path).unwrap();
        assert!(msg.contains(&wrong), "{msg}");
        assert!(msg.contains(&actual), "{msg}");
        assert!(msg.contains("g.img"), "{msg}");
        assert!(matches!(err, GoldenError::DigestMismatch { .. }));
    }

    #[test]
    fn truncated_zstd_fails_to_decompress_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img.zst");
        let full = zstd::encode_all(&sample()[..], 3).unwrap();
        std::fs::write(&path, &full[..full.len() - 8]).unwrap();
        let sha = file_sha256(&path).unwrap();
        let err = GoldenImage::open(&path, &sha).unwrap_err();
        assert!(matches!(err, GoldenError::Decompress { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn cache_dir_keeps_the_raw_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.img.zst");
        let bytes = zstd::encode_all(&sample()[..], 3).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let sha = file_sha256(&path).unwrap();
        let options = GoldenOptions {
            cache_dir: Some(dir.path().join("cache")),
        };
        let raw = {
            let golden = GoldenImage::open_with(&path, &sha, &options).unwrap();
            golden.raw_path().to_owned()
        };
        assert!(raw.is_file(), "cached raw image survives the GoldenImage");
        let again = GoldenImage::open_with(&path, &sha, &options).unwrap();
        assert_eq!(again.raw_path(), raw);
    }
}
