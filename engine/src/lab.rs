//! The verified lab index: which nodes the lab has, their class, role-free
//! revision and digest, whether each is cached (and current), and whether the
//! cached artifact would be accepted. `metis-flash list`, the node pickers and
//! the freshness check of [`crate::Engine::prepare`] read it.

use metis_core::oci::{self, ImageManifest};
use metis_core::trust::{self, HeldSignature, LabIndex};

use crate::error::EngineError;
use crate::fetch::{cached_signature, Fetching};
use crate::Engine;

/// Whether a node's artifact is in the offline cache, and the one the index names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CacheState {
    /// The cached artifact is the one the index names.
    #[serde(rename = "cached")]
    Cached,
    /// A different (older or newer) artifact is cached.
    #[serde(rename = "stale")]
    Stale,
    /// Nothing is cached for the node.
    #[serde(rename = "not cached")]
    NotCached,
}

impl CacheState {
    /// How `list` and the pickers print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Cached => "cached",
            CacheState::Stale => "stale",
            CacheState::NotCached => "not cached",
        }
    }
}

/// One node of the verified lab index, with its cache state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabNode {
    /// The node's name.
    pub node: String,
    /// Its class.
    pub class: String,
    /// The signed revision the index names.
    pub revision: u64,
    /// The artifact's manifest digest the index names.
    pub digest: String,
    /// Whether it is cached, and current.
    pub cache: CacheState,
    /// Whether the cached artifact would be accepted for this node: its signature
    /// verifies with a pinned key, it is signed for this node, its revision is the
    /// one the index names (when it is the artifact the index names) and not older
    /// than the newest seen here. Blobs are checked at flash time.
    pub verifies: bool,
    /// Why a cached artifact does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The verified lab index and its nodes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabNodes {
    /// The index's signed revision.
    #[serde(rename = "index_revision")]
    pub revision: u64,
    /// Fingerprint of the key that signed it.
    #[serde(skip)]
    pub key: String,
    /// When the index was fetched (RFC 3339), if known.
    #[serde(rename = "index_fetched", skip_serializing_if = "Option::is_none")]
    pub fetched: Option<String>,
    /// Every node of the index, by name.
    pub nodes: Vec<LabNode>,
}

/// The lab index as verified: its contents, revision, key and fetch time.
pub(crate) struct VerifiedIndex {
    pub(crate) index: LabIndex,
    pub(crate) revision: u64,
    pub(crate) key: String,
    pub(crate) fetched: Option<String>,
}

impl Engine {
    /// Fetches (unless offline) and verifies the lab index; records its revision
    /// as seen (the record never goes backwards). An index older than the newest
    /// seen is refused unless `allow_downgrade`.
    pub(crate) fn verified_index(
        &self,
        allow_downgrade: bool,
    ) -> Result<VerifiedIndex, EngineError> {
        let latest = self.fetch(Fetching::Index, "latest", &|head| {
            self.check_head(head, Fetching::Index, Some(allow_downgrade))
                .map(|_| ())
        })?;
        self.verify_cached_index(&latest, allow_downgrade)
    }

    /// The lab index as cached, verified, without fetching; `None` when the cache
    /// holds none.
    pub(crate) fn cached_index(
        &self,
        allow_downgrade: bool,
    ) -> Result<Option<VerifiedIndex>, EngineError> {
        let repo = self.repository(Fetching::Index);
        match oci::cached(&self.cache, &repo, "latest")
            .map_err(|e| EngineError::registry("reading the cache", e))?
        {
            Some(latest) => self.verify_cached_index(&latest, allow_downgrade).map(Some),
            None => Ok(None),
        }
    }

    fn verify_cached_index(
        &self,
        latest: &oci::LayoutRef,
        allow_downgrade: bool,
    ) -> Result<VerifiedIndex, EngineError> {
        let repo = self.repository(Fetching::Index);
        let what = "the lab index";
        let read = |d: &str| {
            self.cache
                .read_blob(d)
                .map_err(|e| EngineError::registry(format!("{what}: reading the cache"), e))
        };
        let manifest_bytes = read(&latest.manifest.digest)?;
        let manifest = ImageManifest::parse(&manifest_bytes).map_err(|e| {
            EngineError::Artifact(format!("the cached lab index manifest is malformed: {e}"))
        })?;
        let config = read(&manifest.config.digest)?;
        let layer = manifest
            .layers
            .first()
            .ok_or_else(|| EngineError::Artifact("the lab index manifest has no layer".into()))?;
        let doc = read(&layer.digest)?;
        let (sig, payloads) = cached_signature(&self.cache, &repo, &latest.manifest.digest, what)?;
        let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let keys = self.keys()?;
        let mut seen = self.seen()?;
        let (index, verified) = trust::verify_index(
            &keys,
            &HeldSignature {
                manifest: &sig,
                payloads: &payload_refs,
            },
            &manifest_bytes,
            &config,
            &doc,
            &mut seen,
            allow_downgrade,
        )
        .map_err(|source| EngineError::verification(what, source))?;
        Ok(VerifiedIndex {
            index,
            revision: verified.metadata.revision,
            key: verified.key_fingerprint,
            fetched: latest.fetched.clone(),
        })
    }

    /// The nodes of the verified lab index (fetched unless offline), each with its
    /// cache state and whether its cached artifact would be accepted.
    pub fn lab_nodes(&self) -> Result<LabNodes, EngineError> {
        let verified = self.verified_index(false)?;
        let mut nodes = Vec::new();
        for (name, entry) in &verified.index.nodes {
            let node_repo = self.repository(Fetching::Node(name));
            let cached = oci::cached(&self.cache, &node_repo, "latest")
                .map_err(|e| EngineError::registry("reading the cache", e))?;
            let state = match &cached {
                None => CacheState::NotCached,
                Some(r) if r.manifest.digest == entry.digest => CacheState::Cached,
                Some(_) => CacheState::Stale,
            };
            // Everything but the blobs (checked at flash time): cheap enough for a list.
            let problem = match &cached {
                Some(r) => self
                    .check_cached(&node_repo, name, entry, verified.revision, r)
                    .err()
                    .map(|e| e.to_string()),
                None => None,
            };
            nodes.push(LabNode {
                node: name.clone(),
                class: entry.class.clone(),
                revision: entry.revision,
                digest: entry.digest.clone(),
                cache: state,
                verifies: cached.is_some() && problem.is_none(),
                problem,
            });
        }
        Ok(LabNodes {
            revision: verified.revision,
            key: verified.key,
            fetched: verified.fetched,
            nodes,
        })
    }

    /// The checks of the cached artifact `cached` of `node` that need no blob: the
    /// signature, the node it is signed for and its revision against the newest
    /// seen (those of a fetch, [`Engine::check_head`]), then its revision against
    /// the `entry` of the index of revision `index_revision`. The error says
    /// which failed.
    fn check_cached(
        &self,
        repository: &str,
        node: &str,
        entry: &trust::IndexEntry,
        index_revision: u64,
        cached: &oci::LayoutRef,
    ) -> Result<(), EngineError> {
        let digest = &cached.manifest.digest;
        let (signature, payloads) = cached_signature(&self.cache, repository, digest, node)?;
        let head = oci::SignedHead {
            repository: repository.to_owned(),
            tag: "latest".into(),
            digest: digest.clone(),
            manifest: self
                .cache
                .read_blob(digest)
                .map_err(|e| EngineError::registry(format!("{node}: the cached manifest"), e))?,
            signature_manifest: Some(signature),
            payloads,
        };
        let metadata = self.check_head(&head, Fetching::Node(node), Some(false))?;
        if *digest == entry.digest && metadata.revision != entry.revision {
            return Err(EngineError::IndexDisagrees {
                node: node.into(),
                signed: metadata.revision,
                listed: entry.revision,
            });
        }
        if metadata.revision < entry.revision {
            return Err(EngineError::OlderThanIndex {
                node: node.into(),
                revision: metadata.revision,
                listed: entry.revision,
                index_revision,
            });
        }
        Ok(())
    }
}
