//! MacOs backend: a stub until its own issue; it says so plainly.
//!
//! To do (see docs/flashing.md): write `/dev/rdiskN` (the raw, uncached node) after
//! `diskutil unmountDisk /dev/diskN` (only after confirmation); `F_NOCACHE` for the
//! read-back. The pipeline needs no change.

use std::path::Path;

use super::{Backend, Candidate, DeviceError, Disk, Policy};
use crate::medium::Medium;

/// The MacOs backend.
pub struct MacOs;

impl Backend for MacOs {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }

    fn describe(&self, _device: &Path) -> Result<Disk, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }

    fn inspect(
        &self,
        _device: &Path,
        _image_size: u64,
        _policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }

    fn open(&self, _candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        Err(DeviceError::Unsupported { os: "macos" })
    }
}
