//! The Windows backend against a recorded fake of the Win32 calls: a machine with
//! an NVMe system disk and a USB SD reader holding a two-volume card.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// Whole flashes through the engine onto the fake disk.
mod flash;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const CARD: &str = r"\\.\PhysicalDrive2";
const VOL_E: &str = r"\\?\Volume{e0000000-0000-0000-0000-000000000001}\";
const VOL_F: &str = r"\\?\Volume{f0000000-0000-0000-0000-000000000002}\";

type Log = Arc<Mutex<Vec<String>>>;

/// Records every call; the card's bytes live in memory.
struct Fake {
    log: Log,
    disks: Vec<DiskFacts>,
    volumes: Vec<VolumeFacts>,
    system: SystemFacts,
    /// Errors `lock_volume` returns, one per call, before it succeeds.
    lock_errors: Mutex<VecDeque<i32>>,
    open_disk_error: Option<i32>,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// The first write covering this offset fails with this error.
    fail_write: Arc<Mutex<Option<(u64, i32)>>>,
}

struct FakeVolume {
    name: String,
    log: Log,
}

impl Drop for FakeVolume {
    fn drop(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("close {}", self.name));
    }
}

struct FakeDisk {
    number: u32,
    log: Log,
    bytes: Arc<Mutex<Vec<u8>>>,
    fail_write: Arc<Mutex<Option<(u64, i32)>>>,
}

impl Fake {
    fn record(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Win32 for Fake {
    type Volume = FakeVolume;
    type Disk = FakeDisk;

    fn disk_numbers(&self) -> Vec<u32> {
        self.disks.iter().map(|d| d.number).collect()
    }
    fn disk(&self, number: u32) -> io::Result<DiskFacts> {
        self.disks
            .iter()
            .find(|d| d.number == number)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(code::FILE_NOT_FOUND))
    }
    fn volumes(&self) -> io::Result<Vec<VolumeFacts>> {
        Ok(self.volumes.clone())
    }
    fn system(&self) -> SystemFacts {
        self.system.clone()
    }
    fn open_volume(&self, name: &str) -> io::Result<FakeVolume> {
        self.record(format!("open {name}"));
        Ok(FakeVolume {
            name: name.to_string(),
            log: Arc::clone(&self.log),
        })
    }
    fn lock_volume(&self, volume: &FakeVolume) -> io::Result<()> {
        self.record(format!("lock {}", volume.name));
        match self.lock_errors.lock().unwrap().pop_front() {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        }
    }
    fn dismount_volume(&self, volume: &FakeVolume) -> io::Result<()> {
        self.record(format!("dismount {}", volume.name));
        Ok(())
    }
    fn open_disk(&self, number: u32) -> io::Result<FakeDisk> {
        self.record(format!("open disk {number}"));
        if let Some(code) = self.open_disk_error {
            return Err(io::Error::from_raw_os_error(code));
        }
        Ok(FakeDisk {
            number,
            log: Arc::clone(&self.log),
            bytes: Arc::clone(&self.bytes),
            fail_write: Arc::clone(&self.fail_write),
        })
    }
    fn delete_layout(&self, disk: &FakeDisk) -> io::Result<()> {
        self.record(format!("delete layout {}", disk.number));
        Ok(())
    }
    fn update_properties(&self, disk: &FakeDisk) -> io::Result<()> {
        self.record(format!("update properties {}", disk.number));
        Ok(())
    }
    fn pause(&self, time: Duration) {
        self.record(format!("pause {}ms", time.as_millis()));
    }
}

impl RawDisk for FakeDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        assert_eq!(offset % ALIGN as u64, 0, "unaligned write at {offset}");
        assert_eq!(buf.len() % ALIGN, 0, "unaligned length {}", buf.len());
        assert_eq!(buf.as_ptr() as usize % ALIGN, 0, "unaligned buffer");
        self.log.lock().unwrap().push(format!("write {offset}"));
        let mut fail = self.fail_write.lock().unwrap();
        if let Some((at, code)) = *fail {
            if (offset..offset + buf.len() as u64).contains(&at) {
                *fail = None;
                return Err(io::Error::from_raw_os_error(code));
            }
        }
        let mut bytes = self.bytes.lock().unwrap();
        bytes[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        assert_eq!(buf.as_ptr() as usize % ALIGN, 0, "unaligned buffer");
        self.log.lock().unwrap().push(format!("read {offset}"));
        let bytes = self.bytes.lock().unwrap();
        let start = (offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
    fn flush(&self) -> io::Result<()> {
        self.log.lock().unwrap().push("flush".into());
        Ok(())
    }
}

fn volume(
    name: &str,
    device: &str,
    mounts: &[&str],
    disk: u32,
    offset: u64,
    length: u64,
) -> VolumeFacts {
    VolumeFacts {
        name: name.into(),
        device: device.into(),
        mount_points: mounts.iter().map(|m| m.to_string()).collect(),
        extents: vec![Extent {
            disk,
            offset,
            length,
        }],
        ..VolumeFacts::default()
    }
}

/// Disk 0: NVMe, C: and the EFI system partition. Disk 2: a 12 MiB card in a USB
/// SD reader with volumes E: and F:.
fn machine() -> Fake {
    let card_size = 12 * MIB;
    Fake {
        log: Log::default(),
        disks: vec![
            DiskFacts {
                number: 0,
                vendor: String::new(),
                product: "Samsung SSD 980".into(),
                bus: 0x11,
                removable: false,
                size: 512 * GIB,
                sector_size: 512,
                read_only: false,
            },
            DiskFacts {
                number: 2,
                vendor: "Generic".into(),
                product: "STORAGE DEVICE".into(),
                bus: 0x07,
                removable: true,
                size: card_size,
                sector_size: 512,
                read_only: false,
            },
        ],
        volumes: vec![
            volume(
                r"\\?\Volume{c}\",
                r"\Device\HarddiskVolume3",
                &["C:\\"],
                0,
                300 * MIB,
                500 * GIB,
            ),
            volume(
                r"\\?\Volume{esp}\",
                r"\Device\HarddiskVolume1",
                &[],
                0,
                MIB,
                100 * MIB,
            ),
            // Listed out of disk order, as FindNextVolumeW may.
            volume(
                VOL_F,
                r"\Device\HarddiskVolume9",
                &["F:\\"],
                2,
                5 * MIB,
                6 * MIB,
            ),
            volume(
                VOL_E,
                r"\Device\HarddiskVolume8",
                &["E:\\"],
                2,
                MIB,
                4 * MIB,
            ),
        ],
        system: SystemFacts {
            windows_dir: r"C:\Windows".into(),
            system_partition: Some(r"\Device\HarddiskVolume1".into()),
            elevated: true,
            wine: false,
        },
        lock_errors: Mutex::default(),
        open_disk_error: None,
        bytes: Arc::new(Mutex::new(vec![0xA5; card_size as usize])),
        fail_write: Arc::default(),
    }
}

fn backend(fake: Fake) -> (WindowsBackend<Fake>, Arc<Fake>) {
    let fake = Arc::new(fake);
    (WindowsBackend(Arc::clone(&fake)), fake)
}

fn refusal(fake: Fake, device: &str, policy: Policy) -> String {
    match backend(fake).0.inspect(Path::new(device), 4 * MIB, policy) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

const FORCED: Policy = Policy {
    force_non_removable: true,
};

#[test]
fn win32_structures_are_read_at_their_documented_offsets() {
    let mut descriptor = vec![0u8; 64];
    descriptor[10] = 1;
    descriptor[12..16].copy_from_slice(&40u32.to_le_bytes());
    descriptor[16..20].copy_from_slice(&48u32.to_le_bytes());
    descriptor[28..32].copy_from_slice(&0x0Cu32.to_le_bytes());
    descriptor[40..46].copy_from_slice(b"SanDi\0");
    descriptor[48..58].copy_from_slice(b"SD Card  \0");
    assert_eq!(
        parse_device_descriptor(&descriptor),
        Some(("SanDi".into(), "SD Card".into(), true, 0x0C))
    );
    // Offsets of 0 mean "no such string".
    descriptor[12..16].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(parse_device_descriptor(&descriptor).unwrap().0, "");
    assert_eq!(parse_device_descriptor(&descriptor[..20]), None);

    let mut geometry = vec![0u8; 32];
    geometry[20..24].copy_from_slice(&4096u32.to_le_bytes());
    geometry[24..32].copy_from_slice(&(32 * GIB).to_le_bytes());
    assert_eq!(parse_geometry_ex(&geometry), Some((32 * GIB, 4096)));

    let mut extents = vec![0u8; 8 + 48];
    extents[0..4].copy_from_slice(&2u32.to_le_bytes());
    for (i, (disk, offset, length)) in [(2u32, MIB, 4 * MIB), (3, 0, GIB)].iter().enumerate() {
        let at = 8 + 24 * i;
        extents[at..at + 4].copy_from_slice(&disk.to_le_bytes());
        extents[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
        extents[at + 16..at + 24].copy_from_slice(&length.to_le_bytes());
    }
    assert_eq!(
        parse_disk_extents(&extents),
        [
            Extent {
                disk: 2,
                offset: MIB,
                length: 4 * MIB
            },
            Extent {
                disk: 3,
                offset: 0,
                length: GIB
            },
        ]
    );
    // A count larger than the buffer stops at the buffer's end.
    extents[0..4].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(parse_disk_extents(&extents).len(), 2);

    let wide: Vec<u16> = "E:\\\0C:\\mnt\\card\\\0\0\0".encode_utf16().collect();
    assert_eq!(multi_sz(&wide), ["E:\\", "C:\\mnt\\card\\"]);
    assert!(multi_sz(&[0, 0]).is_empty());
}

#[test]
fn disk_paths_and_bus_names() {
    for (path, number) in [
        (r"\\.\PhysicalDrive2", Some(2)),
        (r"\\?\physicaldrive10", Some(10)),
        ("PhysicalDrive0", Some(0)),
        ("//./PhysicalDrive3", Some(3)),
        (r"\\.\PhysicalDrive", None),
        (r"\\.\PhysicalDrive2x", None),
        (r"\\.\C:", None),
        ("/dev/sdb", None),
    ] {
        assert_eq!(drive_number(Path::new(path)), number, "{path}");
    }
    assert_eq!(drive_letter(Path::new("e:")).as_deref(), Some("E:\\"));
    assert_eq!(drive_letter(Path::new("E:\\")).as_deref(), Some("E:\\"));
    assert_eq!(drive_letter(Path::new("E:\\x")), None);
    for (bus, name) in [
        (0x07, "usb"),
        (0x0C, "sd"),
        (0x0D, "mmc"),
        (0x0B, "sata"),
        (0x11, "nvme"),
        (0x0F, "vhd"),
        (0x77, "unknown"),
    ] {
        assert_eq!(bus_name(bus), name);
    }
}

#[test]
fn devices_lists_every_disk_with_its_bus_and_wine_gets_a_clear_answer() {
    let (b, _) = backend(machine());
    let disks = b.list().unwrap();
    let shown: Vec<(String, &str, &str, bool)> = disks
        .iter()
        .map(|d| {
            (
                d.path.display().to_string(),
                d.model.as_str(),
                d.bus.as_str(),
                d.removable,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                r"\\.\PhysicalDrive0".to_string(),
                "Samsung SSD 980",
                "nvme",
                false
            ),
            (CARD.to_string(), "Generic STORAGE DEVICE", "usb", true),
        ]
    );
    // A reader without a card (size 0) is not offered.
    let mut empty_reader = machine();
    empty_reader.disks[1].size = 0;
    assert_eq!(backend(empty_reader).0.list().unwrap().len(), 1);

    // No disk at all: not a normal Windows.
    let mut bare = machine();
    bare.disks.clear();
    let e = backend(bare).0.list().unwrap_err().to_string();
    assert!(
        e.contains("no \\\\.\\PhysicalDriveN that can be described"),
        "{e}"
    );

    // Wine shows stand-in disks: none is offered, nor accepted.
    let mut wine = machine();
    wine.system.wine = true;
    let (b, fake) = backend(wine);
    let e = b
        .inspect(Path::new(CARD), 4 * MIB, FORCED)
        .unwrap_err()
        .to_string();
    assert!(e.contains("this is Wine"), "{e}");
    assert!(fake.log().is_empty());
    let e = b.list().unwrap_err().to_string();
    assert!(
        e.contains("this is Wine, which gives Windows programs no real physical disks"),
        "{e}"
    );
    assert!(e.contains("--output FILE.img"), "{e}");
}

#[test]
fn a_card_is_accepted_with_every_volume_on_it_to_lock() {
    let (b, _) = backend(machine());
    let c = b
        .inspect(Path::new(CARD), 4 * MIB, Policy::default())
        .unwrap();
    assert_eq!(c.disk.bus, "usb");
    assert_eq!(c.to_unmount, [VOL_E, VOL_F].map(PathBuf::from));
    let parts: Vec<(String, u64, Vec<PathBuf>)> = c
        .partitions
        .iter()
        .map(|p| (p.path.display().to_string(), p.size, p.mounts.clone()))
        .collect();
    assert_eq!(
        parts,
        [
            (VOL_E.to_string(), 4 * MIB, vec![PathBuf::from("E:\\")]),
            (VOL_F.to_string(), 6 * MIB, vec![PathBuf::from("F:\\")]),
        ]
    );
    // The same rules as Linux on the disk itself.
    let text = crate::flash::candidate_text(&c);
    assert!(
        text.contains("mounted on E:\\ (will be unmounted)"),
        "{text}"
    );
}

#[test]
fn the_system_and_boot_disk_page_file_bitlocker_and_spanned_volumes_are_refused() {
    // Its first volume, in disk order, is the EFI system partition.
    let e = refusal(machine(), r"\\.\PhysicalDrive0", FORCED);
    assert!(
        e.contains(r"boot partition (\Device\HarddiskVolume1"),
        "{e}"
    );
    // Without it (booted from another disk), C: still refuses it.
    let mut m = machine();
    m.volumes.retain(|v| v.name != r"\\?\Volume{esp}\");
    let e = refusal(m, r"\\.\PhysicalDrive0", FORCED);
    assert!(
        e.contains(r"it holds the running system: C:\ holds C:\Windows"),
        "{e}"
    );

    let mut m = machine();
    m.volumes[3].page_file = true;
    let e = refusal(m, CARD, Policy::default());
    assert!(e.contains(r"E:\ on it holds the page file"), "{e}");
    assert!(e.contains("Virtual memory"), "{e}");

    let mut m = machine();
    m.volumes[2].bitlocker_locked = true;
    let e = refusal(m, CARD, Policy::default());
    assert!(
        e.contains(r"F:\ on it is encrypted with BitLocker and locked"),
        "{e}"
    );
    assert!(e.contains(r"manage-bde -unlock F:\"), "{e}");

    let mut m = machine();
    m.volumes[2].extents.push(Extent {
        disk: 3,
        offset: 0,
        length: GIB,
    });
    let e = refusal(m, CARD, Policy::default());
    assert!(e.contains(r"spans \\.\PhysicalDrive3 as well"), "{e}");
}

#[test]
fn the_shared_rules_and_elevation() {
    let mut m = machine();
    m.disks[1].read_only = true;
    assert!(refusal(m, CARD, Policy::default()).contains("lock switch"));

    let mut m = machine();
    m.disks[1].size = 2 * MIB;
    assert!(refusal(m, CARD, Policy::default()).contains("the image needs 4194304 bytes"));

    // A fixed disk needs the override, and Metis does not dismount it.
    let mut m = machine();
    m.disks[1].bus = 0x0B;
    m.disks[1].removable = false;
    let e = refusal(m, CARD, Policy::default());
    assert!(
        e.contains("not a removable, USB or SD disk (bus sata)"),
        "{e}"
    );
    let mut m = machine();
    m.disks[1].bus = 0x0B;
    m.disks[1].removable = false;
    let e = refusal(m, CARD, FORCED);
    assert!(e.contains(r"E:\ on it is mounted"), "{e}");
    assert!(e.contains("`mountvol E: /p`"), "{e}");
    // An SD slot on the PCI bus (bus sd, not flagged removable) is a card.
    let mut m = machine();
    m.disks[1].bus = 0x0C;
    m.disks[1].removable = false;
    assert!(backend(m)
        .0
        .inspect(Path::new(CARD), 4 * MIB, Policy::default())
        .is_ok());

    let mut m = machine();
    m.system.elevated = false;
    let e = refusal(m, CARD, Policy::default());
    assert!(e.contains("not running as administrator"), "{e}");
    assert!(e.contains("Run as administrator"), "{e}");
}

#[test]
fn a_drive_letter_or_a_folder_is_not_a_disk() {
    let e = refusal(machine(), "e:", Policy::default());
    assert!(
        e.contains(r"E:\ is a volume on \\.\PhysicalDrive2, not a whole disk"),
        "{e}"
    );
    assert!(e.contains(r"use --device \\.\PhysicalDrive2"), "{e}");
    let e = refusal(machine(), r"C:\Windows", Policy::default());
    assert!(e.contains("not a physical disk"), "{e}");
    let e = refusal(machine(), r"\\.\PhysicalDrive7", Policy::default());
    assert!(e.contains("no such disk (unplugged?)"), "{e}");
}

fn open_card(fake: Fake) -> (Result<Box<dyn Medium>, DeviceError>, Arc<Fake>) {
    let (b, fake) = backend(fake);
    let c = b
        .inspect(Path::new(CARD), 4 * MIB, Policy::default())
        .unwrap();
    (b.open(&c), fake)
}

#[test]
fn every_volume_is_locked_and_dismounted_before_the_disk_opens_and_stays_locked_until_drop() {
    let (medium, fake) = open_card(machine());
    let medium = medium.unwrap();
    assert!(medium.is_direct() && medium.is_disk());
    assert_eq!(medium.size(), 12 * MIB);
    assert_eq!(
        fake.log(),
        [
            format!("open {VOL_E}"),
            format!("lock {VOL_E}"),
            format!("dismount {VOL_E}"),
            format!("open {VOL_F}"),
            format!("lock {VOL_F}"),
            format!("dismount {VOL_F}"),
            "open disk 2".into(),
            "delete layout 2".into(),
        ]
    );
    medium.commit().unwrap();
    drop(medium);
    assert_eq!(
        fake.log()[8..],
        [
            "update properties 2".to_string(),
            format!("close {VOL_E}"),
            format!("close {VOL_F}"),
        ]
    );
}

#[test]
fn a_busy_volume_is_retried_then_refused_naming_its_drive_letter() {
    let m = machine();
    m.lock_errors
        .lock()
        .unwrap()
        .extend([code::ACCESS_DENIED, code::SHARING_VIOLATION]);
    let (medium, fake) = open_card(m);
    assert!(medium.is_ok());
    let log = fake.log();
    assert_eq!(
        log.iter().filter(|l| *l == "pause 500ms").count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("lock ")).count(),
        4,
        "{log:?}"
    );

    let m = machine();
    m.lock_errors
        .lock()
        .unwrap()
        .extend([code::ACCESS_DENIED; LOCK_ATTEMPTS as usize]);
    let (medium, fake) = open_card(m);
    let e = medium.err().unwrap().to_string();
    assert!(
        e.contains(r"its volume E:\ cannot be locked: a program has files open on it"),
        "{e}"
    );
    assert!(
        e.contains(r"close the windows and programs using E:\"),
        "{e}"
    );
    let log = fake.log();
    assert_eq!(log.iter().filter(|l| l.starts_with("lock ")).count(), 10);
    // The handle was closed again and the disk never opened.
    assert_eq!(log.last().unwrap(), &format!("close {VOL_E}"));
    assert!(!log.iter().any(|l| l.starts_with("open disk")), "{log:?}");
}

#[test]
fn win32_errors_opening_the_disk_say_what_to_do() {
    for (code, elevated, expected) in [
        (code::ACCESS_DENIED, false, "not running as administrator"),
        (
            code::ACCESS_DENIED,
            true,
            "Controlled Folder Access or an antivirus",
        ),
        (
            code::ACCESS_DENIED,
            true,
            "Manage ransomware protection > Controlled folder access",
        ),
        (
            code::VIRUS_INFECTED,
            true,
            "Allow an app through Controlled folder access",
        ),
        (code::WRITE_PROTECT, true, "lock switch"),
        (code::NOT_READY, true, "there is no card in the reader"),
        (code::FILE_NOT_FOUND, true, "unplugged"),
        (
            code::SHARING_VIOLATION,
            true,
            "another program has it open exclusively",
        ),
        (1117, true, "opening"),
    ] {
        let e = open_disk_error(
            Path::new(CARD),
            io::Error::from_raw_os_error(code),
            elevated,
        );
        assert!(e.to_string().contains(expected), "{code}: {e}");
    }
    // Not elevated is caught before anything is locked.
    let (b, fake) = backend(machine());
    let c = b
        .inspect(Path::new(CARD), 4 * MIB, Policy::default())
        .unwrap();
    let mut m = machine();
    m.system.elevated = false;
    let (b2, fake2) = backend(m);
    assert!(b2
        .open(&c)
        .err()
        .unwrap()
        .to_string()
        .contains("administrator"));
    assert!(fake2.log().is_empty());
    drop((b, fake));
    // Access denied while elevated, on open: the antivirus message, after the locks.
    let mut m = machine();
    m.open_disk_error = Some(code::ACCESS_DENIED);
    let (medium, fake) = open_card(m);
    let e = medium.err().unwrap().to_string();
    assert!(e.contains("Controlled Folder Access"), "{e}");
    assert!(fake.log().iter().any(|l| l.starts_with("close ")));
    // Mid-write errors keep their meaning too.
    let e = explain_io(io::Error::from_raw_os_error(code::ACCESS_DENIED)).to_string();
    assert!(
        e.contains("Allow an app through Controlled folder access"),
        "{e}"
    );
    let e = explain_io(io::Error::from_raw_os_error(code::MEDIA_CHANGED)).to_string();
    assert!(e.contains("removed or changed"), "{e}");
    assert_eq!(
        explain_io(io::Error::from_raw_os_error(1117)).raw_os_error(),
        Some(1117)
    );
}
