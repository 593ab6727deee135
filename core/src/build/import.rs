//! `metis-build golden import`: a prepared vendor image becomes a class's
//! golden image.
//!
//! The file is copied (sparse) into the inventory's `golden/` directory under
//! a name that carries the class and the first 12 hex digits of its digest,
//! its SHA-256 is checked against the one the operator gives (the vendor's
//! `SHA256SUMS`, or the one they computed when they prepared it), and the image
//! is checked against the golden-image contract (docs/golden-images.md) for
//! that class: the seed and root partitions the class names, cloud-init, k3s
//! installed but not enabled, no SSH host keys, an empty machine id. Only an
//! image that passes is kept; [`pin_golden`] then points the class at it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::HashingReader;
use thiserror::Error;

use crate::image::golden::{copy_sparse, CopyError, GoldenError, GoldenImage};
use crate::image::partition::{Filesystem, PartitionError, PartitionTable};
use crate::image::rootfs::{self, RootfsError};
use crate::inventory::{Class, Golden, Inventory};

/// Errors importing or pinning a golden image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The inventory has no such class.
    #[error("no class `{class}` in {dir}; the classes are: {known}")]
    UnknownClass {
        /// The class asked for.
        class: String,
        /// The inventory's classes directory.
        dir: PathBuf,
        /// The classes there, comma-separated.
        known: String,
    },
    /// The given digest is not a SHA-256.
    #[error("--sha256 {given:?} is not 64 hex digits; give the image's SHA-256 (e.g. from the vendor's SHA256SUMS)")]
    BadDigest {
        /// What was given.
        given: String,
    },
    /// The file is not the one the digest names.
    #[error(
        "{path} has sha256 {actual}, not the {expected} you gave: the download is corrupt or the \
         sha256 belongs to another file; compare with the vendor's SHA256SUMS and download again"
    )]
    DigestMismatch {
        /// The file given.
        path: PathBuf,
        /// The digest given.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// Reading or writing a file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Opening (decompressing) the image.
    #[error(transparent)]
    Golden(#[from] GoldenError),
    /// Its partition table.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Reading its root filesystem.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The image breaks the golden-image contract for the class.
    #[error(
        "{path} cannot be class `{class}`'s golden image (docs/golden-images.md, \"The contract\"):\n{}\n  \
         hint: prepare the image so it keeps the contract, then import it again; nothing was kept",
        .findings.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n")
    )]
    Contract {
        /// The file given.
        path: PathBuf,
        /// The class.
        class: String,
        /// Every broken rule, one line each.
        findings: Vec<String>,
    },
    /// The class file could not be re-pinned.
    #[error("{path}: {what}")]
    Pin {
        /// The class file.
        path: PathBuf,
        /// Why, and what to do.
        what: String,
    },
}

/// A golden image kept in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Where it is kept, relative to the inventory directory (what the class's
    /// `golden.path` names).
    pub path: PathBuf,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes (as kept, compressed or not).
    pub size: u64,
    /// Whether the same image was already kept there (nothing was copied).
    pub already_kept: bool,
}

/// Copies `file` into `inv`'s `golden/` directory as `class`'s golden image,
/// after checking its digest against `sha256` and the image against the
/// contract. Nothing is kept when either check fails.
pub fn import_golden(
    inv: &Inventory,
    class: &str,
    file: &Path,
    sha256: &str,
) -> Result<Imported, ImportError> {
    let c = inv
        .classes
        .get(class)
        .ok_or_else(|| ImportError::UnknownClass {
            class: class.to_owned(),
            dir: inv.dir.join("classes"),
            known: inv.classes.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    let expected = sha256.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImportError::BadDigest {
            given: sha256.to_owned(),
        });
    }
    let rel = PathBuf::from("golden").join(stored_name(class, &expected, file));
    let dest = inv.dir.join(&rel);
    let dir = inv.dir.join("golden");
    std::fs::create_dir_all(&dir).map_err(|source| ImportError::Io {
        what: "cannot create",
        path: dir.clone(),
        source,
    })?;

    // An earlier import of the same image: opening it checks its digest once.
    let existing = if dest.exists() {
        match GoldenImage::open(&dest, &expected) {
            Ok(golden) => Some(golden),
            Err(GoldenError::DigestMismatch { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let already_kept = existing.is_some();
    let (golden, temp) = match existing {
        Some(golden) => (golden, None),
        None => {
            let mut temp = tempfile::Builder::new()
                .prefix(".import-")
                .tempfile_in(&dir)
                .map_err(|source| ImportError::Io {
                    what: "cannot create a file in",
                    path: dir.clone(),
                    source,
                })?;
            let temp_path = temp.path().to_owned();
            let actual = copy_sparse_hashing(file, temp.as_file_mut(), &temp_path)?;
            if actual != expected {
                return Err(ImportError::DigestMismatch {
                    path: file.to_owned(),
                    expected,
                    actual,
                });
            }
            (GoldenImage::open(&temp_path, &expected)?, Some(temp))
        }
    };
    let findings = contract_findings(c, &golden)?;
    drop(golden);
    if !findings.is_empty() {
        return Err(ImportError::Contract {
            path: file.to_owned(),
            class: class.to_owned(),
            findings,
        });
    }
    if let Some(temp) = temp {
        // Images are not secret; tempfile creates 0600.
        set_readable(temp.as_file(), temp.path())?;
        temp.persist(&dest).map_err(|e| ImportError::Io {
            what: "cannot keep",
            path: dest.clone(),
            source: e.error,
        })?;
    }
    let size = std::fs::metadata(&dest)
        .map_err(|source| ImportError::Io {
            what: "cannot read",
            path: dest.clone(),
            source,
        })?
        .len();
    Ok(Imported {
        path: rel,
        sha256: expected,
        size,
        already_kept,
    })
}

/// `<class>-<first 12 hex of sha256>.img`, keeping a `.zst` or `.xz` suffix.
fn stored_name(class: &str, sha256: &str, file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let suffix = [".zst", ".xz"]
        .into_iter()
        .find(|s| name.ends_with(s))
        .unwrap_or("");
    format!("{class}-{}.img{suffix}", &sha256[..12])
}

#[cfg(unix)]
fn set_readable(file: &File, path: &Path) -> Result<(), ImportError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|source| ImportError::Io {
            what: "cannot set the mode of",
            path: path.to_owned(),
            source,
        })
}

#[cfg(not(unix))]
fn set_readable(_: &File, _: &Path) -> Result<(), ImportError> {
    Ok(())
}

/// Copies `src` to `out`, leaving holes for all-zero blocks, and returns the
/// SHA-256 of what was read.
fn copy_sparse_hashing(src: &Path, out: &mut File, out_path: &Path) -> Result<String, ImportError> {
    let read_err = |source| ImportError::Io {
        what: "cannot read",
        path: src.to_owned(),
        source,
    };
    let write_err = |source| ImportError::Io {
        what: "cannot write",
        path: out_path.to_owned(),
        source,
    };
    let mut reader = HashingReader::new(File::open(src).map_err(read_err)?);
    copy_sparse(&mut reader, out).map_err(|e| match e {
        CopyError::Read(e) => read_err(e),
        CopyError::Write(e) => write_err(e),
    })?;
    out.sync_all().map_err(write_err)?;
    Ok(reader.finish().0.hex())
}

/// Every rule of the golden-image contract `golden` breaks for class `c`, one
/// line each (empty when it keeps them all).
pub fn contract_findings(c: &Class, golden: &GoldenImage) -> Result<Vec<String>, ImportError> {
    let source = golden.source();
    let mut overlay = golden.overlay().map_err(|e| ImportError::Io {
        what: "cannot read",
        path: golden.raw_path().to_owned(),
        source: e,
    })?;
    let table = PartitionTable::read(&mut overlay, golden.size(), source)?;
    let mut findings = Vec::new();
    let seed = c.seed.selector.clone();
    if let Err(e) = table.find_with(&seed, Filesystem::Vfat) {
        findings.push(format!(
            "seed partition: {e} (rule 2: the class's seed names a FAT partition)"
        ));
    }
    let root_sel = c.root.clone();
    let root = match table.find_with(&root_sel, Filesystem::Ext4) {
        Ok(root) => root.clone(),
        Err(e) => {
            findings.push(format!(
                "root partition: {e} (rule 8: the class's root names the ext4 root)"
            ));
            return Ok(findings);
        }
    };
    let raw = golden.raw_path();

    let mut must_exist = vec![(
        "/usr/bin/cloud-init",
        "cloud-init is not installed (rule 3)",
    )];
    let mut must_not_exist = vec![
        (
            "/etc/ssh/ssh_host_ed25519_key",
            "ships an SSH host key (rule 6)",
        ),
        (
            "/etc/ssh/ssh_host_ecdsa_key",
            "ships an SSH host key (rule 6)",
        ),
        (
            "/etc/ssh/ssh_host_rsa_key",
            "ships an SSH host key (rule 6)",
        ),
    ];
    if c.k3s {
        must_exist.extend([
            ("/usr/local/bin/k3s", "k3s is not installed (rule 4)"),
            (
                "/etc/systemd/system/k3s.service",
                "the k3s server unit is missing (rule 4)",
            ),
            (
                "/etc/systemd/system/k3s-agent.service",
                "the k3s agent unit is missing (rule 4)",
            ),
        ]);
        must_not_exist.extend([
            (
                "/etc/systemd/system/multi-user.target.wants/k3s.service",
                "k3s.service is enabled; it must be installed but not enabled (rule 4)",
            ),
            (
                "/etc/systemd/system/multi-user.target.wants/k3s-agent.service",
                "k3s-agent.service is enabled; it must be installed but not enabled (rule 4)",
            ),
        ]);
    }
    let paths: Vec<&str> = must_exist
        .iter()
        .chain(&must_not_exist)
        .map(|(p, _)| *p)
        .collect();
    let exists = rootfs::root_paths_exist(raw, &root, &paths)?;
    let (present, absent) = exists.split_at(must_exist.len());
    for ((path, why), there) in must_exist.iter().zip(present) {
        if !there {
            findings.push(format!("{why}: no {path}"));
        }
    }
    for ((path, why), there) in must_not_exist.iter().zip(absent) {
        if *there {
            findings.push(format!("{why}: {path}"));
        }
    }
    if let Some(id) = rootfs::read_root_file(raw, &root, "/etc/machine-id")? {
        let text = String::from_utf8_lossy(&id);
        if !text.trim().is_empty() && text.trim() != "uninitialized" {
            findings.push(
                "/etc/machine-id is set; it must be empty so each node gets its own (rule 6)"
                    .into(),
            );
        }
    }
    Ok(findings)
}

/// Points `class`'s `golden:` at `imported`, in its class file, keeping every
/// other line. The inventory is loaded again afterwards; if it does not load
/// or does not pin the image, the file is put back as it was.
pub fn pin_golden(
    inv: &Inventory,
    class: &str,
    imported: &Imported,
) -> Result<PathBuf, ImportError> {
    let block = format!(
        "golden:\n  # imported by `metis-build golden import`\n  path: {}\n  sha256: {}\n",
        imported.path.display(),
        imported.sha256
    );
    pin_block(
        inv,
        class,
        &block,
        |g| matches!(g, Golden::Path { path, sha256 } if *path == imported.path && *sha256 == imported.sha256),
    )
}

/// Points `class`'s `golden:` at the golden image stored in the lab registry
/// as `reference` (see [`crate::image::golden_oci::push_golden`]), as [`pin_golden`] does.
pub fn pin_golden_oci(
    inv: &Inventory,
    class: &str,
    reference: &str,
    imported: &Imported,
) -> Result<PathBuf, ImportError> {
    let block = format!(
        "golden:\n  # imported by `metis-build golden import --push`; a local copy is\n  \
         # {} (sha256 {})\n  oci: {reference}\n",
        imported.path.display(),
        imported.sha256
    );
    pin_block(
        inv,
        class,
        &block,
        |g| matches!(g, Golden::Oci { reference: r } if r == reference),
    )
}

fn pin_block(
    inv: &Inventory,
    class: &str,
    block: &str,
    pinned_as_asked: impl Fn(&Golden) -> bool,
) -> Result<PathBuf, ImportError> {
    let classes = inv.dir.join("classes");
    let file = ["yaml", "yml"]
        .iter()
        .map(|ext| classes.join(format!("{class}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| ImportError::Pin {
            path: classes.join(format!("{class}.yaml")),
            what: "no such class file; pin the image by hand".into(),
        })?;
    let io = |what, source| ImportError::Io {
        what,
        path: file.clone(),
        source,
    };
    let before = std::fs::read_to_string(&file).map_err(|e| io("cannot read", e))?;
    let after =
        replace_top_level_block(&before, "golden", block).ok_or_else(|| ImportError::Pin {
            path: file.clone(),
            what: "has no top-level `golden:` key; add one and import again".into(),
        })?;
    std::fs::write(&file, &after).map_err(|e| io("cannot write", e))?;
    let pinned = match crate::lab::load(&inv.dir) {
        Ok(new) => new
            .classes
            .get(class)
            .is_some_and(|c| pinned_as_asked(&c.golden)),
        Err(_) => false,
    };
    if !pinned {
        std::fs::write(&file, &before).map_err(|e| io("cannot restore", e))?;
        return Err(ImportError::Pin {
            path: file,
            what: "re-pinning it did not give a loadable inventory (left unchanged); \
                   set `golden:` by hand and run `metis-build check`"
                .into(),
        });
    }
    Ok(file)
}

/// `text` with the top-level `key:` entry (its line and the indented, blank or
/// comment lines under it) replaced by `block`; `None` without such a key.
fn replace_top_level_block(text: &str, key: &str, block: &str) -> Option<String> {
    let mut out = String::new();
    let mut found = false;
    let mut inside = false;
    for line in text.lines() {
        let is_key = line
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'));
        if !found && is_key {
            found = true;
            inside = true;
            out.push_str(block);
            continue;
        }
        if inside {
            let t = line.trim_start();
            if line.starts_with([' ', '\t']) || t.is_empty() {
                continue;
            }
            inside = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_block_is_replaced_and_the_rest_kept() {
        let text = "description: x\n# about the image\ngolden:\n  # a note\n  path: old.img\n\n  sha256: aa\nseed:\n  label: system-boot\n";
        let out = replace_top_level_block(text, "golden", "golden:\n  path: new.img\n").unwrap();
        assert_eq!(
            out,
            "description: x\n# about the image\ngolden:\n  path: new.img\nseed:\n  label: system-boot\n"
        );
        let flow = "golden: {path: a.img, sha256: bb}\nk3s: true\n";
        assert_eq!(
            replace_top_level_block(flow, "golden", "golden:\n  path: b\n").unwrap(),
            "golden:\n  path: b\nk3s: true\n"
        );
        assert!(replace_top_level_block("goldenx: 1\n", "golden", "").is_none());
        assert!(replace_top_level_block("seed:\n  golden: 1\n", "golden", "").is_none());
    }

    #[test]
    fn stored_names_carry_class_digest_and_compression() {
        let sha = "0123456789abcdef".repeat(4);
        assert_eq!(
            stored_name(
                "rpi5-ubuntu",
                &sha,
                Path::new("/x/ubuntu-24.04-preinstalled.img.XZ")
            ),
            "rpi5-ubuntu-0123456789ab.img.xz"
        );
        assert_eq!(
            stored_name("amd64-agents", &sha, Path::new("disk.raw")),
            "amd64-agents-0123456789ab.img"
        );
    }
}
