//! metis-engine: the operator's whole flow as one library, under the CLI
//! (`metis-flash`) and the GUI.
//!
//! ```text
//! Engine::open        settings + flags → registry Source, cache, pinned keys
//!   ├─ lab_nodes      the verified lab index and each node's cache state
//!   ├─ pull           node artifacts (and the index) into the offline cache
//!   ├─ prepare(node)  fetch → verify signature, node, revision (also against the
//!   │                 newest verified index) and every digest → decrypt secrets
//!   └─ flash(prepared, target)
//!                     safety rules → confirm → probe → compose + write → read back
//! ```
//!
//! The engine never prints and never exits: it reports through [`Events`], stops
//! when its [`CancelToken`] is cancelled (wiping the card once anything was
//! written), and fails with an [`EngineError`] that carries its exit code and a
//! hint. Shells decide only how to show these.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod aligned;
pub mod cancel;
pub mod device;
pub mod error;
pub mod events;
pub mod exit;
mod fetch;
pub mod flash;
mod lab;
pub mod medium;
mod node;
pub mod settings;
pub mod source;

use std::path::{Path, PathBuf};

use metis_core::oci::{self, Layout, Registry};
use metis_core::trust::{SeenRevisions, TrustedKeys};

pub use cancel::CancelToken;
pub use error::EngineError;
pub use events::{Event, Events, Notice, Phase};
pub use exit::Exit;
pub use lab::{CacheState, LabNode, LabNodes};
pub use node::{FlashOptions, PrepareOptions, Prepared};
pub use settings::{Settings, SetupRequest};
pub use source::{RegistryFlags, RegistryLocation, Source};

/// How to open the engine: what the CLI's flags (or the GUI) say; everything
/// left out comes from the operator's settings.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The registry, if named.
    pub registry: RegistryFlags,
    /// Never open a network connection: the cache alone.
    pub offline: bool,
    /// The cache directory [default: `$METIS_CACHE`, else the platform's].
    pub cache: Option<PathBuf>,
    /// Extra signing keys to trust besides the pinned ones.
    pub trust_keys: Vec<PathBuf>,
    /// The config directory [default: `<config dir>/metis`].
    pub config_dir: Option<PathBuf>,
}

/// The operator's flow over one registry, cache and set of pinned keys.
pub struct Engine {
    options: EngineOptions,
    config_dir: PathBuf,
    settings: Settings,
    source: Source,
    cache: Layout,
    registry: Option<Registry>,
    events: Events,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("source", &self.source)
            .field("cache", &self.cache.dir())
            .field("offline", &self.options.offline)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Resolves the registry and opens the cache. Offline, no socket is ever opened.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoRegistry`] when nothing names a registry (online);
    /// settings, flag or cache problems.
    pub fn open(options: EngineOptions, events: Events) -> Result<Self, EngineError> {
        let config_dir = match &options.config_dir {
            Some(d) => d.clone(),
            None => settings::config_dir()?,
        };
        let settings = Settings::load(&config_dir)?;
        let source = Source::resolve(&options.registry, &settings, options.offline)?;
        let cache_dir = oci::cache_dir(options.cache.as_deref())
            .map_err(|e| EngineError::registry("the cache", e))?;
        let cache = Layout::open_or_create(&cache_dir).map_err(|e| {
            EngineError::registry(format!("opening the cache {}", cache_dir.display()), e)
        })?;
        let registry = match (&source.location, options.offline) {
            (Some(location), false) => {
                if let RegistryLocation::Layout(dir) = location {
                    // Opening a layout creates it; a mistyped path should not.
                    if !dir.join("index.json").exists() {
                        return Err(EngineError::BadInput(format!(
                            "{} is not an OCI image layout (no index.json): check the registry \
                             (--registry, or `metis-flash setup`)",
                            dir.display()
                        )));
                    }
                }
                Some(Registry::open_at(location, &source.options).map_err(|e| {
                    EngineError::registry(format!("opening the registry {location}"), e)
                })?)
            }
            _ => None,
        };
        Ok(Engine {
            options,
            config_dir,
            settings,
            source,
            cache,
            registry,
            events,
        })
    }

    /// The resolved registry source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The operator's settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The offline cache.
    pub fn cache(&self) -> &Layout {
        &self.cache
    }

    /// Where settings, pinned keys and seen revisions live.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Whether the engine works from the cache alone.
    pub fn offline(&self) -> bool {
        self.registry.is_none()
    }

    fn keys(&self) -> Result<TrustedKeys, EngineError> {
        settings::trusted_keys(&self.config_dir, &self.options.trust_keys)
    }

    /// The operator's record of seen revisions, with any copy an older version kept
    /// in the cache folded in.
    fn seen(&self) -> Result<SeenRevisions, EngineError> {
        let verify = |e| EngineError::verification("the record of seen revisions", e);
        let mut seen = SeenRevisions::load(&self.config_dir).map_err(verify)?;
        let legacy = SeenRevisions::legacy_path(self.cache.dir());
        if seen.migrate(&legacy).map_err(verify)? {
            self.events.info(format!(
                "moved the record of seen revisions from {} to {}",
                legacy.display(),
                seen.path().display()
            ));
        }
        Ok(seen)
    }
}
