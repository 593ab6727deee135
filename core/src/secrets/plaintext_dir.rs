//! The only place secrets are ever written in clear outside a card: a 0700
//! directory for `secrets edit`'s temp file and `secrets init`'s freshly
//! generated SSH host keys.
//!
//! It lives under `$XDG_RUNTIME_DIR` when there is one (a per-user tmpfs on
//! systemd systems, so plaintext never reaches a disk and is gone at logout),
//! else under the temp dir (`$TMPDIR`, `/tmp`). Every file in it is
//! overwritten with zeros before the directory is removed, when the
//! [`PlaintextDir`] is dropped. Dropping does not happen on a panic in a
//! build with `panic = "abort"` (our release profile), so every directory
//! still open is also listed in a process-wide register that
//! [`wipe_plaintext_dirs`] empties: the binaries call it from their panic
//! hook, which runs before the abort.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, TryLockError};

use super::{Result, SecretsError};

/// The plaintext directories open in this process.
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn open_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the list was held poisons it; the list itself is still whole.
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private (0700) directory whose files are zeroed and removed with it.
pub(crate) struct PlaintextDir {
    path: PathBuf,
}

impl PlaintextDir {
    /// Creates `metis-secrets-XXXX` under `$XDG_RUNTIME_DIR`, else the temp dir.
    pub(crate) fn new() -> Result<Self> {
        let base = dirs::runtime_dir()
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let mut builder = tempfile::Builder::new();
        builder.prefix("metis-secrets-");
        // Not tempfile's default: that is 0777 less the umask (0755, usually).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let dir = builder.tempdir_in(&base).map_err(SecretsError::io(format!(
            "creating a private temp directory in {} (set TMPDIR to a writable directory)",
            base.display()
        )))?;
        // From here on the directory is ours to wipe, not tempfile's.
        let path = dir.keep();
        open_dirs().push(path.clone());
        Ok(PlaintextDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PlaintextDir {
    fn drop(&mut self) {
        wipe(&self.path);
        open_dirs().retain(|p| p != &self.path);
    }
}

/// Overwrites every file under `dir` with zeros, then removes `dir`.
fn wipe(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => wipe(&path),
                Ok(t) if t.is_file() => {
                    if let (Ok(meta), Ok(mut f)) = (
                        entry.metadata(),
                        std::fs::OpenOptions::new().write(true).open(&path),
                    ) {
                        let zeros = vec![0u8; 1 << 16];
                        let mut left = meta.len();
                        while left > 0 {
                            let n = left.min(zeros.len() as u64) as usize;
                            if f.write_all(&zeros[..n]).is_err() {
                                break;
                            }
                            left -= n as u64;
                        }
                        let _ = f.sync_all();
                    }
                    let _ = std::fs::remove_file(&path);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Zeroes and removes every plaintext directory this process still has open
/// (`secrets edit`'s temp file, `secrets init`'s generated keys).
///
/// For a panic hook: with `panic = "abort"` nothing is dropped on a panic,
/// but the hook runs first. Does nothing if the register is busy (a panic
/// inside the register's own few lines).
pub fn wipe_plaintext_dirs() {
    let mut open = match OPEN.try_lock() {
        Ok(open) => open,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    for dir in open.drain(..) {
        wipe(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_or_forgotten_dir_is_wiped_and_gone() {
        let dropped = PlaintextDir::new().unwrap();
        let path = dropped.path().to_owned();
        std::fs::create_dir(path.join("sub")).unwrap();
        std::fs::write(path.join("sub/.edit.swp"), b"plain").unwrap();
        std::fs::write(path.join("node.json"), b"plain").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        drop(dropped);
        assert!(!path.exists());

        // As after a panic with panic = "abort": never dropped, wiped by the hook.
        let forgotten = PlaintextDir::new().unwrap();
        let path = forgotten.path().to_owned();
        std::fs::write(path.join("node.json"), b"plain").unwrap();
        std::mem::forget(forgotten);
        assert!(open_dirs().contains(&path));
        wipe_plaintext_dirs();
        assert!(!path.exists());
        assert!(!open_dirs().contains(&path));
    }
}
