//! Disks a card can be written to, behind one small trait per operating system.
//!
//! The pipeline only sees [`Backend`]; each OS implements it in its own file,
//! chosen at compile time; `rules.rs` holds the safety rules they share. Backends
//! that cannot write yet return [`DeviceError::Unsupported`] with a plain
//! explanation instead of failing late.

use std::path::{Path, PathBuf};

use crate::medium::Medium;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod linux_ioctl;
#[cfg(target_os = "linux")]
pub use linux::Linux as Native;

mod rules;

#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
mod windows_ffi;
// The Windows backend's logic is plain Rust over a trait, so its tests run on
// every OS against a recorded fake of the Win32 calls.
#[cfg(any(target_os = "windows", test))]
mod windows_logic;
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

impl Disk {
    /// The vendor and model, or `(no model)`.
    pub fn model_text(&self) -> &str {
        if self.model.is_empty() {
            "(no model)"
        } else {
            &self.model
        }
    }
}

/// Errors of a device backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// This OS has no backend yet.
    #[cfg_attr(any(target_os = "linux", target_os = "windows"), allow(dead_code))]
    #[error("writing disks is not supported on this OS yet ({os}); use `--output FILE.img` and write the image with your usual tool")]
    Unsupported {
        /// The OS name.
        os: &'static str,
    },
    /// The disk must not be written; `reason` says why, `hint` what to do.
    #[error("refusing to write {device}: {reason}\n  hint: {hint}")]
    Refused {
        /// The device.
        device: PathBuf,
        /// Why it is refused.
        reason: String,
        /// What the operator can do.
        hint: String,
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

/// A partition of a candidate disk, as the confirmation prompt shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Partition {
    /// Its device path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Where it is mounted now (unmounted only after confirmation).
    pub mounts: Vec<PathBuf>,
}

/// A disk that passed every safety rule for an image, waiting for confirmation.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The disk.
    pub disk: Disk,
    /// Its current partitions.
    pub partitions: Vec<Partition>,
    /// Mount points (on this removable disk's own partitions) to unmount once the
    /// operator has confirmed.
    pub to_unmount: Vec<PathBuf>,
}

/// Overrides of the safety rules the operator asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept a disk the OS does not report as removable, USB or SD (a loop device,
    /// an internal disk in an adapter the OS does not flag).
    pub force_non_removable: bool,
}

/// What the flasher needs from an operating system.
pub trait Backend {
    /// Disks that could be written to (the picker filters further).
    fn list(&self) -> Result<Vec<Disk>, DeviceError>;
    /// Describes one device, failing if it is not a whole disk that can be opened.
    fn describe(&self, device: &Path) -> Result<Disk, DeviceError>;
    /// Applies every safety rule for writing an `image_size`-byte image to `device`
    /// and describes it for the confirmation prompt. Nothing is changed.
    ///
    /// # Errors
    ///
    /// [`DeviceError::Refused`] saying why and what to do.
    fn inspect(
        &self,
        device: &Path,
        image_size: u64,
        policy: Policy,
    ) -> Result<Candidate, DeviceError>;
    /// After confirmation: unmounts the candidate's partitions, then opens the disk
    /// exclusively for raw, cache-bypassing writes (Windows: dismounts and locks its
    /// volumes for as long as the returned medium lives).
    fn open(&self, candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError>;
}
