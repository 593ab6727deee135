//! The flash stage driven through a recorded in-memory disk behind a fake
//! backend: cancellation before and during the write, as the CLI's SIGINT
//! handler and the GUI's Cancel button do it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metis_core::image::base::{write_base, BaseOptions};
use metis_core::image::compose::{ComposeOptions, Composer};
use metis_core::image::patch::Patch;

use super::medium::Medium;
use super::*;
use crate::device::{Disk, Partition};
use crate::events::Event;

const MIB: usize = 1 << 20;
const OLD: u8 = 0xA5;

/// A disk in memory whose writes take a little time, so a cancel lands mid-write.
#[derive(Clone)]
struct SlowDisk {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
    path: PathBuf,
}

impl SlowDisk {
    fn new(size: usize) -> Self {
        SlowDisk {
            bytes: Arc::new(Mutex::new(vec![OLD; size])),
            writes: Arc::new(AtomicUsize::new(0)),
            path: PathBuf::from("/dev/mem0"),
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

impl Medium for SlowDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(3));
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut bytes = self.bytes.lock().unwrap();
        bytes[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self.bytes.lock().unwrap();
        let start = (offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn zero_range(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
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

/// A backend that offers the one in-memory disk.
struct FakeBackend(SlowDisk);

impl Backend for FakeBackend {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Ok(vec![self.describe(&self.0.path)?])
    }
    fn describe(&self, _device: &Path) -> Result<Disk, DeviceError> {
        Ok(Disk {
            path: self.0.path.clone(),
            model: "in-memory".into(),
            size: self.0.size(),
            bus: "mem".into(),
            removable: true,
            read_only: false,
        })
    }
    fn inspect(
        &self,
        device: &Path,
        _image_size: u64,
        _policy: Policy,
    ) -> Result<Candidate, DeviceError> {
        Ok(Candidate {
            disk: self.describe(device)?,
            partitions: vec![Partition {
                path: PathBuf::from("/dev/mem0p1"),
                size: 1 << 20,
                mounts: vec![],
            }],
            to_unmount: vec![],
        })
    }
    fn open(&self, _candidate: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        Ok(Box::new(self.0.clone()))
    }
}

/// An image of `size` bytes with data in every chunk, and its composer.
fn composer(size: usize) -> (Vec<u8>, Composer<Cursor<Vec<u8>>>) {
    let image: Vec<u8> = (0..size).map(|i| (i * 31 + i / 4096) as u8 | 1).collect();
    let mut base = Vec::new();
    let options = BaseOptions::default()
        .with_chunk_size(MIB as u32)
        .with_threads(1);
    let summary = write_base(&image[..], &mut base, &options).unwrap();
    let composer = Composer::new(
        Cursor::new(base),
        summary.table,
        Patch::empty(size as u64),
        ComposeOptions::default(),
    )
    .unwrap();
    (image, composer)
}

fn request(events: Events, cancel: CancelToken) -> FlashRequest {
    FlashRequest {
        node: "titan-db".into(),
        slot: None,
        target: Target::Device {
            path: PathBuf::from("/dev/mem0"),
            assume_yes: true,
            policy: Policy::default(),
        },
        mode: Some(WriteMode::Full),
        block_size: 64 << 10,
        probe_capacity: false,
        signature_verified: true,
        confirm: None,
        events,
        cancel,
    }
}

#[test]
fn a_flash_writes_reads_back_and_reports_every_phase() {
    let disk = SlowDisk::new(12 * MIB);
    let (image, composer) = composer(4 * MIB);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = {
        let seen = Arc::clone(&seen);
        Events::new(move |e| seen.lock().unwrap().push(e.clone()))
    };
    let summary = run_with(
        &FakeBackend(disk.clone()),
        composer,
        request(events, CancelToken::new()),
    )
    .unwrap();
    assert_eq!(summary.image_bytes, 4 * MIB as u64);
    assert_eq!(&disk.snapshot()[..4 * MIB], &image[..]);
    let phases: Vec<Phase> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::PhaseFinished { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(phases, [Phase::Write, Phase::ReadBack]);
}

#[test]
fn cancelled_before_the_target_opens_nothing_is_written() {
    let disk = SlowDisk::new(12 * MIB);
    let (_, composer) = composer(4 * MIB);
    let cancel = CancelToken::new();
    cancel.cancel();
    let e = run_with(
        &FakeBackend(disk.clone()),
        composer,
        request(Events::none(), cancel),
    )
    .unwrap_err();
    assert!(matches!(e, FlashError::Interrupted), "{e}");
    assert_eq!(e.exit(), Exit::Interrupted);
    assert!(e.nothing_written());
    assert_eq!(disk.writes.load(Ordering::SeqCst), 0);
    assert!(disk.snapshot().iter().all(|b| *b == OLD));
}

#[test]
fn cancelled_mid_write_the_partition_table_areas_are_wiped() {
    let size = 8 * MIB;
    let disk = SlowDisk::new(12 * MIB);
    let (image, composer) = composer(size);
    let cancel = CancelToken::new();
    // Cancel once the writer has put some blocks on the disk, as Ctrl-C would.
    let events = {
        let cancel = cancel.clone();
        let disk = disk.clone();
        Events::new(move |e| {
            if matches!(e, Event::Progress(p) if p.phase == Phase::Write)
                && disk.writes.load(Ordering::SeqCst) >= 8
            {
                cancel.cancel();
            }
        })
    };
    let e = run_with(
        &FakeBackend(disk.clone()),
        composer,
        request(events, cancel),
    )
    .unwrap_err();
    assert_eq!(e.exit(), Exit::Interrupted, "{e}");
    assert!(!e.nothing_written());
    match &e {
        FlashError::Wiped {
            cause, wipe_error, ..
        } => {
            assert!(matches!(**cause, FlashError::Interrupted), "{cause}");
            assert!(wipe_error.is_none(), "{wipe_error:?}");
        }
        other => panic!("not wiped: {other}"),
    }
    let after = disk.snapshot();
    // The first MiB (MBR, GPT header and entries) is zero: nothing boots from it.
    assert!(
        after[..MIB].iter().all(|b| *b == 0),
        "the head was not wiped"
    );
    // The GPT backup areas at the image's end and the disk's end are zero too.
    let backup = 33 * 512;
    assert!(after[size - backup..size].iter().all(|b| *b == 0));
    assert!(after[after.len() - backup..].iter().all(|b| *b == 0));
    // It stopped part-way: some of the image landed, not all of it.
    assert_ne!(&after[MIB..size - backup], &image[MIB..size - backup]);
    assert!(after[MIB..size - backup].iter().any(|b| *b != OLD));
}
