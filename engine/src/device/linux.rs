//! Linux backend: discovery from sysfs, the safety rules, and raw `O_DIRECT | O_EXCL`
//! access to the chosen disk.
//!
//! A disk's *family* is the disk, its partitions and, recursively, every device
//! stacked on any of them (`holders/`: device-mapper, LVM, md, dm-crypt). The disk is
//! refused when any member of its family holds the running system, active swap, a
//! stacked device, or (unless the disk is removable and the operator confirms) a
//! mounted filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::rules::{check_disk, is_removable_like, refused};
use super::{linux_ioctl, Backend, Candidate, DeviceError, Disk, Partition, Policy};
use crate::medium::{read_full_at, write_all_at, Medium};

/// The Linux backend.
pub struct Linux;

/// Mount points whose disk is the one this machine runs from.
const SYSTEM_MOUNTS: &[&str] = &["/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var"];

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
    } else if link.contains("/usb") {
        "usb"
    } else if name.starts_with("mmcblk") || link.contains("/mmc") {
        "mmc"
    } else if name.starts_with("nvme") {
        "nvme"
    } else if link.contains("/virtio") {
        "virtio"
    } else if name.starts_with("dm-") || name.starts_with("md") {
        "virtual"
    } else {
        "sata"
    };
    // virtio disks report only the PCI vendor id (0x1af4) and no model.
    let model = if bus == "virtio" && model.is_empty() {
        "virtio disk".to_string()
    } else {
        format!("{vendor} {model}").trim().to_string()
    };
    Some(Disk {
        path: PathBuf::from(format!("/dev/{name}")),
        model,
        size: sectors * 512,
        bus: bus.to_string(),
        removable: sysfs(name, "removable").as_deref() == Some("1"),
        read_only: sysfs(name, "ro").as_deref() == Some("1"),
    })
}

/// Partitions of disk `name` (sysfs names), in order.
fn partitions_of(name: &str) -> Vec<String> {
    let mut parts: Vec<String> = std::fs::read_dir(format!("/sys/block/{name}"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(name) && sysfs(n, "partition").is_some())
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by_key(|n| sysfs(n, "partition").and_then(|p| p.parse::<u32>().ok()));
    parts
}

/// Devices stacked on `name` (device-mapper, md, …), recursively.
fn holders_of(name: &str, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(format!("/sys/class/block/{name}/holders")) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let holder = e.file_name().to_string_lossy().to_string();
        if out.insert(holder.clone()) {
            holders_of(&holder, out);
        }
    }
}

/// What `inspect` read about a disk: sysfs, mountinfo and swaps.
#[derive(Debug, Clone)]
struct Facts {
    /// Sysfs name, e.g. `sdb`.
    name: String,
    disk: Disk,
    /// Its partitions' sysfs names, in order, and their sizes in bytes.
    parts: Vec<String>,
    part_sizes: Vec<u64>,
    /// Devices built on it or its partitions (dm, md, …).
    stacked: BTreeSet<String>,
    /// Mount points of the disk, each partition and each stacked device.
    mounts: BTreeMap<String, Vec<PathBuf>>,
    /// Devices with active swap.
    swaps: BTreeSet<String>,
}

/// The safety rules, on what was read: the candidate, or why the disk is refused.
fn judge(
    device: &Path,
    f: &Facts,
    image_size: u64,
    policy: Policy,
) -> Result<Candidate, DeviceError> {
    let (name, disk, parts, stacked, swaps) = (&f.name, &f.disk, &f.parts, &f.stacked, &f.swaps);
    let mounts_of = |n: &str| f.mounts.get(n).cloned().unwrap_or_default();
    check_disk(device, disk, image_size, policy)?;

    let members: Vec<&String> = std::iter::once(name)
        .chain(parts.iter())
        .chain(stacked.iter())
        .collect();
    for member in &members {
        for point in mounts_of(member) {
            if SYSTEM_MOUNTS.iter().any(|s| Path::new(s) == point) {
                return Err(refused(
                    device,
                    format!(
                        "it holds the running system: /dev/{member} is mounted on {}",
                        point.display()
                    ),
                    "this is the disk this machine runs from; pick the card with `metis-flash devices`",
                ));
            }
        }
        if swaps.contains(*member) {
            return Err(refused(
                device,
                format!("/dev/{member} on it is active swap"),
                format!("if you really mean this disk, run `swapoff /dev/{member}` first"),
            ));
        }
    }
    if let Some(holder) = stacked.iter().next() {
        let used: Vec<String> = stacked
            .iter()
            .flat_map(|h| mounts_of(h))
            .map(|p| p.display().to_string())
            .collect();
        return Err(refused(
            device,
            format!(
                "/dev/{holder} (device-mapper, LVM, md or dm-crypt) is built on it{}",
                if used.is_empty() {
                    String::new()
                } else {
                    format!(" and mounted on {}", used.join(", "))
                }
            ),
            "unmount it and take the stacked device down (`umount`, `vgchange -an`, `cryptsetup close` or `mdadm --stop`), then retry",
        ));
    }
    let removable = is_removable_like(disk);
    let mut to_unmount = Vec::new();
    for member in std::iter::once(name).chain(parts.iter()) {
        let points = mounts_of(member);
        if points.is_empty() {
            continue;
        }
        if !removable {
            return Err(refused(
                device,
                format!(
                    "/dev/{member} on it is mounted on {}",
                    points
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "this is not a removable disk, so Metis does not unmount it for you: `umount {}` if you are sure, then retry",
                    points[0].display()
                ),
            ));
        }
        to_unmount.extend(points);
    }
    let partitions = parts
        .iter()
        .zip(&f.part_sizes)
        .map(|(p, size)| Partition {
            path: PathBuf::from(format!("/dev/{p}")),
            size: *size,
            mounts: mounts_of(p),
        })
        .collect();
    Ok(Candidate {
        disk: disk.clone(),
        partitions,
        to_unmount,
    })
}

/// One line of `/proc/self/mountinfo` that matters here.
struct Mount {
    devnum: String,
    source: String,
    point: PathBuf,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                devnum: fields.get(2)?.to_string(),
                point: PathBuf::from(unescape(fields.get(4)?)),
                source: unescape(fields.get(sep + 2)?),
            })
        })
        .collect()
}

/// Device names (sysfs names) with active swap.
fn swap_devices() -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| std::fs::canonicalize(unescape(p)).ok())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .collect()
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

    fn inspect(
        &self,
        device: &Path,
        image_size: u64,
        policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        let canon = std::fs::canonicalize(device).map_err(|source| DeviceError::Io {
            op: "opening",
            device: device.to_path_buf(),
            source,
        })?;
        let is_block = std::fs::metadata(&canon)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        let name = canon
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !is_block || !Path::new(&format!("/sys/class/block/{name}")).exists() {
            return Err(refused(
                device,
                "not a block device",
                "name a whole disk such as /dev/sdb or /dev/mmcblk0 (`metis-flash devices` lists them), or write an image file with --output",
            ));
        }
        if sysfs(&name, "partition").is_some() {
            let parent = std::fs::read_link(format!("/sys/class/block/{name}"))
                .ok()
                .and_then(|p| {
                    p.parent()
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().to_string())
                })
                .unwrap_or_else(|| "…".into());
            return Err(refused(
                device,
                format!("it is a partition of /dev/{parent}, not a whole disk"),
                format!("a card is written whole: use --device /dev/{parent}"),
            ));
        }
        let disk = disk_from_sysfs(&name).ok_or_else(|| {
            refused(
                device,
                "sysfs does not describe it as a disk",
                "name a whole disk",
            )
        })?;
        let parts = partitions_of(&name);
        let mut stacked = BTreeSet::new();
        holders_of(&name, &mut stacked);
        for p in &parts {
            holders_of(p, &mut stacked);
        }
        let devnum = |n: &str| sysfs(n, "dev").unwrap_or_default();
        let mountinfo = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").map_err(
            |source| DeviceError::Io {
                op: "reading mounts for",
                device: device.to_path_buf(),
                source,
            },
        )?);
        let mounts_of = |n: &str| -> Vec<PathBuf> {
            let num = devnum(n);
            let dev = format!("/dev/{n}");
            mountinfo
                .iter()
                .filter(|m| {
                    (!num.is_empty() && m.devnum == num)
                        || m.source == dev
                        || std::fs::canonicalize(&m.source)
                            .map(|c| c == Path::new(&dev))
                            .unwrap_or(false)
                })
                .map(|m| m.point.clone())
                .collect()
        };
        let mounts = std::iter::once(&name)
            .chain(parts.iter())
            .chain(stacked.iter())
            .map(|n| (n.clone(), mounts_of(n)))
            .collect();
        let part_sizes = parts
            .iter()
            .map(|p| {
                sysfs(p, "size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 512
            })
            .collect();
        judge(
            device,
            &Facts {
                name,
                disk,
                parts,
                part_sizes,
                stacked,
                mounts,
                swaps: swap_devices(),
            },
            image_size,
            policy,
        )
    }

    fn open(&self, candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        let path = &candidate.disk.path;
        // Deepest mounts first, so nested mount points come off before their parents.
        let mut points = candidate.to_unmount.clone();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            nix::mount::umount(&point).map_err(|e| {
                refused(
                    path,
                    format!("could not unmount {}: {e}", point.display()),
                    "close programs using files on the card (`fuser -vm` shows them) and retry",
                )
            })?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let logical: u64 = sysfs(&name, "queue/logical_block_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(512);
        if logical > crate::aligned::ALIGN as u64 {
            return Err(refused(
                path,
                format!(
                    "its logical block size is {logical} bytes; Metis writes in 4096-byte units"
                ),
                "use another card or adapter",
            ));
        }
        // O_EXCL on a block device: the kernel refuses the open while the disk is
        // mounted or opened exclusively elsewhere, and refuses mounts while we hold it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_EXCL)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => refused(
                    path,
                    "it is in use (mounted, or opened exclusively by another program)",
                    "unmount its partitions and close programs using it, then retry",
                ),
                Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => refused(
                    path,
                    format!("it cannot be opened for writing ({e})"),
                    "run as root (or a user in the `disk` group) and check the card's lock switch",
                ),
                _ => DeviceError::Io {
                    op: "opening",
                    device: path.clone(),
                    source: e,
                },
            })?;
        let size = sysfs(&name, "size")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| s * 512)
            .unwrap_or(candidate.disk.size);
        Ok(Box::new(LinuxDisk {
            file,
            size,
            path: path.clone(),
        }))
    }
}

/// A whole disk opened `O_RDWR | O_DIRECT | O_EXCL`.
struct LinuxDisk {
    file: File,
    size: u64,
    path: PathBuf,
}

impl Medium for LinuxDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        write_all_at(&self.file, buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.file, buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool> {
        // A discard lets the card's controller reclaim the blocks; it does not say
        // what they read back as, so the zero-out that follows is what we rely on.
        let _ = linux_ioctl::discard(&self.file, offset, len);
        match linux_ioctl::zero_out(&self.file, offset, len) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// A 32 GiB USB card `sdb` with two partitions, nothing mounted or stacked.
    fn card() -> Facts {
        Facts {
            name: "sdb".into(),
            disk: Disk {
                path: "/dev/sdb".into(),
                model: "Generic SD/MMC".into(),
                size: 32 * GIB,
                bus: "usb".into(),
                removable: true,
                read_only: false,
            },
            parts: vec!["sdb1".into(), "sdb2".into()],
            part_sizes: vec![256 << 20, 31 * GIB],
            stacked: BTreeSet::new(),
            mounts: BTreeMap::new(),
            swaps: BTreeSet::new(),
        }
    }

    fn refusal(f: &Facts, policy: Policy) -> String {
        match judge(Path::new("/dev/sdb"), f, 4 * GIB, policy) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_removable_card_is_accepted_and_its_mounts_are_unmounted_after_confirmation() {
        let mut f = card();
        f.mounts
            .insert("sdb1".into(), vec!["/media/op/system-boot".into()]);
        f.mounts.insert(
            "sdb2".into(),
            vec![
                "/media/op/writable".into(),
                "/media/op/writable/boot".into(),
            ],
        );
        let c = judge(Path::new("/dev/sdb"), &f, 4 * GIB, Policy::default()).unwrap();
        assert_eq!(
            c.to_unmount,
            [
                "/media/op/system-boot",
                "/media/op/writable",
                "/media/op/writable/boot"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(c.partitions.len(), 2);
        assert_eq!(c.partitions[1].size, 31 * GIB);
        assert_eq!(
            c.partitions[0].mounts,
            [PathBuf::from("/media/op/system-boot")]
        );
    }

    #[test]
    fn stacked_devices_refuse_the_disk_naming_them_and_their_mounts() {
        let mut f = card();
        f.stacked.insert("dm-0".into());
        f.mounts.insert("dm-0".into(), vec!["/srv/data".into()]);
        let e = refusal(&f, Policy::default());
        assert!(e.contains("/dev/dm-0"), "{e}");
        assert!(e.contains("mounted on /srv/data"), "{e}");
        assert!(e.contains("vgchange -an"), "{e}");
        // Even unmounted, an md array on it refuses it.
        let mut f = card();
        f.stacked.insert("md127".into());
        let e = refusal(&f, Policy::default());
        assert!(e.contains("/dev/md127") && !e.contains("mounted on"), "{e}");
    }

    #[test]
    fn the_running_system_and_swap_refuse_the_disk_even_when_removable() {
        for point in ["/", "/boot/firmware"] {
            let mut f = card();
            f.mounts.insert("sdb2".into(), vec![point.into()]);
            let e = refusal(&f, Policy::default());
            assert!(e.contains("it holds the running system"), "{e}");
            assert!(
                e.contains(&format!("/dev/sdb2 is mounted on {point}")),
                "{e}"
            );
        }
        // The system on a stacked device (root on LVM on this disk).
        let mut f = card();
        f.stacked.insert("dm-1".into());
        f.mounts.insert("dm-1".into(), vec!["/".into()]);
        assert!(refusal(&f, Policy::default()).contains("/dev/dm-1 is mounted on /"));
        let mut f = card();
        f.swaps.insert("sdb2".into());
        assert!(refusal(&f, Policy::default()).contains("swapoff /dev/sdb2"));
    }

    #[test]
    fn a_fixed_disk_needs_the_override_and_is_never_unmounted_for_the_operator() {
        let mut f = card();
        f.disk.removable = false;
        f.disk.bus = "sata".into();
        let e = refusal(&f, Policy::default());
        assert!(
            e.contains("not a removable, USB or SD disk (bus sata)"),
            "{e}"
        );
        assert!(e.contains("--force-non-removable"), "{e}");
        let forced = Policy {
            force_non_removable: true,
        };
        assert!(judge(Path::new("/dev/sdb"), &f, 4 * GIB, forced).is_ok());
        f.mounts.insert("sdb1".into(), vec!["/mnt/old".into()]);
        let e = refusal(&f, forced);
        assert!(e.contains("/dev/sdb1 on it is mounted on /mnt/old"), "{e}");
        assert!(e.contains("does not unmount it for you"), "{e}");
    }

    #[test]
    fn read_only_and_too_small_media_are_refused() {
        let mut f = card();
        f.disk.read_only = true;
        assert!(refusal(&f, Policy::default()).contains("lock switch"));
        let mut f = card();
        f.disk.size = 2 * GIB;
        let e = refusal(&f, Policy::default());
        assert!(e.contains("the image needs 4294967296 bytes"), "{e}");
    }

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040card rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    37 35 7:3 / / rw shared:1 - ext4 /dev/loop3 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].devnum, "98:0");
        assert_eq!(m[0].point, Path::new("/mnt/my card"));
        assert_eq!(m[0].source, "/dev/root");
        assert_eq!(m[1].point, Path::new("/"));
        assert_eq!(unescape("a\\011b\\134"), "a\tb\\");
        assert_eq!(unescape("trailing\\"), "trailing\\");
    }
}
