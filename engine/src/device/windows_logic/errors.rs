//! What each Win32 error means to the operator, with what to do about it.

use std::io;
use std::path::{Path, PathBuf};

use super::code;
use crate::device::rules::refused;
use crate::device::DeviceError;

/// Settings path to Controlled Folder Access, named in every "denied although
/// elevated" message.
const CONTROLLED_FOLDER_ACCESS: &str = "Windows Security > Virus & threat protection > Manage ransomware protection > Controlled folder access";

pub(super) fn not_elevated(device: &Path) -> DeviceError {
    refused(
        device,
        "metis-flash is not running as administrator, and Windows lets only administrators write a whole disk",
        "open a terminal with \"Run as administrator\" (right-click Terminal or PowerShell) and run the same command there",
    )
}

pub(super) fn blocked_by_security(device: &Path, what: &str) -> DeviceError {
    refused(
        device,
        format!("Windows denied {what} although metis-flash runs as administrator: Controlled Folder Access or an antivirus is blocking raw disk writes"),
        format!("allow metis-flash.exe under {CONTROLLED_FOLDER_ACCESS} > Allow an app through Controlled folder access (or in your antivirus), then retry"),
    )
}

/// What an error opening the disk means to the operator.
pub(super) fn open_disk_error(device: &Path, e: io::Error, elevated: bool) -> DeviceError {
    match e.raw_os_error() {
        Some(code::ACCESS_DENIED) if !elevated => not_elevated(device),
        Some(code::ACCESS_DENIED) => blocked_by_security(device, "access to it"),
        Some(code::VIRUS_INFECTED) | Some(code::VIRUS_DELETED) => {
            blocked_by_security(device, "access to it")
        }
        Some(code::WRITE_PROTECT) => refused(
            device,
            "the medium is read-only",
            "slide the SD card's lock switch to unlocked (or use another card) and retry",
        ),
        Some(code::NOT_READY) => refused(
            device,
            "there is no card in the reader",
            "insert the card and retry",
        ),
        Some(
            code::FILE_NOT_FOUND
            | code::PATH_NOT_FOUND
            | code::NO_SUCH_DEVICE
            | code::DEVICE_NOT_CONNECTED,
        ) => refused(
            device,
            "no such disk (unplugged?)",
            "insert the card and pick it with `metis-flash devices`",
        ),
        Some(code::SHARING_VIOLATION) => refused(
            device,
            "another program has it open exclusively",
            "close Disk Management, other flashing or imaging tools and retry",
        ),
        _ => DeviceError::Io {
            op: "opening",
            device: device.to_path_buf(),
            source: e,
        },
    }
}

pub(super) fn lock_is_busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code::ACCESS_DENIED | code::SHARING_VIOLATION | code::LOCK_VIOLATION)
    )
}

/// A volume that could not be opened, locked or dismounted.
pub(super) fn volume_error(
    device: &Path,
    label: &str,
    op: &'static str,
    e: io::Error,
) -> DeviceError {
    if lock_is_busy(&e) {
        refused(
            device,
            format!("its volume {label} cannot be locked: a program has files open on it (an Explorer window, an antivirus scan, a terminal whose current directory is there)"),
            format!("close the windows and programs using {label}, then retry"),
        )
    } else {
        DeviceError::Io {
            op,
            device: PathBuf::from(label),
            source: e,
        }
    }
}

/// Explains an I/O error on the open disk; other errors pass through unchanged.
pub(super) fn explain_io(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(code::ACCESS_DENIED | code::VIRUS_INFECTED | code::VIRUS_DELETED) => format!(
            "Windows denied the disk access ({e}): Controlled Folder Access or an antivirus blocks raw disk writes; allow metis-flash.exe under {CONTROLLED_FOLDER_ACCESS} > Allow an app through Controlled folder access"
        ),
        Some(code::WRITE_PROTECT) => {
            format!("the card became write-protected ({e}); check its lock switch")
        }
        Some(code::NOT_READY | code::MEDIA_CHANGED | code::DEVICE_NOT_CONNECTED) => {
            format!("the card was removed or changed ({e})")
        }
        _ => return e,
    };
    io::Error::new(e.kind(), why)
}
