//! Where artifacts come from: the registry location (parsed once into
//! [`RegistryLocation`]) and the order in which flags, an inventory (maintainers
//! only, its `registry:` block alone) and the operator's settings name it.

use std::path::{Path, PathBuf};

pub use metis_core::location::RegistryLocation;
use metis_core::oci::RegistryOptions;

use crate::error::EngineError;
pub use crate::settings::parse_location;
use crate::settings::Settings;

/// How the caller names the registry (the CLI's flags, the GUI's settings).
#[derive(Debug, Clone, Default)]
pub struct RegistryFlags {
    /// `HOST[:PORT]/PREFIX` or `oci:DIR`.
    pub registry: Option<String>,
    /// The repository prefix.
    pub prefix: Option<String>,
    /// An extra CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (loopback only).
    pub insecure_http: bool,
    /// An inventory whose `registry:` block names the registry (maintainers).
    pub inventory: Option<PathBuf>,
}

/// The registry resolved: where, under which prefix, how to reach it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The registry; `None` offline when nothing names one (only the cache is used).
    pub location: Option<RegistryLocation>,
    /// The repository prefix.
    pub prefix: String,
    /// How to reach it.
    pub options: RegistryOptions,
}

impl Source {
    /// Resolves the registry: the flags, else the inventory named (its
    /// `registry:` block only), else the settings. Offline, a missing registry is
    /// fine: the cache is keyed by prefix alone.
    pub fn resolve(
        flags: &RegistryFlags,
        settings: &Settings,
        offline: bool,
    ) -> Result<Self, EngineError> {
        let (mut location, mut prefix, mut ca_file) = (None, None, None);
        if let Some(text) = &flags.registry {
            let (l, p) = parse_location(text)?;
            location = Some(l);
            prefix = p;
        } else if let Some(dir) = &flags.inventory {
            let (l, p, ca) = from_inventory(dir)?;
            location = Some(l);
            prefix = Some(p);
            ca_file = ca;
        } else if let Some(text) = &settings.registry {
            let (l, p) = parse_location(text)?;
            location = Some(l);
            prefix = p.or_else(|| settings.prefix.clone());
            ca_file = settings.ca_file.clone();
        }
        if location.is_none() && !offline {
            return Err(EngineError::NoRegistry);
        }
        if flags.prefix.is_some() {
            prefix = flags.prefix.clone();
        }
        let prefix = prefix
            .or_else(|| settings.prefix.clone())
            .unwrap_or_else(|| "metis".into());
        if flags.ca_file.is_some() {
            ca_file = flags.ca_file.clone();
        }
        Ok(Source {
            location,
            prefix,
            options: RegistryOptions {
                ca_file,
                insecure_http: flags.insecure_http,
                ..Default::default()
            },
        })
    }

    /// Whether a demo key or identity is acceptable (see
    /// [`RegistryLocation::is_test_registry`]); offline with no registry named, no.
    pub fn is_test_registry(&self) -> bool {
        self.location
            .as_ref()
            .is_some_and(RegistryLocation::is_test_registry)
    }
}

/// The registry an inventory's `metis.yaml` names (its `registry:` block alone;
/// the inventory is never loaded or rendered here).
fn from_inventory(dir: &Path) -> Result<(RegistryLocation, String, Option<PathBuf>), EngineError> {
    let registry = metis_core::lab_registry::read_registry(dir)
        .map_err(|e| EngineError::BadInput(e.to_string()))?;
    let (location, _) = parse_location(&registry.location)?;
    Ok((location, registry.prefix, registry.ca_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_made_absolute() {
        let (l, p) = parse_location("oci:/srv/reg").unwrap();
        // Absolute on this OS (Windows adds the current drive: Z:\srv\reg under Wine).
        let srv_reg = std::path::absolute("/srv/reg").unwrap();
        assert_eq!(l, RegistryLocation::Layout(srv_reg.clone()));
        assert_eq!(l.to_string(), format!("oci:{}", srv_reg.display()));
        assert!(p.is_none());
        let (l, _) = parse_location("oci:relative/reg").unwrap();
        assert_eq!(
            l,
            RegistryLocation::Layout(std::path::absolute("relative/reg").unwrap())
        );
        let err = parse_location("https://harbor/metis").unwrap_err();
        assert!(matches!(err, EngineError::Location(_)), "{err:?}");
        assert_eq!(err.exit(), crate::exit::Exit::BadInput);
    }

    #[test]
    fn flags_win_over_settings_and_offline_needs_no_registry() {
        let settings = Settings {
            registry: Some("harbor.lab".into()),
            prefix: Some("lab".into()),
            ca_file: Some("/c/ca.pem".into()),
            ..Default::default()
        };
        let s = Source::resolve(&RegistryFlags::default(), &settings, false).unwrap();
        assert_eq!(
            s.location,
            Some(RegistryLocation::Remote("harbor.lab".into()))
        );
        assert_eq!(s.prefix, "lab");
        assert_eq!(s.options.ca_file.as_deref(), Some(Path::new("/c/ca.pem")));
        let flags = RegistryFlags {
            registry: Some("oci:/tmp/r".into()),
            ..Default::default()
        };
        let s = Source::resolve(&flags, &settings, false).unwrap();
        assert_eq!(
            s.location,
            Some(RegistryLocation::Layout(
                std::path::absolute("/tmp/r").unwrap()
            ))
        );
        assert_eq!(s.prefix, "lab");
        let none = Settings::default();
        assert!(matches!(
            Source::resolve(&RegistryFlags::default(), &none, false),
            Err(EngineError::NoRegistry)
        ));
        let s = Source::resolve(&RegistryFlags::default(), &none, true).unwrap();
        assert!(s.location.is_none() && s.prefix == "metis");
    }
}
