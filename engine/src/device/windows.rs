//! Windows backend: a stub until its own issue; it says so plainly.
//!
//! To do (see docs/flashing.md): open `\\.\PhysicalDriveN`; lock
//! (`FSCTL_LOCK_VOLUME`) and dismount (`FSCTL_DISMOUNT_VOLUME`) every volume on it
//! for as long as the returned `Medium` lives, through write and verify; unbuffered
//! write-through I/O (`FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH`); bus and
//! removability from `IOCTL_STORAGE_QUERY_PROPERTY`. The pipeline needs no change.

use std::path::Path;

use super::{Backend, Candidate, DeviceError, Disk, Policy};
use crate::flash::medium::Medium;

/// The Windows backend.
pub struct Windows;

impl Backend for Windows {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }

    fn describe(&self, _device: &Path) -> Result<Disk, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }

    fn inspect(
        &self,
        _device: &Path,
        _image_size: u64,
        _policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }

    fn open(&self, _candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        Err(DeviceError::Unsupported { os: "windows" })
    }
}
