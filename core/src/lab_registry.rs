//! Placeholder until the lean-split branch lands.
use std::path::{Path, PathBuf};
/// The registry block.
#[derive(Debug)]
pub struct LabRegistry {
    /// Location.
    pub location: String,
    /// Prefix.
    pub prefix: String,
    /// CA file.
    pub ca_file: Option<PathBuf>,
}
/// Reads it.
pub fn read_registry(dir: &Path) -> Result<LabRegistry, std::io::Error> {
    Err(std::io::Error::other(format!("{}: not yet", dir.display())))
}
