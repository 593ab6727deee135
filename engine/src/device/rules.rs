//! The safety rules every backend applies the same way, on a [`Disk`] as its OS
//! describes it. Each backend adds the rules only its OS can check (the running
//! system, swap or the page file, stacked or locked volumes) after these.

use std::path::Path;

use super::{DeviceError, Disk, Policy};

/// Whether the OS or the bus says this is a card or stick, not an internal disk.
pub(crate) fn is_removable_like(disk: &Disk) -> bool {
    disk.removable || matches!(disk.bus.as_str(), "usb" | "mmc" | "sd")
}

/// The rules on the disk itself: writable, removable (or overridden), large enough.
pub(crate) fn check_disk(
    device: &Path,
    disk: &Disk,
    image_size: u64,
    policy: Policy,
) -> Result<(), DeviceError> {
    if disk.read_only {
        return Err(refused(
            device,
            "the medium is read-only",
            "slide the SD card's lock switch to unlocked (or use another card) and retry",
        ));
    }
    if !is_removable_like(disk) && !policy.force_non_removable {
        return Err(refused(
            device,
            format!(
                "it is not a removable, USB or SD disk (bus {}): it may be one of this machine's own disks",
                disk.bus
            ),
            "check the path with `metis-flash devices`; if this really is the node's disk (e.g. in an adapter the OS does not flag), pass --force-non-removable",
        ));
    }
    if disk.size < image_size {
        return Err(refused(
            device,
            format!(
                "it holds {} bytes ({}), the image needs {} bytes ({})",
                disk.size,
                gib(disk.size),
                image_size,
                gib(image_size)
            ),
            "use a card at least as large as the image",
        ));
    }
    Ok(())
}

/// A refusal: why, and what the operator can do.
pub(crate) fn refused(
    device: &Path,
    reason: impl Into<String>,
    hint: impl Into<String>,
) -> DeviceError {
    DeviceError::Refused {
        device: device.to_path_buf(),
        reason: reason.into(),
        hint: hint.into(),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
