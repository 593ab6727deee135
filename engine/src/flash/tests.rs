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

use super::*;
use crate::device::{Disk, Partition};
use crate::events::Event;
use crate::medium::Medium;

const MIB: usize = 1 << 20;
const OLD: u8 = 0xA5;

/// A disk in memory whose writes take a little time, so a cancel lands mid-write.
#[derive(Clone)]
struct SlowDisk {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
    read_bytes: Arc<AtomicUsize>,
    delay: Duration,
    /// Cancels the token once this many writes have been made.
    cancel_at: Arc<Mutex<Option<(usize, CancelToken)>>>,
    path: PathBuf,
}

impl SlowDisk {
    fn new(size: usize) -> Self {
        SlowDisk {
            bytes: Arc::new(Mutex::new(vec![OLD; size])),
            writes: Arc::new(AtomicUsize::new(0)),
            read_bytes: Arc::new(AtomicUsize::new(0)),
            delay: Duration::from_millis(3),
            cancel_at: Arc::default(),
            path: PathBuf::from("/dev/mem0"),
        }
    }
    /// A disk whose writes take no time.
    fn fast(size: usize) -> Self {
        SlowDisk {
            delay: Duration::ZERO,
            ..SlowDisk::new(size)
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

impl Medium for SlowDisk {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::thread::sleep(self.delay);
        let writes = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, cancel)) = &*self.cancel_at.lock().unwrap() {
            if writes >= *at {
                cancel.cancel();
            }
        }
        let mut bytes = self.bytes.lock().unwrap();
        bytes[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self.bytes.lock().unwrap();
        let start = (offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        self.read_bytes.fetch_add(n, Ordering::SeqCst);
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
    let composer = composer_of(&image);
    (image, composer)
}

/// The composer of `image`, in 1 MiB chunks.
fn composer_of(image: &[u8]) -> Composer<Cursor<Vec<u8>>> {
    let size = image.len();
    let mut base = Vec::new();
    let options = BaseOptions::default()
        .with_chunk_size(MIB as u32)
        .with_threads(1);
    let summary = write_base(image, &mut base, &options).unwrap();
    Composer::new(
        Cursor::new(base),
        summary.table,
        Patch::empty(size as u64),
        ComposeOptions::default(),
    )
    .unwrap()
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
        card: None,
        compare: false,
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

// Spare cards: a disk holding the same class's image is compared chunk by chunk.

const SPARE_IMAGE: usize = 16 * MIB;
const SLOT: u64 = 3 * MIB as u64 + 4096;

/// Node `n`'s image: one base, with chunks 2 and 5 (n's own config, say) differing
/// per node, and its secrets bundle.
fn node_image(n: u8) -> (Vec<u8>, Vec<u8>) {
    let mut image: Vec<u8> = (0..SPARE_IMAGE)
        .map(|i| (i * 31 + i / 4096) as u8 | 1)
        .collect();
    for chunk in [2, 5] {
        image[chunk * MIB + 100..chunk * MIB + 200].fill(n);
    }
    // The slot is zero in the image (the table hashes it zeroed).
    image[SLOT as usize..SLOT as usize + 4096].fill(0);
    (image, vec![n ^ 0x5A; 4096])
}

struct Flash<'a> {
    node: &'a str,
    class: &'a str,
    revision: u64,
    compare: bool,
    block_size: usize,
    events: Events,
    cancel: CancelToken,
}

impl<'a> Flash<'a> {
    fn of(node: &'a str, class: &'a str) -> Self {
        Flash {
            node,
            class,
            revision: 1,
            compare: true,
            block_size: MIB,
            events: Events::none(),
            cancel: CancelToken::new(),
        }
    }
    fn onto(
        self,
        disk: &SlowDisk,
        image: &[u8],
        bundle: &[u8],
    ) -> Result<FlashSummary, FlashError> {
        let mut request = request(self.events, self.cancel);
        request.node = self.node.into();
        request.slot = Some((SLOT, Zeroizing::new(bundle.to_vec())));
        request.card = Some(CardLabel {
            class: self.class.into(),
            revision: self.revision,
        });
        request.compare = self.compare;
        request.block_size = self.block_size;
        run_with(&FakeBackend(disk.clone()), composer_of(image), request)
    }
}

/// What a card holds after a full write of `image` with `bundle` onto a new disk.
fn fresh_card(node: &str, class: &str, image: &[u8], bundle: &[u8]) -> Vec<u8> {
    let disk = SlowDisk::fast(20 * MIB);
    let summary = Flash {
        compare: false,
        ..Flash::of(node, class)
    }
    .onto(&disk, image, bundle)
    .unwrap();
    assert!(summary.card_held.is_none());
    disk.snapshot()
}

#[test]
fn a_card_holding_another_node_of_the_class_gets_only_what_differs() {
    let disk = SlowDisk::fast(20 * MIB);
    let (a, a_bundle) = node_image(1);
    let (b, b_bundle) = node_image(2);
    let first = Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &a_bundle)
        .unwrap();
    assert!(first.card_held.is_none(), "a new card is written in full");
    assert_eq!(first.chunks.rewritten, 16);

    let summary = Flash::of("titan-15", "rpi5")
        .onto(&disk, &b, &b_bundle)
        .unwrap();
    assert_eq!(
        summary.card_held,
        Some(CardHeld {
            node: "titan-13".into(),
            revision: 1,
            class: "rpi5".into()
        })
    );
    // Chunks 2 and 5 and the slot's chunk 3 differ; 0 (partition table) and 15
    // (the image's GPT backup area) are wiped first, so rewritten too.
    assert_eq!(summary.chunks.compared, 16);
    assert_eq!(summary.chunks.differing, 3);
    assert_eq!(summary.chunks.rewritten, 5);
    assert_eq!(summary.chunks.skipped, 11);
    // Five chunks, the wipe before them (the first MiB and two GPT-backup areas
    // of 20 KiB, aligned) and the marker: not the whole card.
    assert_eq!(summary.bytes_written, (6 * MIB + 2 * 20480 + 4096) as u64);
    let text = summary.comparison_text().unwrap();
    assert!(
        text.starts_with("3 of 16 chunks differ from the card (it held titan-13 revision 1)"),
        "{text}"
    );
    // Byte for byte what a full write of titan-15 onto a new card gives, marker
    // and wiped areas included.
    assert!(disk.snapshot() == fresh_card("titan-15", "rpi5", &b, &b_bundle));
}

#[test]
fn the_same_card_again_is_only_read() {
    let disk = SlowDisk::fast(20 * MIB);
    let (a, bundle) = node_image(1);
    Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &bundle)
        .unwrap();
    let before = disk.snapshot();
    let writes = disk.writes.load(Ordering::SeqCst);
    let summary = Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &bundle)
        .unwrap();
    assert_eq!(summary.chunks.differing, 0);
    assert_eq!(summary.chunks.skipped, 16);
    assert_eq!(summary.bytes_written, 0);
    assert_eq!(disk.writes.load(Ordering::SeqCst), writes);
    assert!(disk.snapshot() == before);
}

#[test]
fn one_corrupted_chunk_is_rewritten_and_the_card_is_as_a_full_write() {
    let disk = SlowDisk::fast(20 * MIB);
    let (a, bundle) = node_image(1);
    Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &bundle)
        .unwrap();
    let good = disk.snapshot();
    disk.bytes.lock().unwrap()[4 * MIB + 12345] ^= 0x40;
    let summary = Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &bundle)
        .unwrap();
    assert_eq!(summary.chunks.differing, 1);
    assert_eq!(
        summary.chunks.rewritten, 3,
        "chunk 4, and 0 and 15 after the wipe"
    );
    // Three of sixteen: decoded one by one (the others are not decoded at all).
    assert!(disk.snapshot() == good);
}

#[test]
fn another_class_a_foreign_card_or_full_gets_a_full_write_and_no_comparison_read() {
    let (a, a_bundle) = node_image(1);
    let (b, b_bundle) = node_image(2);
    let cases: [(&str, Option<&str>, &str, bool); 3] = [
        ("another class", Some("rpi4"), "rpi5", true),
        ("a foreign card", None, "rpi5", true),
        ("--full", Some("rpi5"), "rpi5", false),
    ];
    for (what, before, class, compare) in cases {
        let disk = SlowDisk::fast(20 * MIB);
        if let Some(before) = before {
            Flash::of("titan-13", before)
                .onto(&disk, &a, &a_bundle)
                .unwrap();
        }
        let read_before = disk.read_bytes.load(Ordering::SeqCst);
        let summary = Flash {
            compare,
            ..Flash::of("titan-15", class)
        }
        .onto(&disk, &b, &b_bundle)
        .unwrap();
        assert!(summary.card_held.is_none(), "{what}");
        assert_eq!(summary.chunks.compared, 0, "{what}");
        assert_eq!(summary.chunks.rewritten, 16, "{what}");
        // The read-back, and at most the marker's 4 KiB and the last block's tail.
        let read = disk.read_bytes.load(Ordering::SeqCst) - read_before;
        assert!(read <= SPARE_IMAGE + 2 * 4096, "{what}: read {read}");
        assert!(
            disk.snapshot() == fresh_card("titan-15", class, &b, &b_bundle),
            "{what}"
        );
    }
}

#[test]
fn an_interrupted_comparison_changes_nothing_and_an_interrupted_rewrite_is_repaired() {
    // Writes take 10 ms each, so a cancel lands mid-way.
    let disk = SlowDisk {
        delay: Duration::from_millis(10),
        ..SlowDisk::new(20 * MIB)
    };
    let (a, a_bundle) = node_image(1);
    let (b, b_bundle) = node_image(2);
    Flash::of("titan-13", "rpi5")
        .onto(&disk, &a, &a_bundle)
        .unwrap();
    let holding_a = disk.snapshot();

    // Cancelled while comparing: nothing was written, the card still is titan-13.
    let cancel = CancelToken::new();
    let events = {
        let cancel = cancel.clone();
        Events::new(move |e| {
            if matches!(
                e,
                Event::PhaseStarted {
                    phase: Phase::Compare,
                    ..
                }
            ) {
                cancel.cancel();
            }
        })
    };
    let e = Flash {
        events,
        cancel,
        ..Flash::of("titan-15", "rpi5")
    }
    .onto(&disk, &b, &b_bundle)
    .unwrap_err();
    assert!(matches!(e, FlashError::Interrupted), "{e}");
    assert!(e.nothing_written());
    assert!(disk.snapshot() == holding_a);

    // Cancelled while rewriting (a few blocks written): wiped, so it boots as
    // neither node…
    let cancel = CancelToken::new();
    let writes = disk.writes.load(Ordering::SeqCst);
    *disk.cancel_at.lock().unwrap() = Some((writes + 8, cancel.clone()));
    let e = Flash {
        cancel,
        block_size: 64 << 10,
        ..Flash::of("titan-15", "rpi5")
    }
    .onto(&disk, &b, &b_bundle)
    .unwrap_err();
    *disk.cancel_at.lock().unwrap() = None;
    assert!(matches!(e, FlashError::Wiped { .. }), "{e}");
    assert!(disk.snapshot()[..MIB].iter().all(|b| *b == 0));

    // …and the next run recognises the wiped card and repairs it by comparison.
    let summary = Flash::of("titan-15", "rpi5")
        .onto(&disk, &b, &b_bundle)
        .unwrap();
    assert_eq!(
        summary.card_held.map(|h| h.node).as_deref(),
        Some("titan-15")
    );
    assert!(disk.snapshot() == fresh_card("titan-15", "rpi5", &b, &b_bundle));
}
