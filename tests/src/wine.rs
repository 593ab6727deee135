//! Windows programs under Wine: paths as Wine's `Z:` drive names them, and a
//! prefix whose wineserver stops with the test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Wine's 64-bit loader (Debian's wine64).
pub const WINE: &str = "/usr/lib/wine/wine64";

/// A Unix path as Wine's Z: drive names it.
pub fn z(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// A Wine prefix (`WINEPREFIX`): its wineserver, and the programs it still
/// runs, are stopped when dropped.
pub struct Prefix(pub PathBuf);

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.0)
            .status();
    }
}
