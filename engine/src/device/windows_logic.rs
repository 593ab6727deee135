//! The Windows backend's decisions, apart from the Win32 calls that feed them.
//!
//! [`Win32`] is the boundary: each method is one Win32 call, or a short fixed
//! sequence of them, in `windows_ffi.rs` (the only Windows code with `unsafe`).
//! Everything else lives here and is tested on every OS against a recorded fake:
//! which disks are listed, the safety rules, the order of lock, dismount, clear and
//! write, keeping the volume locks until the card is verified, and what each Win32
//! error means to the operator (that last in `windows_logic/errors.rs`, the
//! IOCTL buffers' layouts in `windows_logic/parse.rs`).
//!
//! ```text
//! inspect   disk facts + every volume's disk extents ──► rules::check_disk, then
//!           the system, boot, page-file, BitLocker and spanned volumes, elevation
//! open      (after confirmation) for each volume on the disk: open, FSCTL_LOCK_VOLUME
//!           (retried while Explorer or an antivirus scan still holds it),
//!           FSCTL_DISMOUNT_VOLUME; the handles stay in the medium
//!           ──► \\.\PhysicalDriveN, unbuffered and write-through
//!           ──► IOCTL_DISK_DELETE_DRIVE_LAYOUT
//! pipeline  write (first MiB last), read back, wipe on failure: all while locked
//! commit    IOCTL_DISK_UPDATE_PROPERTIES (also on drop after a failure), then the
//!           volume handles close and Windows mounts what the card now holds
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::rules::{check_disk, is_removable_like, refused};
use super::{Backend, Candidate, DeviceError, Disk, Partition, Policy};
use crate::aligned::ALIGN;
use crate::medium::Medium;
use errors::{
    blocked_by_security, explain_io, lock_is_busy, not_elevated, open_disk_error, volume_error,
};
pub(crate) use parse::{multi_sz, parse_device_descriptor, parse_disk_extents, parse_geometry_ex};

mod errors;
mod parse;

/// Win32 error codes the backend explains (winerror.h). Defined here, not taken
/// from windows-sys, so this module builds and is tested on every OS.
pub(crate) mod code {
    pub const FILE_NOT_FOUND: i32 = 2;
    pub const PATH_NOT_FOUND: i32 = 3;
    pub const ACCESS_DENIED: i32 = 5;
    pub const WRITE_PROTECT: i32 = 19;
    pub const NOT_READY: i32 = 21;
    pub const SHARING_VIOLATION: i32 = 32;
    pub const LOCK_VIOLATION: i32 = 33;
    /// Windows Defender (or another antivirus) blocked the operation.
    pub const VIRUS_INFECTED: i32 = 225;
    pub const VIRUS_DELETED: i32 = 226;
    pub const NO_SUCH_DEVICE: i32 = 433;
    pub const MEDIA_CHANGED: i32 = 1110;
    pub const DEVICE_NOT_CONNECTED: i32 = 1167;
    /// `FVE_E_LOCKED_VOLUME`: the volume is BitLocker-encrypted and locked.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub const FVE_LOCKED_VOLUME: i32 = 0x8031_0000_u32 as i32;
}

/// How many `\\.\PhysicalDriveN` are tried when listing (numbers can have gaps
/// after a disk is removed).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) const MAX_DISKS: u32 = 64;
/// A volume Explorer, the search indexer or an antivirus scan still holds is
/// retried this many times, [`LOCK_RETRY`] apart, before giving up.
const LOCK_ATTEMPTS: u32 = 10;
const LOCK_RETRY: Duration = Duration::from_millis(500);

/// Why disks are not offered under Wine: its `\\.\PhysicalDriveN` are stand-ins
/// for the host's directories or block devices, and what the safety rules read
/// (the Windows directory's volume, the boot partition, the page file) describes
/// the Wine prefix, not the host, so the host's own system disk would not be
/// recognised.
const WINE: &str = "this is Wine, which gives Windows programs no real physical disks (its disks stand for the host's directories or devices, and the safety rules cannot see the host's system disk); write the card image with --output FILE.img and write it with a Linux tool (or run metis-flash on Linux)";

/// One physical disk as the storage stack describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskFacts {
    /// N of `\\.\PhysicalDriveN`.
    pub number: u32,
    /// From `IOCTL_STORAGE_QUERY_PROPERTY` (`StorageDeviceProperty`).
    pub vendor: String,
    /// Product id, same source.
    pub product: String,
    /// `STORAGE_BUS_TYPE`.
    pub bus: u32,
    /// `RemovableMedia` of the device descriptor.
    pub removable: bool,
    /// Bytes (`IOCTL_DISK_GET_DRIVE_GEOMETRY_EX`).
    pub size: u64,
    /// Bytes per logical sector, same source.
    pub sector_size: u32,
    /// `IOCTL_DISK_IS_WRITABLE` failed with `ERROR_WRITE_PROTECT`.
    pub read_only: bool,
}

/// A part of a volume on one disk (`VOLUME_DISK_EXTENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Disk number.
    pub disk: u32,
    /// Byte offset on that disk.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

/// One volume (`FindFirstVolumeW` … `FindNextVolumeW`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VolumeFacts {
    /// `\\?\Volume{GUID}\`.
    pub name: String,
    /// Its NT device (`\Device\HarddiskVolume3`, from `QueryDosDeviceW`).
    pub device: String,
    /// Drive letters and folder mount points (`E:\`).
    pub mount_points: Vec<String>,
    /// Where it lies; empty for volumes that are not on a disk (CD, network).
    pub extents: Vec<Extent>,
    /// `pagefile.sys` or `swapfile.sys` is at the root of one of its mount points.
    pub page_file: bool,
    /// BitLocker-encrypted and locked: its contents cannot be seen.
    pub bitlocker_locked: bool,
}

/// What the whole machine says about where it runs from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SystemFacts {
    /// `GetSystemWindowsDirectoryW` (`C:\Windows`).
    pub windows_dir: String,
    /// The boot partition's NT device (`HKLM\SYSTEM\Setup`, `SystemPartition`): the
    /// EFI system or System Reserved partition.
    pub system_partition: Option<String>,
    /// The process token is elevated (run as administrator).
    pub elevated: bool,
    /// Wine runs us (its registry has `HKLM\Software\Wine`).
    pub wine: bool,
}

/// The Win32 calls the backend makes; `windows_ffi::Api` makes them for real.
pub(crate) trait Win32: Send + Sync + 'static {
    /// An open volume handle; dropping it closes the handle, which unlocks the volume.
    type Volume: Send + Sync + 'static;
    /// An open disk.
    type Disk: RawDisk + 'static;
    /// The N below [`MAX_DISKS`] for which `\\.\PhysicalDriveN` exists.
    fn disk_numbers(&self) -> Vec<u32>;
    /// Describes `\\.\PhysicalDriveN` (opened without read or write access, so
    /// this works without administrator rights).
    fn disk(&self, number: u32) -> io::Result<DiskFacts>;
    /// Every volume of the machine with its extents.
    fn volumes(&self) -> io::Result<Vec<VolumeFacts>>;
    /// Where the machine runs from, and who we run as.
    fn system(&self) -> SystemFacts;
    /// Opens a volume (`\\?\Volume{GUID}\`) for reading and writing.
    fn open_volume(&self, name: &str) -> io::Result<Self::Volume>;
    /// `FSCTL_LOCK_VOLUME`: nothing else may open files on it while we hold it.
    fn lock_volume(&self, volume: &Self::Volume) -> io::Result<()>;
    /// `FSCTL_DISMOUNT_VOLUME`: its file system lets go of the disk.
    fn dismount_volume(&self, volume: &Self::Volume) -> io::Result<()>;
    /// Opens `\\.\PhysicalDriveN` for unbuffered, write-through reads and writes.
    fn open_disk(&self, number: u32) -> io::Result<Self::Disk>;
    /// `IOCTL_DISK_DELETE_DRIVE_LAYOUT`: Windows forgets the old partitions, so it
    /// has nothing to mount while the card is written.
    fn delete_layout(&self, disk: &Self::Disk) -> io::Result<()>;
    /// `IOCTL_DISK_UPDATE_PROPERTIES`: Windows reads the new partition table.
    fn update_properties(&self, disk: &Self::Disk) -> io::Result<()>;
    /// Waits before retrying a lock.
    fn pause(&self, time: Duration);
}

/// Positional I/O on an open disk.
pub(crate) trait RawDisk: Send + Sync {
    /// Writes all of `buf` at `offset` (sector-aligned).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads until `buf` is full or the disk ends; returns the bytes read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `FlushFileBuffers`.
    fn flush(&self) -> io::Result<()>;
}

/// The path of disk `number`.
pub(crate) fn disk_path(number: u32) -> PathBuf {
    PathBuf::from(format!(r"\\.\PhysicalDrive{number}"))
}

/// N of `\\.\PhysicalDriveN` (also `\\?\…` and a bare `PhysicalDriveN`, any case).
pub(crate) fn drive_number(path: &Path) -> Option<u32> {
    let text = path.to_str()?;
    let rest = text
        .strip_prefix(r"\\.\")
        .or_else(|| text.strip_prefix(r"\\?\"))
        .or_else(|| text.strip_prefix("//./"))
        .unwrap_or(text);
    let digits = rest
        .get(..13)
        .filter(|p| p.eq_ignore_ascii_case("PhysicalDrive"))
        .map(|_| &rest[13..])?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `E:` or `E:\` as the volume mount point `E:\`.
fn drive_letter(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let b = text.as_bytes();
    let letter_only = b.len() == 2 || (b.len() == 3 && (b[2] == b'\\' || b[2] == b'/'));
    (letter_only && b[0].is_ascii_alphabetic() && b[1] == b':')
        .then(|| format!("{}:\\", (b[0] as char).to_ascii_uppercase()))
}

/// The bus name the picker shows, from `STORAGE_BUS_TYPE`.
pub(crate) fn bus_name(bus: u32) -> &'static str {
    match bus {
        0x01 => "scsi",
        0x02 => "atapi",
        0x03 => "ata",
        0x04 => "1394",
        0x06 => "fibre",
        0x07 => "usb",
        0x08 => "raid",
        0x09 => "iscsi",
        0x0A => "sas",
        0x0B => "sata",
        0x0C => "sd",
        0x0D => "mmc",
        0x0E => "virtual",
        0x0F => "vhd",
        0x10 => "spaces",
        0x11 => "nvme",
        0x12 => "scm",
        0x13 => "ufs",
        _ => "unknown",
    }
}

fn to_disk(f: &DiskFacts) -> Disk {
    Disk {
        path: disk_path(f.number),
        model: format!("{} {}", f.vendor, f.product).trim().to_string(),
        size: f.size,
        bus: bus_name(f.bus).to_string(),
        removable: f.removable,
        read_only: f.read_only,
    }
}

/// How a volume is named in messages: its first mount point, else its GUID path.
fn volume_label(v: &VolumeFacts) -> &str {
    v.mount_points.first().unwrap_or(&v.name)
}

/// The disks and volumes the safety rules look at.
#[derive(Debug, Clone)]
struct Facts {
    disk: DiskFacts,
    /// The volumes with an extent on this disk.
    volumes: Vec<VolumeFacts>,
    system: SystemFacts,
}

/// The safety rules, on what was read: the candidate, or why the disk is refused.
fn judge(
    device: &Path,
    f: &Facts,
    image_size: u64,
    policy: Policy,
) -> Result<Candidate, DeviceError> {
    let disk = to_disk(&f.disk);
    check_disk(device, &disk, image_size, policy)?;
    let number = f.disk.number;
    // In disk order, as the card's partitions are.
    let mut volumes: Vec<&VolumeFacts> = f.volumes.iter().collect();
    volumes.sort_by_key(|v| {
        v.extents
            .iter()
            .find(|e| e.disk == number)
            .map(|e| e.offset)
    });
    let windows_root = f.system.windows_dir.get(..3).unwrap_or_default();
    for v in &volumes {
        let label = volume_label(v);
        if !windows_root.is_empty()
            && v.mount_points
                .iter()
                .any(|m| m.eq_ignore_ascii_case(windows_root))
        {
            return Err(refused(
                device,
                format!(
                    "it holds the running system: {label} holds {}",
                    f.system.windows_dir
                ),
                "this is the disk Windows runs from; pick the card with `metis-flash devices`",
            ));
        }
        if f.system.system_partition.as_deref() == Some(v.device.as_str()) {
            return Err(refused(
                device,
                format!(
                    "it holds this machine's boot partition ({}, the EFI system or System Reserved partition)",
                    v.device
                ),
                "this is the disk Windows boots from; pick the card with `metis-flash devices`",
            ));
        }
        if v.page_file {
            return Err(refused(
                device,
                format!("{label} on it holds the page file"),
                "if you really mean this disk, move the page file off it (System > Advanced system settings > Performance > Virtual memory) and restart",
            ));
        }
        if v.bitlocker_locked {
            return Err(refused(
                device,
                format!("{label} on it is encrypted with BitLocker and locked, so what it holds cannot be checked"),
                format!("unlock {label} (in Explorer, or `manage-bde -unlock {label}`) to see that it is the card you mean, then retry"),
            ));
        }
        if let Some(other) = v.extents.iter().find(|e| e.disk != number) {
            return Err(refused(
                device,
                format!(
                    "its volume {label} spans {} as well (a dynamic disk or Storage Spaces)",
                    disk_path(other.disk).display()
                ),
                "a card holds no such volume; pick the card with `metis-flash devices`",
            ));
        }
    }
    let removable = is_removable_like(&disk);
    if !removable {
        if let Some(v) = volumes.iter().find(|v| !v.mount_points.is_empty()) {
            return Err(refused(
                device,
                format!("{} on it is mounted", v.mount_points.join(", ")),
                format!(
                    "this is not a removable disk, so Metis does not dismount it for you: `mountvol {} /p` (as administrator) if you are sure, then retry",
                    v.mount_points[0].trim_end_matches('\\')
                ),
            ));
        }
    }
    if !f.system.elevated {
        return Err(not_elevated(device));
    }
    Ok(Candidate {
        disk,
        partitions: volumes
            .iter()
            .map(|v| Partition {
                path: PathBuf::from(&v.name),
                size: v.extents.iter().map(|e| e.length).sum(),
                mounts: v.mount_points.iter().map(PathBuf::from).collect(),
            })
            .collect(),
        // Every volume, mounted or not: an unlocked one could be mounted mid-write.
        to_unmount: volumes.iter().map(|v| PathBuf::from(&v.name)).collect(),
    })
}

/// The Windows backend over any [`Win32`].
pub(crate) struct WindowsBackend<W>(pub Arc<W>);

impl<W: Win32> WindowsBackend<W> {
    /// The disk number `device` names, or why it names none.
    fn number_of(&self, device: &Path) -> Result<u32, DeviceError> {
        if let Some(n) = drive_number(device) {
            return Ok(n);
        }
        let Some(letter) = drive_letter(device) else {
            return Err(refused(
                device,
                "not a physical disk",
                r"name a whole disk such as \\.\PhysicalDrive2 (`metis-flash devices` lists them), or write an image file with --output",
            ));
        };
        let disk = self
            .0
            .volumes()
            .ok()
            .and_then(|vs| {
                vs.into_iter().find(|v| {
                    v.mount_points
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(&letter))
                })
            })
            .and_then(|v| {
                v.extents
                    .first()
                    .map(|e| disk_path(e.disk).display().to_string())
            });
        Err(match disk {
            Some(disk) => refused(
                device,
                format!("{letter} is a volume on {disk}, not a whole disk"),
                format!("a card is written whole: use --device {disk}"),
            ),
            None => refused(
                device,
                format!("{letter} is a volume, not a whole disk"),
                r"name a whole disk such as \\.\PhysicalDrive2 (`metis-flash devices` lists them)",
            ),
        })
    }

    fn facts(&self, device: &Path, number: u32) -> Result<Facts, DeviceError> {
        let system = self.0.system();
        let disk = self
            .0
            .disk(number)
            .map_err(|e| open_disk_error(device, e, system.elevated))?;
        let volumes = self
            .0
            .volumes()
            .map_err(|source| DeviceError::Io {
                op: "listing the volumes of",
                device: device.to_path_buf(),
                source,
            })?
            .into_iter()
            .filter(|v| v.extents.iter().any(|e| e.disk == number))
            .collect();
        Ok(Facts {
            disk,
            volumes,
            system,
        })
    }

    /// Opens, locks (retrying while something holds it) and dismounts one volume.
    fn lock(&self, device: &Path, name: &str, label: &str) -> Result<W::Volume, DeviceError> {
        let volume = self
            .0
            .open_volume(name)
            .map_err(|e| volume_error(device, label, "opening volume", e))?;
        let mut attempt = 1;
        loop {
            match self.0.lock_volume(&volume) {
                Ok(()) => break,
                Err(e) if attempt < LOCK_ATTEMPTS && lock_is_busy(&e) => {
                    self.0.pause(LOCK_RETRY);
                    attempt += 1;
                }
                Err(e) => return Err(volume_error(device, label, "locking volume", e)),
            }
        }
        self.0
            .dismount_volume(&volume)
            .map_err(|e| volume_error(device, label, "dismounting volume", e))?;
        Ok(volume)
    }
}

impl<W: Win32> Backend for WindowsBackend<W> {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        if self.0.system().wine {
            return Err(DeviceError::Io {
                op: "listing",
                device: PathBuf::from(r"\\.\PhysicalDrive*"),
                source: io::Error::new(io::ErrorKind::Unsupported, WINE),
            });
        }
        let described: Vec<DiskFacts> = self
            .0
            .disk_numbers()
            .into_iter()
            .filter_map(|n| self.0.disk(n).ok())
            .collect();
        if described.is_empty() {
            // A Windows machine always has the disk it runs from.
            return Err(DeviceError::Io {
                op: "listing",
                device: PathBuf::from(r"\\.\PhysicalDrive*"),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "Windows shows no \\\\.\\PhysicalDriveN that can be described (is this a sandbox or a container?)",
                ),
            });
        }
        Ok(described
            .iter()
            .filter(|f| f.size > 0)
            .map(to_disk)
            .collect())
    }

    fn describe(&self, device: &Path) -> Result<Disk, DeviceError> {
        let number = self.number_of(device)?;
        let elevated = self.0.system().elevated;
        self.0
            .disk(number)
            .map(|f| to_disk(&f))
            .map_err(|e| open_disk_error(device, e, elevated))
    }

    fn inspect(
        &self,
        device: &Path,
        image_size: u64,
        policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        if self.0.system().wine {
            return Err(refused(
                device,
                WINE,
                "write the card image with --output FILE.img instead",
            ));
        }
        let number = self.number_of(device)?;
        judge(device, &self.facts(device, number)?, image_size, policy)
    }

    fn open(&self, candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        let path = &candidate.disk.path;
        let number = self.number_of(path)?;
        let elevated = self.0.system().elevated;
        if !elevated {
            return Err(not_elevated(path));
        }
        let facts = self
            .0
            .disk(number)
            .map_err(|e| open_disk_error(path, e, elevated))?;
        if facts.sector_size as usize > ALIGN {
            return Err(refused(
                path,
                format!(
                    "its logical sector size is {} bytes; Metis writes in 4096-byte units",
                    facts.sector_size
                ),
                "use another card or adapter",
            ));
        }
        let mut volumes = Vec::with_capacity(candidate.to_unmount.len());
        for name in &candidate.to_unmount {
            let name = name.to_string_lossy();
            let label = candidate
                .partitions
                .iter()
                .find(|p| p.path.as_os_str() == name.as_ref())
                .and_then(|p| p.mounts.first())
                .map(|m| m.display().to_string())
                .unwrap_or_else(|| name.to_string());
            volumes.push(self.lock(path, &name, &label)?);
        }
        let disk = self
            .0
            .open_disk(number)
            .map_err(|e| open_disk_error(path, e, elevated))?;
        self.0
            .delete_layout(&disk)
            .map_err(|e| match e.raw_os_error() {
                Some(code::ACCESS_DENIED) => {
                    blocked_by_security(path, "clearing its partition table")
                }
                _ => DeviceError::Io {
                    op: "clearing the partition table of",
                    device: path.clone(),
                    source: e,
                },
            })?;
        Ok(Box::new(WindowsDisk {
            api: Arc::clone(&self.0),
            disk,
            volumes,
            size: facts.size,
            path: path.clone(),
            refreshed: AtomicBool::new(false),
        }))
    }
}

/// A physical disk opened for unbuffered, write-through I/O, with every volume
/// on it locked and dismounted for as long as it lives.
pub(crate) struct WindowsDisk<W: Win32> {
    api: Arc<W>,
    disk: W::Disk,
    /// Closing a volume handle unlocks the volume, so Explorer could mount it
    /// again mid-write: they are held until the medium is dropped, after the
    /// read-back (and after the wipe, on failure).
    #[allow(dead_code)]
    volumes: Vec<W::Volume>,
    size: u64,
    path: PathBuf,
    refreshed: AtomicBool,
}

impl<W: Win32> WindowsDisk<W> {
    /// Lets Windows read the partition table the card holds now (once).
    fn refresh(&self) -> io::Result<()> {
        if self.refreshed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.api.update_properties(&self.disk)
    }
}

impl<W: Win32> Drop for WindowsDisk<W> {
    fn drop(&mut self) {
        // After a failure the card was wiped: Windows should see it empty. The
        // volume handles close after this, with the fields.
        let _ = self.refresh();
    }
}

impl<W: Win32> Medium for WindowsDisk<W> {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.disk.write_at(buf, offset).map_err(explain_io)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.disk.read_at(buf, offset).map_err(explain_io)
    }
    fn sync(&self) -> io::Result<()> {
        self.disk.flush().map_err(explain_io)
    }
    fn zero_range(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        // Windows has no "reads back as zeros" guarantee for a raw disk range
        // (TRIM does not promise it): the writer sends the zeros.
        Ok(false)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn is_direct(&self) -> bool {
        true
    }
    fn is_disk(&self) -> bool {
        true
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn commit(&self) -> io::Result<()> {
        self.refresh()
    }
}

#[cfg(test)]
mod tests;
