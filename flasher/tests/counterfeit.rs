//! End-to-end tests of the counterfeit-card probe through `metis-flash write`: a
//! fake-capacity card served over FUSE (`fakecard.py --real-size`, needs
//! python3-fusepy) with a loop device on top (root needed), claiming 1.1 GiB over
//! much less flash, with an image that fits inside the real flash, so only the
//! probe can tell. `write` exists only in debug builds and with the `dev-write`
//! feature. The artifact and card helpers are trimmed copies of flash.rs's.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use metis_core::image::base::{write_base, BaseOptions};
use metis_core::image::compose::compose_table;
use metis_core::image::patch::Patch;
use metis_engine::flash::probe::probe_offsets;
use tempfile::TempDir;

mod lab;
use lab::{have_fusepy, FakeCard};

const MIB: usize = 1 << 20;
const BIN: &str = env!("CARGO_BIN_EXE_metis-flash");
const JUNK: u8 = 0xAA;
/// 1.1 GiB in whole sectors: the claim from the issue.
const CLAIMED: usize = (11 << 30) / 10 / 512 * 512;
/// The image: well inside every real size below.
const IMAGE: usize = 32 * MIB;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A node artifact on disk (noise in the first 2 MiB and the last MiB, zeros
/// between) and the card image it must produce.
struct Artifact {
    _dir: TempDir,
    args: Vec<String>,
    image: Vec<u8>,
}

impl Artifact {
    fn new(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut image = vec![0u8; size];
        image[..2 * MIB].copy_from_slice(&noise(1, 2 * MIB));
        image[size - MIB..].copy_from_slice(&noise(2, MIB));
        let base = dir.path().join("base.zst");
        let base_table = write_base(
            &image[..],
            File::create(&base).unwrap(),
            &BaseOptions::default()
                .with_chunk_size(MIB as u32)
                .with_level(1),
        )
        .unwrap()
        .table;
        let slot_offset = (MIB + 12345) as u64;
        let slot = noise(99, 4096);
        let patch = Patch::from_extents(size as u64, [(slot_offset, vec![0; slot.len()])]).unwrap();
        let composed = compose_table(File::open(&base).unwrap(), &base_table, &patch).unwrap();
        image[slot_offset as usize..slot_offset as usize + slot.len()].copy_from_slice(&slot);
        let table = dir.path().join("table.json");
        fs::write(&table, serde_json::to_vec(&composed).unwrap()).unwrap();
        let patch_path = dir.path().join("node.patch");
        fs::write(&patch_path, patch.encode().unwrap()).unwrap();
        let slot_file = dir.path().join("bundle");
        fs::write(&slot_file, &slot).unwrap();
        let args = [
            "write",
            "--base",
            base.to_str().unwrap(),
            "--table",
            table.to_str().unwrap(),
            "--patch",
            patch_path.to_str().unwrap(),
            "--slot-offset",
            &slot_offset.to_string(),
            "--slot-file",
            slot_file.to_str().unwrap(),
            "--node",
            "titan-db",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Self {
            _dir: dir,
            args,
            image,
        }
    }

    fn flash_onto(&self, card: &FakeCard) -> Run {
        let out = Command::new(BIN)
            .args(&self.args)
            .args(["--device", card.dev(), "--yes", "--force-non-removable"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn read_range(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {at}");
    }
}

/// A sparse card claiming [`CLAIMED`] bytes (only what is written is held),
/// wrapping writes modulo `real` when given; junk over the image's range.
fn sparse_card(real: Option<usize>) -> FakeCard {
    let mut options = vec!["--sparse".to_string()];
    if let Some(real) = real {
        options.extend(["--real-size".into(), real.to_string()]);
    }
    FakeCard::start(CLAIMED, &options, IMAGE)
}

#[test]
fn a_card_wrapping_past_its_real_size_is_refused_before_the_image_is_written() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let art = Artifact::new(IMAGE);
    // The 256 MiB, and a real size that is no power of two.
    for real in [256 * MIB, 300 * MIB] {
        let card = sparse_card(Some(real));
        let before = read_range(&card.card(), 0, IMAGE);
        let tail = (real - MIB) as u64;
        let before_tail = read_range(&card.card(), tail, MIB);
        let written_before = card.written();

        let run = art.flash_onto(&card);
        assert_eq!(run.code, 4, "real {real}: {run:?}");
        assert!(
            run.stderr.contains("does not hold what it claims"),
            "{run:?}"
        );
        assert!(run.stderr.contains("wrap around"), "{run:?}");
        assert!(
            run.stderr.contains("Nothing of the image was written"),
            "{run:?}"
        );
        assert!(!run.stderr.contains("insert and power on"), "{run:?}");

        // Nothing but the probe's markers and their restore reached the card, and
        // the card holds what it held.
        let probes = probe_offsets(CLAIMED as u64).len() as u64;
        assert_eq!(card.written() - written_before, 2 * probes * 4096);
        assert_same(&read_range(&card.card(), 0, IMAGE), &before, "image range");
        assert_same(
            &read_range(&card.card(), tail, MIB),
            &before_tail,
            "last MiB of the real flash",
        );
    }
}

#[test]
fn an_honest_card_of_the_same_claim_is_flashed() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let art = Artifact::new(IMAGE);
    let card = sparse_card(None);
    let run = art.flash_onto(&card);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("insert and power on"), "{run:?}");
    assert_same(
        &read_range(&card.card(), 0, IMAGE),
        &art.image,
        "the card after the flash",
    );
    // The last MiB holds junk but for the disk's last 33 sectors (4 KiB-aligned:
    // the card's last 4 KiB-block boundary and 20 KiB before it), zeroed before
    // writing so a stale backup GPT cannot bring the old partitions back.
    let start = CLAIMED - MIB;
    let end = CLAIMED / 4096 * 4096;
    let wiped = (end - 33 * 512) / 4096 * 4096..end;
    let last = read_range(&card.card(), start as u64, MIB);
    for (i, b) in last.iter().enumerate() {
        let want = if wiped.contains(&(start + i)) {
            0
        } else {
            JUNK
        };
        assert_eq!(
            *b,
            want,
            "byte {} of the card (probe not restored?)",
            start + i
        );
    }
}
