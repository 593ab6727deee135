//! The operator's settings: `<config dir>/metis/settings.json`, written once by
//! `metis-flash setup` (or the GUI's first run) from a lab profile or flags, so
//! that `metis-flash titan-db` needs no flag afterwards.
//!
//! ```text
//! <config dir>/metis/            (~/.config/metis, %APPDATA%\metis)
//!   settings.json                lab, registry, prefix, CA path, identity path
//!   lab-ca.pem                   the lab CA from the profile
//!   trusted-keys/*.pub           pinned signing keys (trust::TrustedKeys)
//!   seen.json                    newest revisions verified (trust::SeenRevisions)
//! ```
//!
//! Settings hold no secret: the identity is a path, never its contents.

use std::path::{Path, PathBuf};

use metis_core::profile::LabProfile;
use metis_core::trust::{PublicKey, TrustedKeys};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use metis_core::location::RegistryLocation;

/// Parses `HOST[:PORT][/PREFIX]` or `oci:DIR` as the engine keeps it: an
/// `oci:` directory made absolute, so that saved settings mean the same
/// directory wherever the operator runs metis-flash from.
pub fn parse_location(text: &str) -> Result<(RegistryLocation, Option<String>), EngineError> {
    let (location, prefix) = RegistryLocation::parse_with_prefix(text)?;
    Ok((location.absolute(), prefix))
}

/// The settings file's name in the config directory.
pub const SETTINGS_FILE: &str = "settings.json";
/// The lab CA's file name in the config directory.
pub const CA_FILE: &str = "lab-ca.pem";

/// What `settings.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The lab's name, shown to the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// The registry: `HOST[:PORT]` or `oci:DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The repository prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The lab CA (PEM) trusted besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The operator's identity file (age identity or SSH private key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
}

/// The operator's config directory: `<config dir>/metis`.
pub fn config_dir() -> Result<PathBuf, EngineError> {
    metis_core::trust::SeenRevisions::default_dir().ok_or_else(|| {
        EngineError::Settings(
            "this system has no per-user config directory (set XDG_CONFIG_HOME or HOME)".into(),
        )
    })
}

impl Settings {
    /// Loads `<dir>/settings.json`; a missing file is empty settings.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join(SETTINGS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(EngineError::Settings(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Settings(format!(
                "{}: {e}; run `metis-flash setup` again (it rewrites the file)",
                path.display()
            ))
        })
    }

    /// Writes `<dir>/settings.json` (through a temporary file, so a crash leaves
    /// the old settings).
    pub fn save(&self, dir: &Path) -> Result<(), EngineError> {
        let json = serde_json::to_string_pretty(self).expect("settings serialize");
        write_atomically(&dir.join(SETTINGS_FILE), format!("{json}\n").as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail =
        |e: std::io::Error| EngineError::Settings(format!("writing {}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut temp, bytes).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// What `setup` is asked to write: a profile's contents, or the same from flags.
#[derive(Debug, Clone, Default)]
pub struct SetupRequest {
    /// The lab's name.
    pub lab: Option<String>,
    /// The registry (`HOST[:PORT]/PREFIX` or `oci:DIR`; a prefix given here wins
    /// over `prefix`).
    pub registry: Option<String>,
    /// The repository prefix.
    pub prefix: Option<String>,
    /// The lab CA, PEM text.
    pub ca_pem: Option<String>,
    /// The signing keys to pin.
    pub keys: Vec<PublicKey>,
    /// The identity path to remember.
    pub identity: Option<PathBuf>,
}

impl SetupRequest {
    /// The request a lab profile makes.
    pub fn from_profile(profile: &LabProfile) -> Result<Self, EngineError> {
        let keys = profile
            .keys()
            .map_err(|e| EngineError::Settings(format!("the lab profile: {e}")))?;
        Ok(SetupRequest {
            lab: Some(profile.lab.clone()),
            registry: Some(profile.registry.clone()),
            prefix: Some(profile.prefix.clone()),
            ca_pem: profile.ca_certificate.clone(),
            keys,
            identity: None,
        })
    }

    /// Each key's fingerprint, for the operator to compare before confirming.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(PublicKey::fingerprint).collect()
    }

    /// Writes the settings into `dir` (keeping what the request does not name),
    /// the CA beside them, and pins the keys. Returns the settings written.
    pub fn apply(&self, dir: &Path) -> Result<Settings, EngineError> {
        let mut settings = Settings::load(dir)?;
        if let Some(lab) = &self.lab {
            settings.lab = Some(lab.clone());
        }
        if let Some(registry) = &self.registry {
            let (location, prefix) = parse_location(registry)?;
            settings.registry = Some(location.to_string());
            if let Some(p) = prefix.or_else(|| self.prefix.clone()) {
                settings.prefix = Some(p);
            }
        } else if let Some(p) = &self.prefix {
            settings.prefix = Some(p.clone());
        }
        if let Some(pem) = &self.ca_pem {
            let path = dir.join(CA_FILE);
            write_atomically(&path, pem.as_bytes())?;
            settings.ca_file = Some(path);
        }
        if let Some(identity) = &self.identity {
            let absolute = std::path::absolute(identity).unwrap_or_else(|_| identity.clone());
            settings.identity = Some(absolute);
        }
        let keys_dir = dir.join("trusted-keys");
        for key in &self.keys {
            pin(&keys_dir, key)?;
        }
        settings.save(dir)?;
        Ok(settings)
    }
}

/// Pins `key` in `keys_dir` as `<fingerprint>.pub` (what `trust add` does).
fn pin(keys_dir: &Path, key: &PublicKey) -> Result<(), EngineError> {
    let path = keys_dir.join(format!("{}.pub", key.fingerprint()));
    write_atomically(&path, key.to_pem().as_bytes())
}

/// The pinned keys in `dir/trusted-keys`, plus `extra` key files.
pub fn trusted_keys(dir: &Path, extra: &[PathBuf]) -> Result<TrustedKeys, EngineError> {
    let keys_dir = dir.join("trusted-keys");
    let mut keys = TrustedKeys::load_dir(&keys_dir)
        .map_err(|e| EngineError::Settings(format!("reading {}: {e}", keys_dir.display())))?
        .keys()
        .to_vec();
    for k in extra {
        keys.push(
            PublicKey::read(k)
                .map_err(|e| EngineError::BadInput(format!("reading {}: {e}", k.display())))?,
        );
    }
    if keys.is_empty() {
        return Err(EngineError::NoTrustedKey {
            dir: keys_dir.clone(),
        });
    }
    Ok(TrustedKeys::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_keep_what_setup_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let first = SetupRequest {
            lab: Some("lab.home.arpa".into()),
            registry: Some("harbor.lab:8443/metis".into()),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into()),
            ..Default::default()
        }
        .apply(dir.path())
        .unwrap();
        assert_eq!(first.registry.as_deref(), Some("harbor.lab:8443"));
        assert_eq!(first.prefix.as_deref(), Some("metis"));
        assert!(dir.path().join(CA_FILE).is_file());
        let second = SetupRequest {
            identity: Some(dir.path().join("id.txt")),
            ..Default::default()
        }
        .apply(dir.path())
        .unwrap();
        assert_eq!(second.registry, first.registry);
        assert_eq!(second.identity, Some(dir.path().join("id.txt")));
        assert_eq!(Settings::load(dir.path()).unwrap(), second);
    }

    #[test]
    fn a_damaged_settings_file_names_itself_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), "{not json").unwrap();
        let e = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("settings.json") && e.contains("metis-flash setup"),
            "{e}"
        );
    }
}
