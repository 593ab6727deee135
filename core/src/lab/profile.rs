//! The lab profile an inventory exports for operators' laptops
//! (`metis-build operator-profile`): registry, prefix, lab CA and signing
//! public keys, read from `metis.yaml` and the files it names. The format
//! itself is [`crate::profile`]; this side only fills it in.

use std::path::{Path, PathBuf};

use crate::location::{self, RegistryLocation};
use crate::profile::{LabProfile, ProfileError, PROFILE_FORMAT};
use crate::trust::{KeyError, PublicKey, DEMO_KEY_FINGERPRINT};

use crate::inventory::{is_test_registry, Inventory};

/// A profile ready to hand out, and what the maintainer should know first.
#[derive(Debug, Clone)]
pub struct ExportedProfile {
    /// The profile; [`LabProfile::parse`] accepts its JSON.
    pub profile: LabProfile,
    /// Findings worth a look before giving it to operators (a demo key used
    /// with a real registry), one sentence each with what to do.
    pub warnings: Vec<String>,
}

/// Why no profile could be exported. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileExportError {
    /// A file `metis.yaml` names (CA, public key) could not be read.
    #[error("cannot read {path}: {source}; fix the path in metis.yaml (relative to the inventory directory) or restore the file")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A `signing.public_keys` file is not a cosign public key.
    #[error("{path} is not a cosign public key: {source}; list the `cosign.pub` of the lab's key pair in signing.public_keys (`metis-build keys generate` makes one)")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: KeyError,
    },
    /// The `registry.ca_file` is not PEM certificates only.
    #[error("{path} is not a PEM CA certificate: {reason}; point registry.ca_file at the lab CA's certificate (`-----BEGIN CERTIFICATE-----`), never at a key")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: crate::profile::CertificateError,
    },
    /// The lab name asked for is empty or not printable.
    #[error("the lab name {0:?} is empty or not printable; pass the name operators should see, e.g. --lab lab.home.arpa")]
    LabName(String),
    /// The absolute form of an `oci:` registry directory could not be found.
    #[error("cannot make the registry directory {path} absolute: {source}; write `registry.host: oci:/absolute/dir` in metis.yaml")]
    Location {
        /// The directory as the inventory names it.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The profile as assembled does not pass the reader's own checks (a lab
    /// name given on the command line, say).
    #[error("the profile would not be accepted by metis-flash: {0}")]
    Invalid(#[source] ProfileError),
}

/// The operator profile of `inv`: named `lab` (default: the cluster's DNS
/// domain), with the registry (an `oci:` directory made absolute, resolved
/// against the inventory directory as [`Inventory::registry_location`] does),
/// the prefix, the CA file's certificates inline and every signing public key.
/// Only public material is read; the result parses with [`LabProfile::parse`].
pub fn operator_profile(
    inv: &Inventory,
    lab: Option<&str>,
) -> Result<ExportedProfile, ProfileExportError> {
    let lab = lab.unwrap_or(&inv.lab.cluster.domain);
    if lab.trim().is_empty() || lab.chars().any(char::is_control) {
        return Err(ProfileExportError::LabName(lab.to_owned()));
    }
    let mut warnings = Vec::new();
    let host = &inv.lab.registry.host;
    let registry = match inv.registry_location() {
        RegistryLocation::Layout(dir) => location::layout_name(&absolute(&dir)?),
        RegistryLocation::Remote(_) => host.clone(),
    };
    let ca_certificate = match &inv.lab.registry.ca_file {
        Some(file) => {
            let path = inv.dir.join(file);
            let pem = read(&path)?;
            crate::profile::check_certificates(&pem)
                .map_err(|reason| ProfileExportError::Certificate { path, reason })?;
            Some(pem)
        }
        None => None,
    };
    let mut public_keys = Vec::new();
    for file in &inv.lab.signing_public_keys {
        let path = inv.dir.join(file);
        let key = PublicKey::from_pem(&read(&path)?).map_err(|source| ProfileExportError::Key {
            path: path.clone(),
            source,
        })?;
        if key.fingerprint() == DEMO_KEY_FINGERPRINT && !is_test_registry(host) {
            warnings.push(format!(
                "{} is the example lab's DEMO signing key and the registry is `{host}`: its private half is public, anyone could sign cards these laptops would trust; generate the lab's own keys (see inventory/demo-keys/README.md) before handing out this profile",
                path.display()
            ));
        }
        // The canonical PEM of the key, not the file: no comment or stray
        // text of the file travels to the laptops.
        public_keys.push(key.to_pem());
    }
    let profile = LabProfile {
        format: PROFILE_FORMAT.to_owned(),
        lab: lab.to_owned(),
        registry,
        prefix: inv.lab.registry.prefix.clone(),
        ca_certificate,
        public_keys,
    };
    // What metis-flash will run on it, run here first.
    LabProfile::parse(profile.to_json().as_bytes()).map_err(ProfileExportError::Invalid)?;
    Ok(ExportedProfile { profile, warnings })
}

fn read(path: &Path) -> Result<String, ProfileExportError> {
    std::fs::read_to_string(path).map_err(|source| ProfileExportError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `dir` made absolute without requiring it to exist yet (the first publish
/// creates it): the deepest existing ancestor is resolved by the file system
/// (so `..` and symbolic links mean what they mean to the kernel), the rest
/// appended as written.
fn absolute(dir: &Path) -> Result<PathBuf, ProfileExportError> {
    let err = |source| ProfileExportError::Location {
        path: dir.to_owned(),
        source,
    };
    let dir = std::path::absolute(dir).map_err(err)?;
    let mut existing = dir.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                return Ok(rest.iter().rev().fold(real, |p, c| p.join(c)));
            }
            Err(e) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                // `..` as the last component, or the root itself, missing:
                // leave the absolute path as it is.
                _ if e.kind() == std::io::ErrorKind::NotFound => return Ok(dir),
                _ => return Err(err(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_rule_is_the_inventorys() {
        for s in [
            "metis",
            "lab/metis",
            "a",
            "a.b_c-d/e9",
            "",
            "Metis",
            "metis/",
            "/metis",
            "-metis",
            "metis-",
            "a//b",
            "me tis",
            "métis",
        ] {
            assert_eq!(
                crate::profile::is_repo_prefix(s),
                crate::inventory::rules::repo_prefix(s).is_ok(),
                "`{s}`"
            );
        }
    }

    #[test]
    fn absolute_resolves_what_exists_and_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("inv")).unwrap();
        assert_eq!(
            absolute(&real.join("inv/../out/registry")).unwrap(),
            real.join("out/registry")
        );
        std::fs::create_dir_all(real.join("out/registry")).unwrap();
        assert_eq!(
            absolute(&real.join("inv/../out/registry")).unwrap(),
            real.join("out/registry")
        );
    }
}
