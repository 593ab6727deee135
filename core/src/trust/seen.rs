//! The newest revision this machine has verified, per node and for the lab index,
//! so an older signed artifact is refused (no rollback).
//!
//! The record lives in the operator's config directory beside the pinned keys
//! (`<config dir>/metis/seen.json`), not in the offline cache: pointing
//! `--cache`/`METIS_CACHE` elsewhere or deleting the cache must not forget what was
//! seen. Older versions kept it in `<cache>/trust/seen.json`; [`SeenRevisions::migrate`]
//! folds such a copy in (the newest per node wins) and removes it.

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
    /// The operator's directory for the record: `<config dir>/metis`, the parent
    /// of the pinned keys' directory ([`super::TrustedKeys::default_dir`]).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("metis"))
    }

    /// `<dir>/seen.json`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("seen.json")
    }

    /// Where older versions kept the record: `<cache_dir>/trust/seen.json`.
    pub fn legacy_path(cache_dir: &Path) -> PathBuf {
        cache_dir.join("trust").join("seen.json")
    }

    /// Loads the record from `dir` (the operator's [`Self::default_dir`]); none yet
    /// means nothing seen.
    pub fn load(dir: &Path) -> Result<Self, VerifyError> {
        let path = Self::path_in(dir);
        let seen = read_file(&path)?.unwrap_or_default();
        Ok(Self { path, seen })
    }

    /// Folds a record kept by an older version at `legacy` (see
    /// [`Self::legacy_path`]) into this one, keeping the newest revision per node
    /// and for the index, saves, and removes `legacy`. Returns whether there was
    /// one. A malformed legacy record is an error naming it, so nothing is lost
    /// silently.
    pub fn migrate(&mut self, legacy: &Path) -> Result<bool, VerifyError> {
        let Some(old) = read_file(legacy)? else {
            return Ok(false);
        };
        if let Some(index) = old.index {
            self.seen.index = Some(self.seen.index.map_or(index, |i| i.max(index)));
        }
        for (node, revision) in old.nodes {
            let newest = self.seen.nodes.entry(node).or_insert(revision);
            *newest = (*newest).max(revision);
        }
        self.save()?;
        std::fs::remove_file(legacy).map_err(|e| VerifyError::SeenStore {
            path: legacy.to_owned(),
            reason: format!(
                "merged into {}, but removing it failed: {e}",
                self.path.display()
            ),
        })?;
        Ok(true)
    }

    /// Where the record is kept.
    pub fn path(&self) -> &Path {
        &self.path
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

/// Reads a record; `None` when there is none yet.
fn read_file(path: &Path) -> Result<Option<SeenFile>, VerifyError> {
    let err = |reason: String| VerifyError::SeenStore {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            err(format!(
                "malformed ({e}); it is only a record of revisions verified here, \
                 fix or delete it"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(format!("reading: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_keeps_the_newest_per_node_and_removes_the_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let legacy = SeenRevisions::legacy_path(&dir.path().join("cache"));
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(
            &legacy,
            r#"{"index": 3, "nodes": {"titan-db": 9, "titan-13": 4, "titan-jh": 2}}"#,
        )
        .unwrap();
        let mut seen = SeenRevisions::load(&config).unwrap();
        seen.record(Subject::Node("titan-db"), 12).unwrap();
        seen.record(Subject::Node("titan-13"), 1).unwrap();
        seen.record(Subject::Index, 5).unwrap();
        assert!(seen.migrate(&legacy).unwrap());
        assert!(!legacy.exists(), "the cache copy was left behind");
        assert!(!seen.migrate(&legacy).unwrap(), "nothing left to migrate");
        let seen = SeenRevisions::load(&config).unwrap();
        assert_eq!(seen.newest(Subject::Node("titan-db")), Some(12));
        assert_eq!(seen.newest(Subject::Node("titan-13")), Some(4));
        assert_eq!(seen.newest(Subject::Node("titan-jh")), Some(2));
        assert_eq!(seen.newest(Subject::Index), Some(5));
    }

    #[test]
    fn a_malformed_legacy_record_is_named_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("seen.json.old");
        std::fs::write(&legacy, "{not json").unwrap();
        let mut seen = SeenRevisions::load(&dir.path().join("config")).unwrap();
        let e = seen.migrate(&legacy).unwrap_err().to_string();
        assert!(
            e.contains("seen.json.old") && e.contains("malformed"),
            "{e}"
        );
        assert!(legacy.exists());
    }
}
