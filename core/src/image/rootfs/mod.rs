//! Build-time edits of the ext4 root filesystem (the node's `/etc/machine-id`,
//! Armbian's first-run settings, …): files that must exist before systemd starts.
//!
//! No root, no mounts, no copy of the card: e2fsprogs does the ext4 work on a
//! metadata-only copy of the root partition and we fold back what it wrote.
//!
//! 1. `e2image -r -o <offset>` copies the root filesystem's *metadata* (superblock,
//!    group descriptors, bitmaps, used inode tables, directories, extent trees)
//!    into a sparse temporary file. File data is not read: the copy costs
//!    megabytes for a multi-gigabyte root.
//! 2. `debugfs -w -z <undo> -f <cmds>` makes the edits there, with
//!    `E2FSPROGS_FAKE_TIME` and explicit `sif` owner/mode/times so that the
//!    result is reproducible. Edits only touch metadata and newly allocated
//!    blocks, all present in the copy.
//! 3. debugfs's undo file lists every block it wrote. Those blocks (only) are
//!    compared with the golden image and the ones that differ are written into
//!    the overlay.
//! 4. With a shared copy ([`RootScratch`], one per golden image), `e2undo`
//!    then rolls the edits back, so the next node skips step 1.
//!
//! See docs/decisions.md, "Rootfs edits via debugfs". The steps here; the
//! e2fsprogs runs in `debugfs`, the undo file and the fold-back in `undo`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::overlay::Overlay;
use super::partition::Partition;
use debugfs::{complaints, metadata_copy, probe, push_attrs, run, verify, Stat};
use undo::{fold_back, undo_extents};

mod debugfs;
#[cfg(test)]
mod tests;
mod undo;

/// The time every edited inode carries: 2020-01-01 00:00:00 UTC.
pub const FIXED_EPOCH: u64 = 1_577_836_800;

/// Errors editing the root filesystem.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// A root file's path or mode is not usable.
    #[error("root file {path:?} is not allowed: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A machine-id is not 32 lowercase hex digits.
    #[error("machine-id {0:?} is not 32 lowercase hex digits")]
    BadMachineId(String),
    /// An e2fsprogs tool could not be run.
    #[error("cannot run {tool}: {source}; install e2fsprogs (it provides e2image and debugfs)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// An e2fsprogs tool failed or reported an error.
    #[error("{tool} failed on the root partition {number} of {image}: {detail}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// Its messages.
        detail: String,
    },
    /// A path to edit is in the way (a directory where a file goes, or a
    /// file where a directory goes).
    #[error("cannot write {path} on the root partition {number} of {image}: {detail}")]
    InTheWay {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The path.
        path: String,
        /// What is there.
        detail: String,
    },
    /// Reading back a written file gave other bytes or mode.
    #[error(
        "{path} on the root partition {number} of {image} does not read back as written: {detail}"
    )]
    Verify {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The path.
        path: String,
        /// What differed.
        detail: String,
    },
    /// debugfs's undo file could not be parsed.
    #[error("cannot read debugfs's undo file {path}: {detail}")]
    Undo {
        /// The undo file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Temporary files or the overlay failed.
    #[error("I/O error editing the root partition {number} of {image}: {source}")]
    Io {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The underlying error.
        source: io::Error,
    },
}

/// A file to lay into the root filesystem, owned by root:root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFile {
    /// Absolute path, e.g. `/etc/machine-id`.
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Permission bits (e.g. `0o444`), without the file type.
    pub mode: u32,
}

impl RootFile {
    /// `/etc/machine-id` (mode 0444) for a 128-bit id in lowercase hex.
    pub fn machine_id(id: &str) -> Result<Self, RootfsError> {
        if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(RootfsError::BadMachineId(id.to_owned()));
        }
        Ok(RootFile {
            path: "/etc/machine-id".into(),
            bytes: format!("{id}\n").into_bytes(),
            mode: 0o444,
        })
    }

    /// `/etc/default/armbian-firstrun` with `OPENSSHD_REGENERATE_HOST_KEYS=false`,
    /// keeping every other line of the golden image's version (`existing`).
    pub fn armbian_firstrun(existing: Option<&[u8]>) -> Self {
        const KEY: &str = "OPENSSHD_REGENERATE_HOST_KEYS";
        let text = existing.map(String::from_utf8_lossy).unwrap_or_default();
        let mut out = String::new();
        let mut set = false;
        for line in text.lines() {
            if line.trim_start().starts_with(&format!("{KEY}=")) {
                if !set {
                    out.push_str(&format!("{KEY}=false\n"));
                    set = true;
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !set {
            out.push_str(&format!("{KEY}=false\n"));
        }
        RootFile {
            path: "/etc/default/armbian-firstrun".into(),
            bytes: out.into_bytes(),
            mode: 0o644,
        }
    }

    fn components(&self) -> Result<Vec<&str>, RootfsError> {
        let bad = |reason| RootfsError::BadPath {
            path: self.path.clone(),
            reason,
        };
        let rest = self
            .path
            .strip_prefix('/')
            .ok_or_else(|| bad("root file paths are absolute"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        for part in &parts {
            if part.is_empty() || *part == "." || *part == ".." {
                return Err(bad("empty, '.' or '..' components are not allowed"));
            }
            // debugfs commands are split on whitespace and quotes.
            if part
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '\\')
            {
                return Err(bad("whitespace, quotes and backslashes are not supported"));
            }
        }
        if self.mode & !0o7777 != 0 {
            return Err(bad("mode holds more than permission bits"));
        }
        Ok(parts)
    }
}

/// A metadata-only copy of a golden image's root filesystem, made once and
/// shared by every node built from that image (a [`GoldenImage`] holds one).
/// Each node's edits are read out of it and then rolled back with `e2undo`
/// from debugfs's undo file, so the copy is the golden image's again for the
/// next node; edits are serialised on it. If a roll-back fails the copy is
/// dropped and the next node makes a fresh one.
///
/// [`GoldenImage`]: super::golden::GoldenImage
#[derive(Debug, Default)]
pub struct RootScratch(std::sync::Mutex<Option<Scratch>>);

impl RootScratch {
    /// Whether a copy is kept for the next node (it is dropped when a
    /// roll-back fails).
    pub fn holds_copy(&self) -> bool {
        self.0.lock().is_ok_and(|s| s.is_some())
    }
}

#[derive(Debug)]
struct Scratch {
    /// Byte offset of the root partition it copies.
    start: u64,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn meta(&self) -> PathBuf {
        self.dir.path().join("root-metadata.img")
    }
}

/// What the root edits changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootEdits {
    /// KiB of the filesystem debugfs wrote.
    pub kib_written: u64,
    /// Pieces (up to 4 KiB, within one overlay block) whose bytes changed.
    pub pieces_changed: u64,
}

struct Ctx<'a> {
    image: &'a Path,
    number: u32,
}

impl Ctx<'_> {
    fn io(&self, source: io::Error) -> RootfsError {
        RootfsError::Io {
            image: self.image.to_owned(),
            number: self.number,
            source,
        }
    }

    fn tool(&self, tool: &'static str, detail: String) -> RootfsError {
        RootfsError::Tool {
            tool,
            image: self.image.to_owned(),
            number: self.number,
            detail,
        }
    }
}

/// Reads `path` from the golden image's root partition, read-only; `None`
/// when it does not exist.
pub fn read_root_file(
    raw_image: &Path,
    root: &Partition,
    path: &str,
) -> Result<Option<Vec<u8>>, RootfsError> {
    let probe_file = RootFile {
        path: path.to_owned(),
        bytes: Vec::new(),
        mode: 0,
    };
    probe_file.components()?;
    let ctx = Ctx {
        image: raw_image,
        number: root.number,
    };
    let mut device = raw_image.as_os_str().to_owned();
    device.push(format!("?offset={}", root.start));
    let work = tempfile::tempdir().map_err(|e| ctx.io(e))?;
    match probe(&ctx, &device, &[path.to_owned()], work.path())?[0] {
        None => Ok(None),
        Some(Stat { dir: true, .. }) => Err(RootfsError::InTheWay {
            image: raw_image.to_owned(),
            number: root.number,
            path: path.to_owned(),
            detail: "it is a directory".into(),
        }),
        Some(_) => {
            let out = run(
                "debugfs",
                &["-R".into(), format!("cat {path}").into(), device],
            )?;
            let errors = complaints(&out.stderr);
            if !errors.is_empty() {
                return Err(ctx.tool("debugfs", errors.join("; ")));
            }
            Ok(Some(out.stdout))
        }
    }
}

/// Which of `paths` exist in the ext4 partition `root` of `raw_image` (a
/// symlink counts as existing; it is not followed), in one debugfs run.
pub fn root_paths_exist(
    raw_image: &Path,
    root: &Partition,
    paths: &[&str],
) -> Result<Vec<bool>, RootfsError> {
    let ctx = Ctx {
        image: raw_image,
        number: root.number,
    };
    let mut owned = Vec::with_capacity(paths.len());
    for p in paths {
        let file = RootFile {
            path: (*p).to_owned(),
            bytes: Vec::new(),
            mode: 0,
        };
        file.components()?;
        owned.push(file.path);
    }
    let mut device = raw_image.as_os_str().to_owned();
    device.push(format!("?offset={}", root.start));
    let work = tempfile::tempdir().map_err(|e| ctx.io(e))?;
    Ok(probe(&ctx, &device, &owned, work.path())?
        .iter()
        .map(Option::is_some)
        .collect())
}

/// Writes `files` into the ext4 partition `root` of the golden image
/// `raw_image`, folding every changed block into `overlay`. With `scratch`,
/// the metadata copy it holds is reused (and left as it was found), so only
/// the first node of a golden image pays for copying the root's inode tables.
///
/// The root partition's bytes in `overlay` must still be the golden image's.
pub fn edit_root(
    overlay: &mut Overlay,
    raw_image: &Path,
    root: &Partition,
    files: &[RootFile],
    image: &Path,
    scratch: Option<&RootScratch>,
) -> Result<RootEdits, RootfsError> {
    let ctx = Ctx {
        image,
        number: root.number,
    };
    if files.is_empty() {
        return Ok(RootEdits::default());
    }
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut targets: Vec<String> = Vec::new();
    for f in files {
        let parts = f.components()?;
        for depth in 1..parts.len() {
            dirs.insert(format!("/{}", parts[..depth].join("/")));
        }
        let target = format!("/{}", parts.join("/"));
        if targets.contains(&target) {
            return Err(RootfsError::BadPath {
                path: f.path.clone(),
                reason: "given twice",
            });
        }
        targets.push(target);
    }

    let work = tempfile::Builder::new()
        .prefix("metis-rootfs-")
        .tempdir()
        .map_err(|e| ctx.io(e))?;
    let undo = work.path().join("edits.e2undo");

    // 1. Metadata-only sparse copy of the root filesystem: the shared one
    //    (made by the first node), or one of this call's own.
    let mut shared = scratch.map(|s| {
        s.0.lock().unwrap_or_else(|poisoned| {
            // A node that panicked mid-edit may have left it edited.
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        })
    });
    let meta = match shared.as_deref_mut() {
        Some(slot) => {
            if slot.as_ref().is_some_and(|s| s.start != root.start) {
                *slot = None;
            }
            if slot.is_none() {
                let dir = tempfile::Builder::new()
                    .prefix("metis-rootfs-shared-")
                    .tempdir()
                    .map_err(|e| ctx.io(e))?;
                let made = Scratch {
                    start: root.start,
                    dir,
                };
                metadata_copy(&ctx, raw_image, root, &made.meta())?;
                *slot = Some(made);
            }
            slot.as_ref().expect("just made").meta()
        }
        None => {
            let meta = work.path().join("root-metadata.img");
            metadata_copy(&ctx, raw_image, root, &meta)?;
            meta
        }
    };
    let result = edit_copy(
        &ctx, overlay, root, files, &dirs, &targets, &meta, &undo, &work,
    );
    // Roll the shared copy back for the next node; drop it if that fails.
    if let Some(slot) = shared.as_deref_mut() {
        if undo.exists() {
            let rolled_back = run("e2undo", &[undo.clone().into(), meta.clone().into()])
                .is_ok_and(|out| out.status.success());
            if !rolled_back {
                *slot = None;
            }
        }
    }
    result
}

/// Steps 2 to 5 of [`edit_root`] on the metadata copy `meta`.
#[allow(clippy::too_many_arguments)]
fn edit_copy(
    ctx: &Ctx<'_>,
    overlay: &mut Overlay,
    root: &Partition,
    files: &[RootFile],
    dirs: &BTreeSet<String>,
    targets: &[String],
    meta: &Path,
    undo: &Path,
    work: &tempfile::TempDir,
) -> Result<RootEdits, RootfsError> {
    let image = ctx.image;
    let device: OsString = meta.into();

    // 2. Plan: which directories to create, which files to replace.
    let dir_list: Vec<String> = dirs.iter().cloned().collect();
    let mut probed = dir_list.clone();
    probed.extend(targets.iter().cloned());
    let stats = probe(ctx, &device, &probed, work.path())?;
    let (dir_stats, target_stats) = stats.split_at(dir_list.len());
    let mut cmds = String::new();
    for (dir, stat) in dir_list.iter().zip(dir_stats) {
        match stat {
            Some(Stat { dir: true, .. }) => {}
            Some(_) => {
                return Err(RootfsError::InTheWay {
                    image: image.to_owned(),
                    number: root.number,
                    path: dir.clone(),
                    detail: "a file is where a directory is needed".into(),
                })
            }
            None => {
                cmds.push_str(&format!("mkdir {dir}\n"));
                push_attrs(&mut cmds, dir, 0o040755);
            }
        }
    }
    for (i, (f, (target, stat))) in files
        .iter()
        .zip(targets.iter().zip(target_stats))
        .enumerate()
    {
        match stat {
            Some(Stat { dir: true, .. }) => {
                return Err(RootfsError::InTheWay {
                    image: image.to_owned(),
                    number: root.number,
                    path: target.clone(),
                    detail: "it is a directory in the golden image".into(),
                })
            }
            Some(_) => cmds.push_str(&format!("rm {target}\n")),
            None => {}
        }
        let source = work.path().join(format!("file-{i}"));
        std::fs::write(&source, &f.bytes).map_err(|e| ctx.io(e))?;
        // Host paths are quoted: the temporary directory may hold spaces.
        cmds.push_str(&format!("write \"{}\" {target}\n", source.display()));
        push_attrs(&mut cmds, target, 0o100000 | f.mode);
    }
    let cmd_file = work.path().join("edits.cmds");
    std::fs::write(&cmd_file, cmds).map_err(|e| ctx.io(e))?;

    // 3. Edit, recording every written block in the undo file.
    let out = run(
        "debugfs",
        &[
            "-w".into(),
            "-z".into(),
            undo.into(),
            "-f".into(),
            cmd_file.into(),
            device.clone(),
        ],
    )?;
    let errors: Vec<String> = complaints(&out.stderr)
        .into_iter()
        .filter(|l| !l.starts_with("Overwriting existing filesystem") && !l.contains("e2undo "))
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(ctx.tool("debugfs", errors.join("; ")));
    }

    // 4. Read back what was written.
    verify(ctx, &device, files, targets, work.path())?;

    // 5. Fold the written blocks that changed into the overlay.
    let written = undo_extents(undo)?;
    fold_back(ctx, overlay, meta, root, &written)
}
