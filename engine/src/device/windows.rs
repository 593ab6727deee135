//! Windows backend: `\\.\PhysicalDriveN`, with every volume on the disk locked and
//! dismounted for as long as the medium lives, unbuffered write-through I/O.
//!
//! The decisions (safety rules, the order of lock, dismount, clear and write, what
//! each Win32 error means) are in `windows_logic.rs`, over a trait whose real
//! implementation is the thin Win32 layer in `windows_ffi.rs`; docs/windows.md
//! describes both and how they are built and tested from Linux.

use std::path::Path;
use std::sync::Arc;

use super::windows_ffi::Api;
use super::windows_logic::WindowsBackend;
use super::{Backend, Candidate, DeviceError, Disk, Policy};
use crate::medium::Medium;

/// The Windows backend.
pub struct Windows;

fn backend() -> WindowsBackend<Api> {
    WindowsBackend(Arc::new(Api))
}

impl Backend for Windows {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        backend().list()
    }

    fn describe(&self, device: &Path) -> Result<Disk, DeviceError> {
        backend().describe(device)
    }

    fn inspect(
        &self,
        device: &Path,
        image_size: u64,
        policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        backend().inspect(device, image_size, policy)
    }

    fn open(&self, candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        backend().open(candidate)
    }
}
