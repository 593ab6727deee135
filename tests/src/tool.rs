//! Running the real tools the tests check against (sfdisk, mtools, e2fsprogs,
//! QEMU …) so that a failure names the command and shows what it printed.

use std::ffi::OsStr;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The `PATH` the tests give every tool: the caller's, plus the sbin
/// directories where Debian keeps sfdisk, mkfs.* and debugfs (a non-root
/// shell often lacks them).
pub fn search_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !path.split(':').any(|entry| entry == dir) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(dir);
        }
    }
    path
}

/// A [`Command`] for `program` with [`search_path`] as its `PATH`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", search_path());
    cmd
}

/// The command line of `cmd`, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion; fails with its exit status, stderr and stdout
/// unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    let output = cmd
        .env("PATH", search_path())
        .output()
        .with_context(|| format!("starting `{line}` (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({})\n--- stderr ---\n{}--- stdout ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
    }
    Ok(output)
}

/// Runs `cmd` like [`run`] and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let output = run(cmd)?;
    String::from_utf8(output.stdout).with_context(|| format!("stdout of `{line}` is not UTF-8"))
}
