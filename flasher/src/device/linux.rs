//! Linux backend: discovery from sysfs.

use std::path::{Path, PathBuf};

use super::{Backend, DeviceError, Disk};

/// The Linux backend.
pub struct Linux;

fn sysfs(name: &str, attr: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/block/{name}/{attr}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn disk_from_sysfs(name: &str) -> Option<Disk> {
    // Partitions have a `partition` attribute; only whole disks are cards.
    if sysfs(name, "partition").is_some() {
        return None;
    }
    let sectors: u64 = sysfs(name, "size")?.parse().ok()?;
    let vendor = sysfs(name, "device/vendor").unwrap_or_default();
    let model = sysfs(name, "device/model").unwrap_or_default();
    let link = std::fs::read_link(format!("/sys/class/block/{name}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let bus = if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else if name.starts_with("nvme") {
        "nvme"
    } else if link.contains("/usb") {
        "usb"
    } else {
        "sata"
    };
    Some(Disk {
        path: PathBuf::from(format!("/dev/{name}")),
        model: format!("{vendor} {model}").trim().to_string(),
        size: sectors * 512,
        bus: bus.to_string(),
        removable: sysfs(name, "removable").as_deref() == Some("1"),
        read_only: sysfs(name, "ro").as_deref() == Some("1"),
    })
}

impl Backend for Linux {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        let rd = std::fs::read_dir("/sys/class/block").map_err(|source| DeviceError::Io {
            op: "listing",
            device: PathBuf::from("/sys/class/block"),
            source,
        })?;
        let mut disks: Vec<Disk> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| disk_from_sysfs(&e.file_name().to_string_lossy()))
            .filter(|d| d.size > 0)
            .collect();
        disks.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(disks)
    }

    fn describe(&self, device: &Path) -> Result<Disk, DeviceError> {
        let canon = std::fs::canonicalize(device).map_err(|source| DeviceError::Io {
            op: "opening",
            device: device.to_path_buf(),
            source,
        })?;
        let name = canon
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        disk_from_sysfs(&name).ok_or_else(|| DeviceError::Io {
            op: "describing",
            device: device.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a whole disk (a partition, or not a block device); name the disk itself, e.g. /dev/sdb",
            ),
        })
    }
}
