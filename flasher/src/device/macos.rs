//! MacOs backend: a stub until its own issue; it says so plainly.

use std::path::Path;

use super::{Backend, DeviceError, Disk};

/// The MacOs backend.
pub struct MacOs;

impl Backend for MacOs {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }

    fn describe(&self, _device: &Path) -> Result<Disk, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }
}
