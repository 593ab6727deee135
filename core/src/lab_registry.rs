//! The lab's registry as an inventory's `metis.yaml` names it, read on its own.
//!
//! A maintainer flashing from a checkout (`metis-flash --inventory DIR`) needs
//! only where the lab publishes: the `registry:` block. [`read_registry`] reads
//! that block and nothing else — it neither loads nor validates the rest of the
//! inventory (that is `lab::load`, behind the `build` feature), so other
//! keys, classes and nodes are ignored and a half-edited node file cannot stop
//! a flash. Inside the block, unknown keys are refused: a misspelt `ca_file`
//! would otherwise surface later as a TLS error far from its cause.
//!
//! ```no_run
//! let lab = metis_core::lab_registry::read_registry(std::path::Path::new("inventory"))?;
//! println!("{} {}", lab.location, lab.prefix);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The lab registry, with paths resolved against the inventory directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRegistry {
    /// Where the registry is, for [`Registry::open`](crate::oci::Registry::open):
    /// `host[:port]`, or `oci:DIR` with a relative `DIR` joined to the
    /// inventory directory.
    pub location: String,
    /// Repository prefix, e.g. `metis` → `<host>/metis/nodes/<node>`.
    pub prefix: String,
    /// The lab's extra CA certificate (PEM), joined to the inventory directory.
    pub ca_file: Option<PathBuf>,
}

impl LabRegistry {
    /// The registry's host, or `None` for an OCI image-layout directory (`oci:`).
    pub fn host(&self) -> Option<&str> {
        crate::location::host(&self.location)
    }
}

/// Why the registry block could not be read. Each names `metis.yaml`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabRegistryError {
    /// `metis.yaml` could not be read.
    #[error("cannot read {}: {source}; is {} an inventory directory (it holds metis.yaml)?", path.display(), path.parent().unwrap_or(Path::new(".")).display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `metis.yaml` is not YAML, or its `registry:` block is missing or malformed.
    #[error("{}{}: {reason}; fix the `registry:` block (host, prefix, optional ca_file; see docs/inventory.md)", path.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column (1-based), when the YAML parser gave them.
        at: Option<(u64, u64)>,
        /// What is wrong.
        reason: String,
    },
}

/// `metis.yaml` as far as the registry goes: every other key is ignored.
#[derive(Deserialize)]
struct LabFile {
    registry: RegistryBlock,
}

/// The `registry:` block, the same keys `lab::load` accepts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryBlock {
    host: String,
    prefix: String,
    #[serde(default)]
    ca_file: Option<String>,
}

/// Reads the `registry:` block of `<inventory_dir>/metis.yaml`.
pub fn read_registry(inventory_dir: &Path) -> Result<LabRegistry, LabRegistryError> {
    let path = inventory_dir.join("metis.yaml");
    let text = std::fs::read_to_string(&path).map_err(|source| LabRegistryError::Read {
        path: path.clone(),
        source,
    })?;
    let file: LabFile = serde_saphyr::from_str(&text).map_err(|e| {
        // The crate appends " at line N, column M" and a snippet; the position
        // goes in front instead, as `check` writes it.
        let raw = e.without_snippet().to_string();
        let reason = match raw.rfind(" at line ") {
            Some(i) => raw[..i].to_owned(),
            None => raw,
        };
        LabRegistryError::Invalid {
            path: path.clone(),
            at: e.location().map(|l| (l.line(), l.column())),
            reason,
        }
    })?;
    let block = file.registry;
    if block.host.trim().is_empty() {
        return Err(LabRegistryError::Invalid {
            path,
            at: None,
            reason: "registry.host is empty".into(),
        });
    }
    Ok(LabRegistry {
        location: crate::location::in_inventory(inventory_dir, &block.host),
        prefix: block.prefix,
        ca_file: block.ca_file.map(|f| inventory_dir.join(f)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (tempfile::TempDir, Result<LabRegistry, LabRegistryError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metis.yaml"), yaml).unwrap();
        let lab = read_registry(dir.path());
        (dir, lab)
    }

    #[test]
    fn locations() {
        let inv = Path::new("/lab/inventory");
        for (host, expected) in [
            ("oci:../out/registry", "oci:/lab/inventory/../out/registry"),
            ("oci:/srv/registry", "oci:/srv/registry"),
            ("harbor.lab.home.arpa", "harbor.lab.home.arpa"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(crate::location::in_inventory(inv, host), expected, "{host}");
        }
    }

    #[test]
    fn registry_block_with_the_rest_ignored() {
        // The rest of the file is not an inventory the loader would accept
        // (unknown top-level keys, a broken signing block): not our business.
        let (dir, lab) = read(
            "registry:\n  host: harbor.lab.home.arpa:443\n  prefix: lab/metis\n  ca_file: certs/lab-ca.pem\n\
             signing: [not, a, mapping]\nfuture_key: {x: 1}\n",
        );
        let lab = lab.unwrap();
        assert_eq!(lab.location, "harbor.lab.home.arpa:443");
        assert_eq!(lab.host(), Some("harbor.lab.home.arpa:443"));
        assert_eq!(lab.prefix, "lab/metis");
        assert_eq!(lab.ca_file, Some(dir.path().join("certs/lab-ca.pem")));
    }

    #[test]
    fn oci_directory_relative_to_the_inventory() {
        let (dir, lab) = read("registry:\n  host: oci:../out/registry\n  prefix: metis\n");
        let lab = lab.unwrap();
        assert_eq!(
            lab.location,
            format!("oci:{}", dir.path().join("../out/registry").display())
        );
        assert_eq!(lab.host(), None);
        assert_eq!(lab.ca_file, None);
    }

    #[test]
    fn the_example_lab() {
        let inv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory");
        let lab = read_registry(&inv).unwrap();
        assert_eq!(
            lab.location,
            format!("oci:{}", inv.join("../out/registry").display())
        );
        assert_eq!(lab.prefix, "metis");
    }

    #[test]
    fn errors_name_the_file_and_what_to_do() {
        for (yaml, expected) in [
            ("signing: {}\n", "metis.yaml:1:1: missing field `registry`;"),
            (
                "registry:\n  host: harbor.lab\n",
                "metis.yaml:2:3: missing field `prefix`;",
            ),
            (
                "registry:\n  host: harbor.lab\n  prefix: m\n  ca_flie: x.pem\n",
                "metis.yaml:4:3: unknown field `ca_flie`, expected one of host, prefix, ca_file;",
            ),
            (
                "registry:\n  host: ''\n  prefix: m\n",
                "metis.yaml: registry.host is empty;",
            ),
            ("registry: [\n", "metis.yaml:1:"),
        ] {
            let (_dir, lab) = read(yaml);
            let err = lab.unwrap_err();
            assert!(
                matches!(err, LabRegistryError::Invalid { .. }),
                "{yaml}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(expected), "{yaml}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert!(msg.ends_with("see docs/inventory.md)"), "{msg}");
        }
        let dir = tempfile::tempdir().unwrap();
        let msg = read_registry(dir.path()).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read "), "{msg}");
        assert!(msg.contains("metis.yaml"), "{msg}");
        assert!(msg.contains("an inventory directory"), "{msg}");
    }
}
