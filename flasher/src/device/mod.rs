//! Disks a card can be written to, behind one small trait per operating system.
//!
//! The pipeline only sees [`Backend`]; each OS implements it in its own file,
//! chosen at compile time. Backends that cannot write yet return
//! [`DeviceError::Unsupported`] with a plain explanation instead of failing late.

use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::Linux as Native;

#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
pub use windows::Windows as Native;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::MacOs as Native;

/// A disk as the picker shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disk {
    /// Path to open (`/dev/sdb`, `\\.\PhysicalDrive2`, `/dev/rdisk4`).
    pub path: PathBuf,
    /// Vendor and model as the OS reports them.
    pub model: String,
    /// Size in bytes.
    pub size: u64,
    /// Bus: usb, mmc, sata, nvme, loop, …
    pub bus: String,
    /// Whether the OS marks it removable.
    pub removable: bool,
    /// Whether it is read-only.
    pub read_only: bool,
}

/// Errors of a device backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// This OS has no backend yet.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    #[error("writing disks is not supported on this OS yet ({os}); use `--output FILE.img` and write the image with your usual tool")]
    Unsupported {
        /// The OS name.
        os: &'static str,
    },
    /// The OS refused or failed an operation on a device.
    #[error("{op} {device}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The device.
        device: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the flasher needs from an operating system.
pub trait Backend {
    /// Disks that could be written to (the picker filters further).
    fn list(&self) -> Result<Vec<Disk>, DeviceError>;
    /// Describes one device, failing if it is not a whole disk that can be opened.
    fn describe(&self, device: &Path) -> Result<Disk, DeviceError>;
}
