//! Fetching into the offline cache: a node's artifact or the lab index, with its
//! signature, from the registry — or, offline or when the registry cannot be
//! reached, what the cache already holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metis_core::oci::{self, Layout, LayoutRef, ProgressEvent, PullOptions};
use metis_core::trust;

use crate::error::EngineError;
use crate::events::{Notice, Phase};
use crate::Engine;

/// What is being fetched: names it in messages and says which command caches it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fetching<'a> {
    /// A node's artifact.
    Node(&'a str),
    /// The signed lab index.
    Index,
}

impl Fetching<'_> {
    pub(crate) fn name(&self) -> String {
        match self {
            Fetching::Node(node) => (*node).to_owned(),
            Fetching::Index => "the lab index".into(),
        }
    }

    fn command(&self) -> String {
        match self {
            Fetching::Node(node) => format!("`metis-flash pull {node}`"),
            Fetching::Index => "`metis-flash list` (or `metis-flash pull NODE…`, which caches \
                                the lab index too)"
                .into(),
        }
    }
}

/// MiB, for messages.
const MIB: f64 = (1u64 << 20) as f64;

impl Engine {
    /// The repository of `what`.
    pub(crate) fn repository(&self, what: Fetching) -> String {
        match what {
            Fetching::Node(node) => oci::node_repository(&self.source.prefix, node),
            Fetching::Index => oci::index_repository(&self.source.prefix),
        }
    }

    /// Brings `<repository of what>:<tag>` and its signature into the cache (or,
    /// offline or with the registry unreachable, checks the cache has it) and
    /// returns the cached ref.
    ///
    /// Trust before bytes: the manifest and its signature are fetched first
    /// (each within [`oci::MAX_SMALL_BYTES`]) and `check` judges them; only if it
    /// accepts are the blobs the manifest names downloaded, each bounded by its
    /// signed size. An unsigned artifact is refused before any blob moves.
    pub(crate) fn fetch(
        &self,
        what: Fetching,
        tag: &str,
        check: &dyn Fn(&oci::SignedHead) -> Result<(), EngineError>,
    ) -> Result<LayoutRef, EngineError> {
        let repository = self.repository(what);
        let Some(registry) = &self.registry else {
            return self.use_cached(what, &repository, tag, None);
        };
        let meter = Arc::new(std::sync::Mutex::new(None));
        let done = Arc::new(AtomicU64::new(0));
        let progress = {
            let events = self.events.clone();
            let meter = Arc::clone(&meter);
            let done = Arc::clone(&done);
            oci::Progress::new(move |event| {
                let mut meter = meter.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    ProgressEvent::Total(n) => *meter = Some(events.phase(Phase::Download, n)),
                    ProgressEvent::Advance(n) => {
                        let d = done.fetch_add(n, Ordering::Relaxed) + n;
                        if let Some(m) = meter.as_ref() {
                            m.set(d, None);
                        }
                    }
                    _ => {}
                }
            })
        };
        let options = PullOptions {
            progress,
            ..Default::default()
        };
        let name = what.name();
        let result = oci::block_on(oci::pull_verified(
            registry,
            &self.cache,
            &repository,
            tag,
            &options,
            |head: &oci::SignedHead| {
                if head.signature_manifest.is_none() {
                    return Err(EngineError::Unsigned {
                        what: name.clone(),
                        digest: head.digest.clone(),
                    });
                }
                check(head)
            },
        ));
        if let Some(m) = meter.lock().unwrap_or_else(|e| e.into_inner()).take() {
            m.finish();
        }
        match result {
            Ok(p) => {
                self.events.info(format!(
                    "{}: {repository}:{tag} is {} ({:.1} MiB downloaded, {:.1} MiB already cached)",
                    what.name(),
                    p.digest,
                    p.downloaded_bytes as f64 / MIB,
                    p.reused_bytes as f64 / MIB
                ));
                self.cached_ref(what, &repository, tag)
            }
            Err(oci::PullVerifiedError::Refused(e)) => Err(e),
            Err(oci::PullVerifiedError::Oci(e)) if e.is_unreachable() => {
                self.use_cached(what, &repository, tag, Some(e))
            }
            Err(oci::PullVerifiedError::Oci(e)) => Err(EngineError::registry(
                format!("{}: pulling {repository}:{tag}", what.name()),
                e,
            )),
            Err(e) => Err(EngineError::Artifact(format!("{}: {e}", what.name()))),
        }
    }
    fn cached_ref(
        &self,
        what: Fetching,
        repository: &str,
        tag: &str,
    ) -> Result<LayoutRef, EngineError> {
        oci::cached(&self.cache, repository, tag)
            .map_err(|e| EngineError::registry("reading the cache", e))?
            .ok_or_else(|| EngineError::NotCached {
                what: format!("{} ({repository}:{tag})", what.name()),
                cache: self.cache.dir().to_path_buf(),
                command: what.command(),
            })
    }

    /// The cached ref, with a notice saying how old it is; `unreachable` is the
    /// registry's error when the cache is the fallback.
    fn use_cached(
        &self,
        what: Fetching,
        repository: &str,
        tag: &str,
        unreachable: Option<oci::OciError>,
    ) -> Result<LayoutRef, EngineError> {
        let cached = oci::cached(&self.cache, repository, tag)
            .map_err(|e| EngineError::registry("reading the cache", e))?;
        let Some(r) = cached else {
            return Err(match unreachable {
                Some(source) => EngineError::Unreachable {
                    what: format!("{}: {repository}:{tag} is not cached either", what.name()),
                    source: Box::new(source),
                },
                None => EngineError::NotCached {
                    what: format!("{} ({repository}:{tag})", what.name()),
                    cache: self.cache.dir().to_path_buf(),
                    command: what.command(),
                },
            });
        };
        if let Some(e) = unreachable {
            self.events.notice(Notice::Unreachable {
                reason: e.to_string(),
            });
        }
        let age = r
            .fetched
            .as_deref()
            .and_then(oci::age_of)
            .map_or_else(|| "at an unknown time".into(), |a| format!("{a} ago"));
        self.events.info(format!(
            "{}: using the cached {repository}:{tag} ({}), fetched {age}",
            what.name(),
            r.manifest.digest
        ));
        Ok(r)
    }

    /// The checks of a fetched manifest and its signature that need no blob:
    /// the signature with a pinned key over this manifest, the kind, for a node
    /// the node it is signed for, and with `rollback` (`Some(allow_downgrade)`)
    /// its revision against this laptop's record.
    pub(crate) fn check_head(
        &self,
        head: &oci::SignedHead,
        what: Fetching,
        rollback: Option<bool>,
    ) -> Result<trust::Metadata, EngineError> {
        let name = what.name();
        let Some(signature) = &head.signature_manifest else {
            return Err(EngineError::Unsigned {
                what: name,
                digest: head.digest.clone(),
            });
        };
        let payloads: Vec<&[u8]> = head.payloads.iter().map(Vec::as_slice).collect();
        let keys = self.keys()?;
        let verify = |e| EngineError::verification(format!("{name}'s artifact {}", head.digest), e);
        let (payload, _key) = trust::verify_signature(
            &keys,
            &trust::HeldSignature {
                manifest: signature,
                payloads: &payloads,
            },
            &head.manifest,
        )
        .map_err(verify)?;
        let metadata = trust::Metadata::from_optional(payload.optional.as_ref()).map_err(verify)?;
        let (expected, subject) = match what {
            Fetching::Node(node) => (trust::Kind::Node, trust::Subject::Node(node)),
            Fetching::Index => (trust::Kind::Index, trust::Subject::Index),
        };
        if metadata.kind != expected {
            return Err(verify(trust::VerifyError::WrongKind {
                signed: metadata.kind.as_str().into(),
                expected: expected.as_str(),
            }));
        }
        if let Fetching::Node(node) = what {
            let signed_for = metadata.node.clone().unwrap_or_default();
            if signed_for != node {
                return Err(verify(trust::VerifyError::WrongNode {
                    signed_for,
                    expected: node.into(),
                }));
            }
        }
        if let Some(allow_downgrade) = rollback {
            self.seen()?
                .check(subject, metadata.revision, allow_downgrade)
                .map_err(verify)?;
        }
        Ok(metadata)
    }

    /// Pulls `nodes` at `tag` and the lab index; returns how many failed, each
    /// reported as a warning.
    pub fn pull(&self, nodes: &[String], tag: &str) -> Result<usize, EngineError> {
        let failed = self.pull_nodes(nodes, tag);
        // The signed lab index travels with the nodes, so `list --offline` and the
        // offline node picker work from what was pulled.
        if self.registry.is_some() {
            if let Err(e) = self.fetch(Fetching::Index, "latest", &|h| {
                self.check_head(h, Fetching::Index, None).map(|_| ())
            }) {
                self.events.warn(format!(
                    "the signed lab index was not cached ({e}); `metis-flash list --offline` and \
                     the offline node picker need it: check that `metis-build publish` ran, then \
                     pull again"
                ));
            }
        }
        Ok(failed)
    }

    /// Pulls every node the verified lab index lists (the index is cached by
    /// reading it); returns the nodes and how many failed.
    pub fn pull_all(&self) -> Result<(Vec<String>, usize), EngineError> {
        let lab = self.lab_nodes()?;
        let nodes: Vec<String> = lab.nodes.iter().map(|n| n.node.clone()).collect();
        let failed = self.pull_nodes(&nodes, "latest");
        Ok((nodes, failed))
    }

    /// Pulls each of `nodes` at `tag` (signature and node binding checked before
    /// any blob); a failure is a warning with its hint. Returns how many failed.
    fn pull_nodes(&self, nodes: &[String], tag: &str) -> usize {
        let mut failed = 0;
        for node in nodes {
            if let Err(e) = self.fetch(Fetching::Node(node), tag, &|h| {
                self.check_head(h, Fetching::Node(node), None).map(|_| ())
            }) {
                let hint = e
                    .hint()
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default();
                self.events.warn(format!("{node}: {e}{hint}"));
                failed += 1;
            }
        }
        failed
    }
}

/// The cached signature of `repository`'s manifest `digest`: the signature
/// manifest and its simple-signing payloads.
pub(crate) fn cached_signature(
    cache: &Layout,
    repository: &str,
    digest: &str,
    what: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), EngineError> {
    let tag = metis_core::trust::signature_tag(digest).ok_or_else(|| {
        EngineError::Artifact(format!(
            "{what}: the cached manifest digest {digest} is not sha256"
        ))
    })?;
    let sig_ref = oci::cached(cache, repository, &tag)
        .map_err(|e| EngineError::registry("reading the cache", e))?
        .ok_or_else(|| EngineError::Unsigned {
            what: what.to_owned(),
            digest: digest.to_owned(),
        })?;
    let read = |d: &str| {
        cache
            .read_blob(d)
            .map_err(|e| EngineError::registry(format!("{what}: reading the cached signature"), e))
    };
    let manifest = read(&sig_ref.manifest.digest)?;
    let payloads = metis_core::trust::signature_payloads(&manifest)
        .map_err(|e| EngineError::verification(what.to_owned(), e))?
        .iter()
        .map(|d| read(&d.digest))
        .collect::<Result<_, _>>()?;
    Ok((manifest, payloads))
}
