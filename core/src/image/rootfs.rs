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
//! See docs/decisions.md, "Rootfs edits via debugfs".

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use thiserror::Error;

use super::overlay::{Overlay, OVERLAY_BLOCK};
use super::partition::Partition;

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

fn run(tool: &'static str, args: &[OsString]) -> Result<Output, RootfsError> {
    Command::new(tool)
        .args(args)
        .env("PATH", tool_path())
        .env("E2FSPROGS_FAKE_TIME", FIXED_EPOCH.to_string())
        // stat and cat go through a pager unless told not to.
        .env("DEBUGFS_PAGER", "__none__")
        .env("PAGER", "__none__")
        .env_remove("E2FSPROGS_UNDO_DIR")
        .output()
        .map_err(|source| RootfsError::Spawn { tool, source })
}

/// e2fsprogs lives in /sbin on Debian; a non-root PATH often lacks it.
fn tool_path() -> OsString {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    path.push(":/usr/sbin:/sbin");
    path
}

/// Messages on stderr other than debugfs's version banner.
fn complaints(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs ") && !l.starts_with("e2image "))
        .map(str::to_owned)
        .collect()
}

/// What `stat` says of each path, from one read-only debugfs run.
fn probe(
    ctx: &Ctx<'_>,
    device: &OsString,
    paths: &[String],
    work: &Path,
) -> Result<Vec<Option<Stat>>, RootfsError> {
    let cmds = work.join("probe.cmds");
    let mut text = String::new();
    for p in paths {
        text.push_str(&format!("stat {p}\n"));
    }
    std::fs::write(&cmds, text).map_err(|e| ctx.io(e))?;
    let out = run("debugfs", &["-f".into(), cmds.into(), device.clone()])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // stdout echoes each command as "debugfs: stat <path>" before its output.
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: stat ") {
            sections.push((cmd.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if sections.len() != paths.len() {
        return Err(ctx.tool(
            "debugfs",
            format!(
                "probing {} paths gave {} answers: {}",
                paths.len(),
                sections.len(),
                complaints(&out.stderr).join("; ")
            ),
        ));
    }
    Ok(sections.iter().map(|(_, body)| Stat::parse(body)).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    dir: bool,
    mode: u32,
}

impl Stat {
    fn parse(body: &str) -> Option<Stat> {
        let first = body.lines().find(|l| l.starts_with("Inode:"))?;
        let dir = first.contains("Type: directory");
        let mode = first
            .split("Mode:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|m| u32::from_str_radix(m, 8).ok())?;
        Some(Stat { dir, mode })
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

/// `e2image -r`: the root filesystem's metadata, as a sparse file at `meta`.
fn metadata_copy(
    ctx: &Ctx<'_>,
    raw_image: &Path,
    root: &Partition,
    meta: &Path,
) -> Result<(), RootfsError> {
    let out = run(
        "e2image",
        &[
            "-r".into(),
            "-o".into(),
            root.start.to_string().into(),
            raw_image.into(),
            meta.into(),
        ],
    )?;
    if !out.status.success() || !meta.is_file() {
        return Err(ctx.tool(
            "e2image",
            format!("{}; {}", out.status, complaints(&out.stderr).join("; ")),
        ));
    }
    Ok(())
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

fn push_attrs(cmds: &mut String, path: &str, mode: u32) {
    cmds.push_str(&format!("sif {path} mode 0{mode:o}\n"));
    for field in ["uid", "gid"] {
        cmds.push_str(&format!("sif {path} {field} 0\n"));
    }
    for field in ["atime", "ctime", "mtime", "crtime"] {
        cmds.push_str(&format!("sif {path} {field} @{FIXED_EPOCH}\n"));
    }
}

fn verify(
    ctx: &Ctx<'_>,
    device: &OsString,
    files: &[RootFile],
    targets: &[String],
    work: &Path,
) -> Result<(), RootfsError> {
    let back = work.join("back");
    std::fs::create_dir(&back).map_err(|e| ctx.io(e))?;
    let mut cmds = String::new();
    for (i, target) in targets.iter().enumerate() {
        cmds.push_str(&format!(
            "dump {target} \"{}\"\n",
            back.join(i.to_string()).display()
        ));
    }
    let cmd_file = work.join("verify.cmds");
    std::fs::write(&cmd_file, cmds).map_err(|e| ctx.io(e))?;
    let out = run("debugfs", &["-f".into(), cmd_file.into(), device.clone()])?;
    let errors = complaints(&out.stderr);
    if !errors.is_empty() {
        return Err(ctx.tool("debugfs", errors.join("; ")));
    }
    let stats = probe(ctx, device, targets, work)?;
    for (i, ((f, target), stat)) in files.iter().zip(targets).zip(stats).enumerate() {
        let fail = |detail: String| RootfsError::Verify {
            image: ctx.image.to_owned(),
            number: ctx.number,
            path: target.clone(),
            detail,
        };
        let bytes = std::fs::read(back.join(i.to_string())).map_err(|e| fail(e.to_string()))?;
        if bytes != f.bytes {
            return Err(fail(format!(
                "{} bytes read back, {} written",
                bytes.len(),
                f.bytes.len()
            )));
        }
        match stat {
            Some(s) if !s.dir && s.mode & 0o7777 == f.mode => {}
            other => return Err(fail(format!("mode is {other:?}, expected {:o}", f.mode))),
        }
    }
    Ok(())
}

/// Byte ranges (in the filesystem) that debugfs wrote, from its undo file
/// (e2fsprogs' `E2UNDO02` format: a header, then key blocks each followed by
/// the old contents of the ranges its keys name).
fn undo_extents(path: &Path) -> Result<Vec<(u64, u64)>, RootfsError> {
    let bad = |detail: String| RootfsError::Undo {
        path: path.to_owned(),
        detail,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        // debugfs creates no undo file when it wrote nothing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut header = [0u8; 512];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("header: {e}")))?;
    if &header[..8] != b"E2UNDO02" {
        return Err(bad("not an E2UNDO02 file".into()));
    }
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let num_keys = u64_at(&header, 8);
    let key_offset = u64_at(&header, 24);
    let block_size = u64::from(u32_at(&header, 32));
    let fs_block_size = u64::from(u32_at(&header, 36));
    if !(1024..=1 << 20).contains(&block_size) || fs_block_size == 0 {
        return Err(bad(format!(
            "block sizes {block_size}/{fs_block_size} out of range"
        )));
    }
    let keys_per_block = block_size / 16 - 1;
    let mut extents = Vec::new();
    let mut key_block = vec![0u8; block_size as usize];
    let mut at = key_offset;
    let mut left = num_keys;
    while left > 0 {
        file.seek(SeekFrom::Start(at * block_size))
            .and_then(|_| file.read_exact(&mut key_block))
            .map_err(|e| bad(format!("key block {at}: {e}")))?;
        if u32_at(&key_block, 0) != 0xCADE_CADE {
            return Err(bad(format!("key block {at} has no magic")));
        }
        at += 1;
        for k in 0..keys_per_block.min(left) {
            let o = 16 + 16 * k as usize;
            let fsblk = u64_at(&key_block, o);
            let size = u64::from(u32_at(&key_block, o + 12));
            extents.push((fsblk * fs_block_size, size));
            at += size.div_ceil(block_size);
        }
        left -= keys_per_block.min(left);
    }
    Ok(extents)
}

fn fold_back(
    ctx: &Ctx<'_>,
    overlay: &mut Overlay,
    meta: &Path,
    root: &Partition,
    written: &[(u64, u64)],
) -> Result<RootEdits, RootfsError> {
    // Exactly the ranges debugfs wrote, and nothing around them: around them
    // the metadata copy holds holes where the golden image holds file data
    // (ext4 blocks can be 1 KiB, smaller than an overlay block). The primary
    // superblock is always checked.
    let mut ranges: Vec<(u64, u64)> = written
        .iter()
        .map(|&(offset, len)| (offset, offset + len))
        .chain(std::iter::once((1024, 2048)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (from, to) in ranges {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    let blocks_written = written.iter().map(|&(_, len)| len).sum::<u64>() / 1024;

    let mut meta = File::open(meta).map_err(|e| ctx.io(e))?;
    let mut edited = vec![0u8; OVERLAY_BLOCK as usize];
    let mut golden = vec![0u8; OVERLAY_BLOCK as usize];
    let mut changed = 0;
    for (from, to) in merged {
        let to = to.min(root.len);
        let mut offset = from;
        while offset < to {
            // Pieces end on overlay block boundaries of the card.
            let card = root.start + offset;
            let n = (OVERLAY_BLOCK - card % OVERLAY_BLOCK).min(to - offset) as usize;
            meta.seek(SeekFrom::Start(offset)).map_err(|e| ctx.io(e))?;
            let got = read_full(&mut meta, &mut edited[..n]).map_err(|e| ctx.io(e))?;
            // Past the end of the metadata copy (a partition larger than its
            // filesystem) nothing was written.
            edited[got..n].fill(0);
            overlay
                .seek(SeekFrom::Start(card))
                .and_then(|_| overlay.read_exact(&mut golden[..n]))
                .map_err(|e| ctx.io(e))?;
            if edited[..n] != golden[..n] {
                overlay
                    .seek(SeekFrom::Start(card))
                    .and_then(|_| overlay.write_all(&edited[..n]))
                    .map_err(|e| ctx.io(e))?;
                changed += 1;
            }
            offset += n as u64;
        }
    }
    Ok(RootEdits {
        kib_written: blocks_written,
        pieces_changed: changed,
    })
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_checked() {
        let f = RootFile::machine_id("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(f.bytes, b"0123456789abcdef0123456789abcdef\n");
        assert_eq!(f.mode, 0o444);
        for bad in [
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "xyz",
            "0123456789abcdef0123456789abcde",
        ] {
            assert!(RootFile::machine_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn armbian_firstrun_sets_the_key_once_and_keeps_the_rest() {
        let golden =
            b"# comment\nFR_net_change_defaults=0\nOPENSSHD_REGENERATE_HOST_KEYS=true\nX=1\n";
        let f = RootFile::armbian_firstrun(Some(golden));
        assert_eq!(
            String::from_utf8(f.bytes).unwrap(),
            "# comment\nFR_net_change_defaults=0\nOPENSSHD_REGENERATE_HOST_KEYS=false\nX=1\n"
        );
        let f = RootFile::armbian_firstrun(None);
        assert_eq!(f.bytes, b"OPENSSHD_REGENERATE_HOST_KEYS=false\n");
    }

    #[test]
    fn paths_are_checked() {
        for bad in ["etc/x", "/etc//x", "/etc/../x", "/etc/a b", "/etc/\"x"] {
            let f = RootFile {
                path: bad.into(),
                bytes: vec![],
                mode: 0o644,
            };
            assert!(f.components().is_err(), "{bad:?}");
        }
        let f = RootFile {
            path: "/etc/x".into(),
            bytes: vec![],
            mode: 0o100644,
        };
        assert!(f.components().is_err(), "file type bits refused");
    }

    #[test]
    fn stat_output_is_parsed() {
        let body = "Inode: 15   Type: regular    Mode:  0444   Flags: 0x80000\nGeneration: 0\n";
        assert_eq!(
            Stat::parse(body),
            Some(Stat {
                dir: false,
                mode: 0o444
            })
        );
        let body = "Inode: 2   Type: directory    Mode:  0755   Flags: 0x80000\n";
        assert_eq!(
            Stat::parse(body),
            Some(Stat {
                dir: true,
                mode: 0o755
            })
        );
        assert_eq!(Stat::parse(""), None);
    }
}
