//! Files outside the YAML that the inventory must already have: sealed
//! secrets and local golden images.

use std::path::{Path, PathBuf};

use super::cx::Cx;
use crate::inventory::diag::{Diagnostic, Pos};
use crate::inventory::schema;

impl Cx {
    /// Every class pinned to a local golden image needs the file: without it
    /// no card of the class can be built. Only presence and readability are
    /// checked (the digest is checked where the image is read, in full);
    /// `oci:` and `url:` pins need the network and are left to `publish`.
    pub(super) fn golden_files(
        &self,
        class_files: &[(String, PathBuf, schema::ClassFile)],
    ) -> Vec<Diagnostic> {
        let mut findings = Vec::new();
        for (class, file, f) in class_files {
            let g = &f.golden;
            let Some(path) = g
                .path
                .as_ref()
                .filter(|_| g.oci.is_none() && g.url.is_none())
            else {
                continue;
            };
            let full = self.dir.join(&path.value);
            let problem = match std::fs::metadata(&full) {
                Ok(m) if m.is_file() => match std::fs::File::open(&full) {
                    Ok(_) => continue,
                    Err(e) => format!("cannot be read: {e}"),
                },
                Ok(_) => "is not a file".to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                Err(e) => format!("cannot be read: {e}"),
            };
            findings.push(
                Diagnostic::error(
                    file,
                    Pos::of(path),
                    format!(
                        "golden image `{}` of class `{class}` {problem} ({})",
                        path.value,
                        full.display()
                    ),
                )
                .hint(format!(
                    "run `tests/golden/gen.sh {}` (the example's stand-ins) or `metis-build golden import {class} FILE --sha256 HEX --pin`",
                    full.parent().unwrap_or(&self.dir).display()
                )),
            );
        }
        findings
    }

    /// Every node needs its sealed source `secrets/<node>.age`, and a lab with
    /// nodes needs `secrets/cluster.age`: without them no card can be built.
    pub(super) fn sealed_sources(&mut self, node_files: &[(String, PathBuf, schema::NodeFile)]) {
        let hint = format!(
            "run `metis-build secrets init --inventory {}` (it creates only what is missing)",
            self.dir.display()
        );
        for (name, path, _) in node_files {
            if name == "cluster" {
                self.err(
                    path,
                    Pos::FILE,
                    "a node cannot be named `cluster`: secrets/cluster.age holds the lab-wide secrets",
                    "rename the node file",
                );
                continue;
            }
            let sealed = Path::new("secrets").join(format!("{name}.age"));
            if !self.dir.join(&sealed).is_file() {
                self.err(
                    path,
                    Pos::FILE,
                    format!(
                        "node `{name}` has no sealed secrets ({} is missing)",
                        sealed.display()
                    ),
                    hint.clone(),
                );
            }
        }
        if !node_files.is_empty() && !self.dir.join("secrets/cluster.age").is_file() {
            self.err(
                Path::new("metis.yaml"),
                Pos::FILE,
                "the lab has no sealed cluster secrets (secrets/cluster.age is missing)",
                hint,
            );
        }
    }
}
