//! The newest revision this machine has verified, per node and for the lab index
//! (`<cache>/trust/seen.json`), so an older signed artifact is refused (no rollback).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::VerifyError;

/// What a revision belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A node's artifact.
    Node(&'a str),
    /// The lab index.
    Index,
}

impl std::fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Node(n) => write!(f, "node {n}"),
            Subject::Index => f.write_str("lab index"),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeenFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(default)]
    nodes: BTreeMap<String, u64>,
}

/// The record of seen revisions: `{"index": 7, "nodes": {"titan-db": 42}}`.
#[derive(Debug)]
pub struct SeenRevisions {
    path: PathBuf,
    seen: SeenFile,
}

impl SeenRevisions {
    /// `<cache_dir>/trust/seen.json`.
    pub fn path_in(cache_dir: &Path) -> PathBuf {
        cache_dir.join("trust").join("seen.json")
    }

    /// Loads the record from the cache directory; none yet means nothing seen.
    pub fn load(cache_dir: &Path) -> Result<Self, VerifyError> {
        let path = Self::path_in(cache_dir);
        let err = |reason: String| VerifyError::SeenStore {
            path: path.clone(),
            reason,
        };
        let seen = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("malformed ({e}); it is only a record of revisions verified here, fix or delete it")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeenFile::default(),
            Err(e) => return Err(err(format!("reading: {e}"))),
        };
        Ok(Self { path, seen })
    }

    /// The newest revision verified for `subject`.
    pub fn newest(&self, subject: Subject<'_>) -> Option<u64> {
        match subject {
            Subject::Node(n) => self.seen.nodes.get(n).copied(),
            Subject::Index => self.seen.index,
        }
    }

    /// Refuses `revision` when it is older than the newest seen, unless `allow_downgrade`.
    pub fn check(
        &self,
        subject: Subject<'_>,
        revision: u64,
        allow_downgrade: bool,
    ) -> Result<(), VerifyError> {
        match self.newest(subject) {
            Some(seen) if revision < seen && !allow_downgrade => Err(VerifyError::Rollback {
                subject: subject.to_string(),
                revision,
                seen,
            }),
            _ => Ok(()),
        }
    }

    /// Records `revision` as verified (the newest never goes down) and saves the file.
    pub fn record(&mut self, subject: Subject<'_>, revision: u64) -> Result<(), VerifyError> {
        let newest = match subject {
            Subject::Node(n) => self.seen.nodes.get(n).copied(),
            Subject::Index => self.seen.index,
        };
        if newest.is_some_and(|seen| seen >= revision) {
            return Ok(());
        }
        match subject {
            Subject::Node(n) => {
                self.seen.nodes.insert(n.to_owned(), revision);
            }
            Subject::Index => self.seen.index = Some(revision),
        }
        self.save()
    }

    fn save(&self) -> Result<(), VerifyError> {
        let err = |reason: String| VerifyError::SeenStore {
            path: self.path.clone(),
            reason,
        };
        let dir = self.path.parent().expect("seen.json has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let mut bytes = serde_json::to_vec_pretty(&self.seen).expect("always serialises");
        bytes.push(b'\n');
        // Write beside, then rename: a crash never leaves a truncated record.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(format!("replacing: {e}")))
    }
}
