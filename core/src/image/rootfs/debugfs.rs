//! The e2fsprogs runs: `e2image` for the metadata copy, `debugfs` to probe
//! paths, write the edits' commands and read them back.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use super::{Ctx, RootFile, RootfsError, FIXED_EPOCH};
use crate::image::partition::Partition;

pub(super) fn run(tool: &'static str, args: &[OsString]) -> Result<Output, RootfsError> {
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
pub(super) fn tool_path() -> OsString {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    path.push(":/usr/sbin:/sbin");
    path
}

/// Messages on stderr other than debugfs's version banner.
pub(super) fn complaints(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs ") && !l.starts_with("e2image "))
        .map(str::to_owned)
        .collect()
}

/// What `stat` says of each path, from one read-only debugfs run.
pub(super) fn probe(
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
pub(super) struct Stat {
    pub(super) dir: bool,
    pub(super) mode: u32,
}

impl Stat {
    pub(super) fn parse(body: &str) -> Option<Stat> {
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

/// `e2image -r`: the root filesystem's metadata, as a sparse file at `meta`.
pub(super) fn metadata_copy(
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

pub(super) fn push_attrs(cmds: &mut String, path: &str, mode: u32) {
    cmds.push_str(&format!("sif {path} mode 0{mode:o}\n"));
    for field in ["uid", "gid"] {
        cmds.push_str(&format!("sif {path} {field} 0\n"));
    }
    for field in ["atime", "ctime", "mtime", "crtime"] {
        cmds.push_str(&format!("sif {path} {field} @{FIXED_EPOCH}\n"));
    }
}

pub(super) fn verify(
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
