//! Windows backend: a stub until its own issue; it says so plainly.

use std::path::Path;

use super::{Backend, DeviceError, Disk};

/// The Windows backend.
pub struct Windows;

impl Backend for Windows {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }

    fn describe(&self, _device: &Path) -> Result<Disk, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }
}
