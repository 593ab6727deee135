//! A node's card: [`Engine::prepare`] fetches and verifies the artifact and
//! decrypts its secrets; [`Engine::flash`] writes it. Two steps, so a shell can
//! pick the disk once the image size is known and everything is verified.

use std::path::PathBuf;

use metis_core::artifact::NodeConfig;
use metis_core::image::compose::{ComposeOptions, Composer};
use metis_core::image::patch::Patch;
use metis_core::oci::{self, ImageManifest};
use metis_core::trust::{self, BlobContent, HeldArtifact, HeldBlob, HeldSignature};
use zeroize::Zeroizing;

use crate::device::Backend;
use crate::error::EngineError;
use crate::events::{Notice, Phase};
use crate::fetch::{cached_signature, Fetching};
use crate::flash::{self, Confirm, FlashSummary, Target, WriteMode};
use crate::lab::VerifiedIndex;
use crate::{CancelToken, Engine};

/// A node's artifact, verified, with its secrets decrypted: ready to write.
pub struct Prepared {
    /// The node.
    pub node: String,
    /// The signed node config.
    pub config: NodeConfig,
    /// The signed revision.
    pub revision: u64,
    /// The manifest digest.
    pub digest: String,
    /// Fingerprint of the key that signed it.
    pub key: String,
    base: PathBuf,
    patch: Vec<u8>,
    bundle: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bundle: it is the node's secrets in clear.
        f.debug_struct("Prepared")
            .field("node", &self.node)
            .field("revision", &self.revision)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The card image's size in bytes.
    pub fn image_size(&self) -> u64 {
        self.config.composed_table.image_size()
    }

    /// For a k3s server: the commands to run on the live cluster before its card boots.
    pub fn rejoin_commands(&self) -> &[String] {
        &self.config.rejoin_commands
    }
}

/// How [`Engine::prepare`] verifies and decrypts.
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// The operator's identity file [default: the settings', then the usual places].
    pub identity: Option<PathBuf>,
    /// Accept an artifact older than the newest seen here or listed by the
    /// newest verified lab index.
    pub allow_downgrade: bool,
}

/// How [`Engine::flash`] writes.
pub struct FlashOptions {
    /// Full or sparse; `None` picks full for devices, sparse for files.
    pub mode: Option<WriteMode>,
    /// Bytes per write.
    pub block_size: usize,
    /// Compare a disk that already holds this class's image and write only the
    /// chunks that differ (spare cards); `false` writes every chunk (`--full`).
    pub compare: bool,
    /// Asks the operator to confirm a device not named with `--yes`.
    pub confirm: Option<Confirm>,
    /// Stops the flash (wiping the card once anything was written).
    pub cancel: CancelToken,
}

impl Default for FlashOptions {
    fn default() -> Self {
        FlashOptions {
            mode: None,
            block_size: flash::DEFAULT_BLOCK_SIZE,
            compare: true,
            confirm: None,
            cancel: CancelToken::new(),
        }
    }
}

/// A blob of the artifact as held for verification.
enum Held {
    /// Read once; these bytes are verified and then used.
    Bytes(Vec<u8>),
    /// Streamed from the cache (the base), or missing.
    File(PathBuf),
}

impl Engine {
    /// The newest verified lab index at hand: fetched when online (the cache when
    /// the registry cannot be reached), the cached one offline. `None` when there
    /// is none; a lab index that fails verification is an error.
    fn index_at_hand(&self, allow_downgrade: bool) -> Result<Option<VerifiedIndex>, EngineError> {
        let result = if self.offline() {
            self.cached_index(allow_downgrade)
        } else {
            self.verified_index(allow_downgrade).map(Some)
        };
        match result {
            Ok(index) => Ok(index),
            Err(e @ (EngineError::Verification { .. } | EngineError::Unsigned { .. })) => Err(e),
            Err(e) => {
                let why = match e {
                    EngineError::Unreachable { .. } => {
                        "the registry cannot be reached and none is cached".to_owned()
                    }
                    EngineError::NotCached { .. } => "none is cached".to_owned(),
                    other => other.to_string(),
                };
                self.events.warn(format!(
                    "no verified lab index at hand ({why}): the artifact's revision is checked \
                     only against what this laptop has seen"
                ));
                Ok(None)
            }
        }
    }

    /// Fetches (unless offline) and verifies `node`'s artifact — signature with a
    /// pinned key, the node it is signed for, its revision against this laptop's
    /// record and the newest verified lab index, every digest — and decrypts its
    /// secrets with the operator's identity. Nothing is written.
    pub fn prepare(&self, node: &str, options: &PrepareOptions) -> Result<Prepared, EngineError> {
        let index = self.index_at_hand(options.allow_downgrade)?;
        let listed = match &index {
            Some(ix) => {
                let age = ix
                    .fetched
                    .as_deref()
                    .and_then(oci::age_of)
                    .map_or_else(|| "at an unknown time".into(), |a| format!("{a} ago"));
                self.events.info(format!(
                    "lab index revision {} verified with key {}, fetched {age}",
                    ix.revision, ix.key
                ));
                match ix.index.entry(node) {
                    Some(entry) => Some((entry.revision, ix.revision)),
                    None => {
                        return Err(EngineError::UnknownNode {
                            node: node.into(),
                            suggestions: suggestions(node, ix.index.nodes.keys()),
                        })
                    }
                }
            }
            None => None,
        };
        let verify_meter = self.events.phase(Phase::Verify, 0);
        let older_than_listed = |revision: u64| match listed {
            Some((listed, index_revision)) if revision < listed && !options.allow_downgrade => {
                Err(EngineError::OlderThanIndex {
                    node: node.into(),
                    revision,
                    listed,
                    index_revision,
                })
            }
            _ => Ok(()),
        };
        // Signature, node, revision (against this laptop's record and the index)
        // before any blob is downloaded; everything again, with the blobs, below.
        let latest = self.fetch(Fetching::Node(node), "latest", &|head| {
            let metadata =
                self.check_head(head, Fetching::Node(node), Some(options.allow_downgrade))?;
            older_than_listed(metadata.revision)
        })?;
        let verified = self.verify_cached_node(node, &latest, options.allow_downgrade)?;
        older_than_listed(verified.revision)?;
        if let Some((listed, _)) = listed {
            if verified.revision < listed {
                self.events.warn(format!(
                    "DOWNGRADE: writing {node} revision {}, older than revision {listed} that the \
                     verified lab index lists (--allow-downgrade)",
                    verified.revision
                ));
            }
        }
        verify_meter.finish();
        self.events.notice(Notice::Verified {
            node: node.into(),
            revision: verified.revision,
            digest: verified.digest.clone(),
            key: verified.key.clone(),
        });
        let demo_ok = self.source.is_test_registry();
        if verified.key == trust::DEMO_KEY_FINGERPRINT && !demo_ok {
            self.events.warn(format!(
                "{node}'s artifact is signed with the example lab's DEMO key, whose private half is \
                 public: anyone could have signed it. Replace the demo keys \
                 (inventory/demo-keys/README.md) before using a real registry."
            ));
        }
        let identity = options
            .identity
            .clone()
            .or_else(|| self.settings.identity.clone());
        let identities = metis_core::secrets::Identities::for_operator(identity.as_deref())
            .map_err(|e| EngineError::Identity(format!("{e:#}")))?;
        if let Some(recipient) = identities.demo_recipient() {
            if !demo_ok {
                self.events.warn(format!(
                    "your operator identity is the example lab's DEMO identity ({recipient}), whose \
                     private half is public: anyone can decrypt {node}'s secrets. Generate your own \
                     (age-keygen), have the lab rekey its secrets to it \
                     (inventory/demo-keys/README.md) before using a real registry."
                ));
            }
        }
        let bundle = metis_core::secrets::open_node_bundle(&verified.secrets, &identities)
            .map_err(|e| EngineError::Identity(format!("{node}: {e:#}")))?;
        if verified.config.slot.len != bundle.len() as u64 {
            return Err(EngineError::Artifact(format!(
                "{node}: the secrets bundle is {} bytes but the card's slot is {}",
                bundle.len(),
                verified.config.slot.len
            )));
        }
        if !verified.config.rejoin_commands.is_empty() {
            self.events.notice(Notice::Rejoin {
                node: node.into(),
                commands: verified.config.rejoin_commands.clone(),
            });
        }
        Ok(Prepared {
            node: node.into(),
            config: verified.config,
            revision: verified.revision,
            digest: verified.digest,
            key: verified.key,
            base: verified.base,
            patch: verified.patch,
            bundle,
        })
    }

    /// Writes a prepared card to `target` on this OS's disks, then reads it back.
    pub fn flash(
        &self,
        prepared: Prepared,
        target: Target,
        options: FlashOptions,
    ) -> Result<FlashSummary, EngineError> {
        self.flash_with(&crate::device::Native, prepared, target, options)
    }

    /// [`Engine::flash`] with an explicit device backend.
    pub fn flash_with(
        &self,
        backend: &dyn Backend,
        prepared: Prepared,
        target: Target,
        options: FlashOptions,
    ) -> Result<FlashSummary, EngineError> {
        let node = prepared.node.clone();
        let patch = Patch::decode(&prepared.patch)
            .map_err(|e| EngineError::Artifact(format!("{node}: the node patch: {e}")))?;
        let base = std::fs::File::open(&prepared.base)
            .map_err(|e| EngineError::Artifact(format!("{}: {e}", prepared.base.display())))?;
        let composer = Composer::new(
            base,
            prepared.config.composed_table.clone(),
            patch,
            ComposeOptions::default(),
        )
        .map_err(|e| EngineError::Artifact(format!("{node}: {e}")))?;
        let summary = flash::run_with(
            backend,
            composer,
            flash::FlashRequest {
                node,
                slot: Some((prepared.config.slot.offset, prepared.bundle)),
                target,
                mode: options.mode,
                block_size: options.block_size,
                card: Some(flash::CardLabel {
                    class: prepared.config.class.clone(),
                    revision: prepared.revision,
                }),
                compare: options.compare,
                probe_capacity: true,
                signature_verified: true,
                confirm: options.confirm,
                events: self.events.clone(),
                cancel: options.cancel,
            },
        )?;
        Ok(summary)
    }

    /// Verifies the cached artifact `latest` of `node`: signature, node binding,
    /// revision against the seen record, and every blob. The small blobs are read
    /// once (the bytes verified are the bytes used); the base is verified as a file
    /// and each of its chunks is checked again against the signed table as written.
    fn verify_cached_node(
        &self,
        node: &str,
        latest: &oci::LayoutRef,
        allow_downgrade: bool,
    ) -> Result<VerifiedNode, EngineError> {
        let repo = self.repository(Fetching::Node(node));
        let digest = latest.manifest.digest.clone();
        let cache_err = |e| EngineError::registry(format!("{node}: reading the cache"), e);
        let manifest_bytes = self.cache.read_blob(&digest).map_err(cache_err)?;
        let (sig_manifest, payloads) = cached_signature(&self.cache, &repo, &digest, node)?;
        let payload_refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let manifest = ImageManifest::parse(&manifest_bytes).map_err(|e| {
            EngineError::Artifact(format!("{node}: the cached manifest is malformed: {e}"))
        })?;
        let mut blobs: Vec<(&str, &str, Held)> = Vec::new();
        for d in manifest.blobs() {
            let path = self.cache.blob_path(&d.digest).map_err(cache_err)?;
            let held = if d.media_type == oci::MEDIA_TYPE_BASE {
                Held::File(path)
            } else {
                match std::fs::read(&path) {
                    Ok(bytes) => Held::Bytes(bytes),
                    // Missing: verification names it (BlobMissing).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Held::File(path),
                    Err(e) => {
                        return Err(EngineError::Artifact(format!(
                            "reading {}: {e}",
                            path.display()
                        )))
                    }
                }
            };
            blobs.push((&d.media_type, &d.digest, held));
        }
        let held: Vec<HeldBlob> = blobs
            .iter()
            .map(|(media_type, digest, content)| HeldBlob {
                media_type,
                digest,
                content: match content {
                    Held::Bytes(b) => BlobContent::Bytes(b),
                    Held::File(p) => BlobContent::File(p),
                },
            })
            .collect();
        let keys = self.keys()?;
        let mut seen = self.seen()?;
        let verified = trust::verify_node(
            &keys,
            &HeldSignature {
                manifest: &sig_manifest,
                payloads: &payload_refs,
            },
            &HeldArtifact {
                manifest: &manifest_bytes,
                blobs: &held,
            },
            node,
            &mut seen,
            allow_downgrade,
        )
        .map_err(|source| {
            EngineError::verification(format!("{node}'s artifact {digest}"), source)
        })?;
        drop(held);

        let mut take = |media_type: &str| -> Result<Held, EngineError> {
            let at = blobs
                .iter()
                .position(|(mt, _, _)| *mt == media_type)
                .ok_or_else(|| {
                    EngineError::Artifact(format!("{node}: the artifact has no {media_type} layer"))
                })?;
            Ok(blobs.swap_remove(at).2)
        };
        let bytes = |held: Held| match held {
            Held::Bytes(b) => Ok(b),
            Held::File(p) => Err(EngineError::Artifact(format!(
                "{node}: {} was verified as a file, not read",
                p.display()
            ))),
        };
        let config_bytes = bytes(take(&manifest.config.media_type)?)?;
        let patch = bytes(take(oci::MEDIA_TYPE_PATCH)?)?;
        let secrets = bytes(take(oci::MEDIA_TYPE_SECRETS)?)?;
        let base = match take(oci::MEDIA_TYPE_BASE)? {
            Held::File(path) => path,
            Held::Bytes(_) => {
                return Err(EngineError::Artifact(format!(
                    "{node}: the base layer was not held as a file"
                )))
            }
        };
        let config: NodeConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            EngineError::Artifact(format!(
                "{node}: the signed config is not a Metis node config: {e}"
            ))
        })?;
        if config.node != node {
            return Err(EngineError::Artifact(format!(
                "{node}: the signed config is for {}",
                config.node
            )));
        }
        Ok(VerifiedNode {
            config,
            base,
            patch,
            secrets,
            digest,
            revision: verified.metadata.revision,
            key: verified.key_fingerprint,
        })
    }
}

/// A verified node artifact in the cache.
struct VerifiedNode {
    config: NodeConfig,
    base: PathBuf,
    patch: Vec<u8>,
    secrets: Vec<u8>,
    digest: String,
    revision: u64,
    key: String,
}

/// The names closest to `node`: those at the least edit distance (at most 2,
/// a swap of two letters counting as one), or starting with it.
fn suggestions<'a>(node: &str, names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let scored: Vec<(usize, &String)> = names.map(|n| (strsim::osa_distance(node, n), n)).collect();
    let best = scored.iter().map(|(d, _)| *d).min().unwrap_or(usize::MAX);
    let mut close: Vec<String> = scored
        .into_iter()
        .filter(|(d, n)| (*d <= 2 && *d == best) || (node.len() >= 3 && n.starts_with(node)))
        .map(|(_, n)| n.clone())
        .collect();
    close.sort();
    close.truncate(3);
    close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        let names: Vec<String> = ["titan-db", "titan-04", "tethys"]
            .map(String::from)
            .to_vec();
        assert_eq!(suggestions("titan-bd", names.iter()), vec!["titan-db"]);
        assert_eq!(
            suggestions("titan", names.iter()),
            vec!["titan-04", "titan-db"]
        );
        assert!(suggestions("zeus", names.iter()).is_empty());
    }
}
