//! An OCI image-layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`): the offline cache, and the `oci:DIR` registry an
//! air-gapped lab carries on a USB stick.
//!
//! Tags are index entries annotated `org.opencontainers.image.ref.name =
//! <repository>:<tag>`, which skopeo reads as `oci:DIR:<repository>:<tag>`.
//! Blobs are content-addressed, so a base shared by many nodes is stored once.
//! Writes go to a temporary file under `incoming/` and are renamed into place
//! only after their digest checked, so an interrupted write never leaves a
//! wrong blob; `index.json` is replaced atomically, after the blobs it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::manifest::{sha256_digest, sha256_hex, Descriptor, ImageManifest};
use super::{OciError, MAX_SMALL_BYTES};
use crate::digest::{HashingReader, Sha256Digest};
use serde::{Deserialize, Serialize};

/// Annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation recording when a ref was fetched into the cache (RFC 3339, UTC).
pub const FETCHED: &str = "dev.metis.fetched";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// One tag recorded in a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// Repository, e.g. `metis/nodes/titan-db`.
    pub repository: String,
    /// Tag, e.g. `latest`.
    pub tag: String,
    /// The manifest it points at.
    pub manifest: Descriptor,
    /// When it was fetched (RFC 3339), if recorded.
    pub fetched: Option<String>,
}

/// An OCI image-layout directory.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index_lock: Mutex<()>,
}

/// The ref name `<repository>:<tag>` used in `index.json`.
pub fn ref_name(repository: &str, tag: &str) -> String {
    format!("{repository}:{tag}")
}

impl Layout {
    /// Opens `dir`, creating an empty layout if it does not exist yet.
    pub fn open_or_create(dir: &Path) -> Result<Self, OciError> {
        let layout = Layout {
            dir: dir.to_path_buf(),
            index_lock: Mutex::new(()),
        };
        fs::create_dir_all(layout.dir.join("blobs/sha256"))
            .map_err(|e| OciError::io("creating", dir, e))?;
        let marker = layout.dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !layout.index_path().exists() {
            layout.write_index(&Index {
                schema_version: 2,
                media_type: INDEX_MEDIA_TYPE.into(),
                manifests: Vec::new(),
            })?;
        }
        Ok(layout)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    pub(crate) fn incoming_dir(&self) -> PathBuf {
        self.dir.join("incoming")
    }

    /// Where blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = sha256_hex(digest).ok_or_else(|| OciError::InvalidReference {
            reference: digest.to_owned(),
            reason: "not a sha256 digest".into(),
        })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Whether blob `digest` is present (with `size` bytes, when given).
    pub fn has_blob(&self, digest: &str, size: Option<u64>) -> bool {
        match self
            .blob_path(digest)
            .and_then(|p| fs::metadata(&p).map_err(|e| OciError::io("reading", p, e)))
        {
            Ok(meta) => size.is_none_or(|s| meta.len() == s),
            Err(_) => false,
        }
    }

    /// Reads a small blob into memory (a manifest, signature payload, config
    /// or index document), checking its digest; one larger than
    /// [`MAX_SMALL_BYTES`] is refused without being read. Large blobs are
    /// streamed from [`Layout::blob_path`], never read whole.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        self.read_small_blob(digest, MAX_SMALL_BYTES)
    }

    /// Reads blob `digest` into memory when it is at most `cap` bytes,
    /// checking its digest. The file's size is checked before reading, and
    /// reading stops after `cap` bytes whatever the size said (a file that
    /// grows meanwhile is refused, not slurped).
    pub fn read_small_blob(&self, digest: &str, cap: u64) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(digest)?;
        let too_large = |size: u64, at_least: bool| OciError::TooLarge {
            registry: crate::location::layout_name(&self.dir),
            repository: "blobs".into(),
            what: format!("blob {digest}"),
            size,
            at_least,
            cap,
        };
        let file = fs::File::open(&path).map_err(|e| OciError::io("reading", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| OciError::io("reading", &path, e))?
            .len();
        if size > cap {
            return Err(too_large(size, false));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io("reading", &path, e))?;
        if bytes.len() as u64 > cap {
            return Err(too_large(bytes.len() as u64, true));
        }
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(OciError::DigestMismatch {
                registry: crate::location::layout_name(&self.dir),
                repository: path.display().to_string(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Sha256Digest, OciError> {
        let digest = Sha256Digest::of(bytes);
        let text = digest.to_string();
        let path = self.blob_path(&text)?;
        if !self.has_blob(&text, Some(bytes.len() as u64)) {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Copies the file `src` in as blob `digest`, streaming and hashing; the
    /// blob appears only if the file hashes to `digest`.
    pub fn put_blob_file(&self, src: &Path, digest: &Sha256Digest) -> Result<u64, OciError> {
        let text = digest.to_string();
        let dest = self.blob_path(&text)?;
        let mut input =
            HashingReader::new(fs::File::open(src).map_err(|e| OciError::io("opening", src, e))?);
        fs::create_dir_all(self.incoming_dir())
            .map_err(|e| OciError::io("creating", self.incoming_dir(), e))?;
        let tmp = self
            .incoming_dir()
            .join(format!("{}.copy-{}", digest.hex(), std::process::id()));
        let result = (|| {
            let mut out = fs::File::create(&tmp).map_err(|e| OciError::io("creating", &tmp, e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input
                    .read(&mut buf)
                    .map_err(|e| OciError::io("reading", src, e))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|e| self.write_error(&tmp, &text, e))?;
            }
            out.sync_all()
                .map_err(|e| self.write_error(&tmp, &text, e))?;
            let (actual, size) = input.finish();
            if actual != *digest {
                return Err(OciError::DigestMismatch {
                    registry: crate::location::layout_name(&self.dir),
                    repository: src.display().to_string(),
                    expected: text,
                    actual: actual.to_string(),
                });
            }
            fs::rename(&tmp, &dest).map_err(|e| OciError::io("renaming into", &dest, e))?;
            Ok(size)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub(crate) fn write_error(&self, path: &Path, digest: &str, e: std::io::Error) -> OciError {
        if is_disk_full(&e) {
            let _ = fs::remove_file(path);
            OciError::DiskFull {
                cache: self.dir.clone(),
                digest: digest.to_owned(),
            }
        } else {
            OciError::io("writing", path, e)
        }
    }

    fn read_index(&self) -> Result<Index, OciError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|e| OciError::io("reading", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| OciError::Layout {
            dir: self.dir.clone(),
            reason: format!("index.json: {e}"),
        })
    }

    fn write_index(&self, index: &Index) -> Result<(), OciError> {
        let bytes = serde_json::to_vec_pretty(index).expect("index serialises");
        write_atomic(&self.index_path(), &bytes)
    }

    /// Points `<repository>:<tag>` at `manifest` (replacing an earlier entry),
    /// recording `fetched` when given. The manifest's blobs must be present.
    pub fn set_ref(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Descriptor,
        fetched: Option<&str>,
    ) -> Result<(), OciError> {
        let name = ref_name(repository, tag);
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME) != Some(&name));
        let mut entry = Descriptor {
            annotations: BTreeMap::new(),
            ..manifest.clone()
        };
        entry.annotations.insert(REF_NAME.into(), name);
        if let Some(when) = fetched {
            entry.annotations.insert(FETCHED.into(), when.into());
        }
        index.manifests.push(entry);
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
        self.write_index(&index)
    }

    /// Drops every tag of `repository`; returns how many distinct manifests
    /// they named. Blobs stay until [`Layout::prune`].
    pub fn remove_repository(&self, repository: &str) -> Result<usize, OciError> {
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let prefix = format!("{repository}:");
        let mut removed = BTreeSet::new();
        index.manifests.retain(|d| {
            let ours = d
                .annotations
                .get(REF_NAME)
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|tag| !tag.contains(':') && !tag.contains('/'));
            if ours {
                removed.insert(d.digest.clone());
            }
            !ours
        });
        self.write_index(&index)?;
        Ok(removed.len())
    }

    /// Every tag in the layout.
    pub fn refs(&self) -> Result<Vec<LayoutRef>, OciError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotations.get(REF_NAME)?.clone();
                let (repository, tag) = name.rsplit_once(':')?;
                Some(LayoutRef {
                    repository: repository.into(),
                    tag: tag.into(),
                    fetched: d.annotations.get(FETCHED).cloned(),
                    manifest: Descriptor {
                        annotations: BTreeMap::new(),
                        ..d
                    },
                })
            })
            .collect())
    }

    /// The tag `<repository>:<tag>`, if recorded.
    pub fn resolve(&self, repository: &str, tag: &str) -> Result<Option<LayoutRef>, OciError> {
        Ok(self
            .refs()?
            .into_iter()
            .find(|r| r.repository == repository && r.tag == tag))
    }

    /// Reads and parses the manifest `digest`.
    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, OciError> {
        let bytes = self.read_blob(digest)?;
        ImageManifest::parse(&bytes).map_err(|reason| OciError::Manifest {
            registry: crate::location::layout_name(&self.dir),
            repository: String::new(),
            digest: digest.to_owned(),
            reason: reason.to_string(),
        })
    }

    /// Digests reachable from the index (manifests and the blobs they name).
    fn reachable(&self) -> Result<BTreeSet<String>, OciError> {
        let mut keep = BTreeSet::new();
        for r in self.refs()? {
            keep.insert(r.manifest.digest.clone());
            if let Ok(m) = self.manifest(&r.manifest.digest) {
                keep.extend(m.blobs().map(|b| b.digest.clone()));
            }
        }
        Ok(keep)
    }

    fn blob_files(&self) -> Result<Vec<(String, PathBuf)>, OciError> {
        let dir = self.dir.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| OciError::io("listing", &dir, e))? {
            let entry = entry.map_err(|e| OciError::io("listing", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push((format!("sha256:{name}"), entry.path()));
        }
        out.sort();
        Ok(out)
    }

    /// Removes blobs no tag needs and unfinished downloads; returns (files, bytes) removed.
    pub fn prune(&self) -> Result<(usize, u64), OciError> {
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let keep = self.reachable()?;
        let mut removed = (0, 0);
        let incoming = self.incoming_dir();
        let mut doomed: Vec<PathBuf> = self
            .blob_files()?
            .into_iter()
            .filter(|(d, _)| !keep.contains(d))
            .map(|(_, p)| p)
            .collect();
        if let Ok(entries) = fs::read_dir(&incoming) {
            doomed.extend(entries.flatten().map(|e| e.path()));
        }
        for path in doomed {
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| OciError::io("removing", &path, e))?;
            removed.0 += 1;
            removed.1 += size;
        }
        Ok(removed)
    }

    /// Re-hashes every blob and checks every tag's blobs exist; returns the
    /// problems found (empty: the layout is sound).
    pub fn verify(&self) -> Result<Vec<String>, OciError> {
        let mut problems = Vec::new();
        for (digest, path) in self.blob_files()? {
            if sha256_hex(&digest).is_none() {
                problems.push(format!("{}: not a sha256 blob name", path.display()));
                continue;
            }
            let actual = hash_file(&path)?;
            if actual != digest {
                problems.push(format!("{}: content hashes to {actual}", path.display()));
            }
        }
        for r in self.refs()? {
            let name = ref_name(&r.repository, &r.tag);
            match self.manifest(&r.manifest.digest) {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(m) => {
                    for b in m.blobs() {
                        if !self.has_blob(&b.digest, Some(b.size)) {
                            problems.push(format!("{name}: blob {} missing", b.digest));
                        }
                    }
                }
            }
        }
        Ok(problems)
    }
}

/// SHA-256 of a file, streaming: [`crate::digest::hash_file`] with the
/// failing step (opening, reading) in the error.
pub fn hash_file(path: &Path) -> Result<Sha256Digest, OciError> {
    let file = fs::File::open(path).map_err(|e| OciError::io("opening", path, e))?;
    let (digest, _) = HashingReader::new(file)
        .drain()
        .map_err(|e| OciError::io("reading", path, e))?;
    Ok(digest)
}

pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            if is_disk_full(&e) {
                OciError::DiskFull {
                    cache: path.parent().unwrap_or(path).to_path_buf(),
                    digest: path.display().to_string(),
                }
            } else {
                OciError::io("writing", path, e)
            }
        });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_blobs_prune_verify() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let cfg = layout.put_blob_bytes(b"{}").unwrap();
        let src = dir.path().join("layer");
        fs::write(&src, b"layer bytes").unwrap();
        let layer = Sha256Digest::of(b"layer bytes");
        layout.put_blob_file(&src, &layer).unwrap();
        let wrong = Sha256Digest::of(b"other");
        assert!(matches!(
            layout.put_blob_file(&src, &wrong),
            Err(OciError::DigestMismatch { .. })
        ));
        assert!(!layout.has_blob(&wrong.to_string(), None));
        let m = ImageManifest {
            schema_version: 2,
            media_type: super::super::MEDIA_TYPE_IMAGE_MANIFEST.into(),
            artifact_type: None,
            config: Descriptor::of_bytes("c", b"{}"),
            layers: vec![Descriptor::of_bytes("l", b"layer bytes")],
            annotations: BTreeMap::new(),
        };
        assert_eq!(m.config.digest, cfg);
        let (bytes, digest) = m.to_bytes();
        layout.put_blob_bytes(&bytes).unwrap();
        let desc = Descriptor::of_bytes(super::super::MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
        layout
            .set_ref(
                "metis/nodes/a",
                "latest",
                &desc,
                Some("2026-01-01T00:00:00Z"),
            )
            .unwrap();
        layout
            .set_ref("metis/nodes/a", "latest", &desc, None)
            .unwrap();
        let refs = layout.refs().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].manifest.digest, digest);
        layout.put_blob_bytes(b"orphan").unwrap();
        assert_eq!(layout.prune().unwrap().0, 1);
        assert!(layout.verify().unwrap().is_empty());
        fs::write(layout.blob_path(&layer.to_string()).unwrap(), b"tampered").unwrap();
        assert_eq!(layout.verify().unwrap().len(), 2);
    }

    #[test]
    fn small_blobs_are_read_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let digest = layout.put_blob_bytes(&[3u8; 100]).unwrap().to_string();
        assert_eq!(layout.read_small_blob(&digest, 100).unwrap().len(), 100);
        match layout.read_small_blob(&digest, 99) {
            Err(OciError::TooLarge {
                size: 100,
                at_least: false,
                cap: 99,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A multi-GiB (sparse) file under a blob name is refused by its
        // size, never read: `read_blob` caps at MAX_SMALL_BYTES.
        let huge = sha256_digest(b"not what the file holds");
        let file = fs::File::create(layout.blob_path(&huge).unwrap()).unwrap();
        file.set_len(8 << 30).unwrap();
        let err = layout.read_blob(&huge).unwrap_err();
        assert!(
            matches!(err, OciError::TooLarge { size, cap: MAX_SMALL_BYTES, .. } if size == 8 << 30),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "is 8589934592 bytes, more than the {MAX_SMALL_BYTES} bytes"
            )),
            "{text}"
        );
    }
}
