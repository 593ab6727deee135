//! End-to-end tests of `metis-flash write` on real loop devices (root needed), and
//! fault tests on a misbehaving card served over FUSE (`fakecard.py`, needs
//! python3-fusepy). Each test builds its artifact with metis-core from a synthetic
//! image, starts what it needs and tears it down in `Drop`, also on failure.
//! `write` exists only in debug builds and with the `dev-write` feature: a
//! `cargo test --release` of this file needs `--features dev-write`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use metis_core::image::base::{write_base, BaseOptions};
use metis_core::image::chunks::{ChunkHash, ChunkTable};
use metis_core::image::compose::compose_table;
use metis_core::image::patch::Patch;
use tempfile::TempDir;

mod lab;
use lab::{have_fusepy, FakeCard, Loop};

const MIB: usize = 1 << 20;
const BIN: &str = env!("CARGO_BIN_EXE_metis-flash");
const JUNK: u8 = 0xAA;
/// A disk's last 33 sectors, rounded to 4 KiB: zeroed before the first write.
const DISK_END_WIPE: usize = 20 << 10;

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

/// A node artifact on disk and the card image it must produce.
struct Artifact {
    dir: TempDir,
    base: PathBuf,
    table: PathBuf,
    patch: PathBuf,
    slot_file: PathBuf,
    slot_offset: u64,
    /// The expected card: composed image with the slot filled.
    image: Vec<u8>,
    composed: ChunkTable,
}

impl Artifact {
    /// `size` bytes, 1 MiB chunks: noise in the first 2 MiB and the last MiB (the
    /// partition-table areas), then 3 MiB of noise every 8 MiB, zeros elsewhere.
    fn new(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut golden = vec![0u8; size];
        golden[..2 * MIB].copy_from_slice(&noise(1, 2 * MIB));
        golden[size - MIB..].copy_from_slice(&noise(2, MIB));
        let mut at = 4 * MIB;
        while at + 3 * MIB < size - MIB {
            golden[at..at + 3 * MIB].copy_from_slice(&noise(at as u64, 3 * MIB));
            at += 8 * MIB;
        }
        let base = dir.path().join("base.zst");
        let base_table = write_base(
            &golden[..],
            File::create(&base).unwrap(),
            &BaseOptions::default()
                .with_chunk_size(MIB as u32)
                .with_level(1),
        )
        .unwrap()
        .table;
        // The seed write and the zeroed slot (in a noise region, so the patch carries it).
        let slot_offset = (4 * MIB + 12345) as u64;
        let slot = noise(99, 70_000);
        let patch = Patch::from_extents(
            size as u64,
            [
                (5000, b"titan-db".to_vec()),
                (slot_offset, vec![0; slot.len()]),
            ],
        )
        .unwrap();
        let composed = compose_table(File::open(&base).unwrap(), &base_table, &patch).unwrap();
        let mut image = golden;
        patch.apply(0, &mut image);
        image[slot_offset as usize..slot_offset as usize + slot.len()].copy_from_slice(&slot);
        let table = dir.path().join("table.json");
        fs::write(&table, serde_json::to_vec(&composed).unwrap()).unwrap();
        let patch_path = dir.path().join("node.patch");
        fs::write(&patch_path, patch.encode().unwrap()).unwrap();
        let slot_file = dir.path().join("bundle");
        fs::write(&slot_file, &slot).unwrap();
        Self {
            dir,
            base,
            table,
            patch: patch_path,
            slot_file,
            slot_offset,
            image,
            composed,
        }
    }

    /// A copy of the chunk table with chunk `index`'s hash changed.
    fn table_with_bad_hash(&self, index: usize) -> PathBuf {
        assert!(!self.composed.is_zero(index));
        let mut hashes = self.composed.hashes().to_vec();
        hashes[index] = ChunkHash::of(b"not this chunk");
        let zeros: Vec<usize> = self.composed.zero_chunks().collect();
        let table = ChunkTable::new(self.composed.layout(), hashes, &zeros).unwrap();
        let path = self.dir.path().join(format!("bad-{index}.json"));
        fs::write(&path, serde_json::to_vec(&table).unwrap()).unwrap();
        path
    }

    fn args(&self, table: &Path) -> Vec<String> {
        [
            "write",
            "--base",
            self.base.to_str().unwrap(),
            "--table",
            table.to_str().unwrap(),
            "--patch",
            self.patch.to_str().unwrap(),
            "--slot-offset",
            &self.slot_offset.to_string(),
            "--slot-file",
            self.slot_file.to_str().unwrap(),
            "--node",
            "titan-db",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn flash(&self, extra: &[&str]) -> Run {
        self.flash_table(&self.table, extra)
    }

    fn flash_table(&self, table: &Path, extra: &[&str]) -> Run {
        let mut args = self.args(table);
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = Command::new(BIN)
            .args(&args)
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

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A mount, unmounted on drop (before the loop device under it is detached).
struct Mounted {
    point: TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.point.path())
            .stderr(Stdio::null())
            .status();
    }
}

/// Swap on a device, turned off on drop.
struct SwapOn(String);

impl Drop for SwapOn {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
    }
}

/// A sparse file of `size` bytes filled with junk, so a test sees every byte the
/// flasher changes (or fails to).
fn junk_file(dir: &Path, name: &str, size: usize) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, vec![JUNK; size]).unwrap();
    path
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

fn assert_wiped(run: &Run, card: &Path, image_size: usize, card_size: usize) {
    assert!(run.stderr.contains("was wiped"), "{run:?}");
    assert!(!run.stderr.contains("insert and power on"), "{run:?}");
    assert!(
        read_range(card, 0, MIB).iter().all(|b| *b == 0),
        "first MiB not wiped"
    );
    for end in [image_size, card_size] {
        assert!(
            read_range(card, (end - 33 * 512) as u64, 33 * 512)
                .iter()
                .all(|b| *b == 0),
            "last 33 sectors before {end} not wiped"
        );
    }
}

#[test]
fn loop_device_full_sparse_and_output_file_hold_the_composed_card() {
    let art = Artifact::new(64 * MIB);
    let work = tempfile::tempdir().unwrap();
    let card_size = 80 * MIB;
    let backing = junk_file(work.path(), "card", card_size);
    let lo = Loop::attach(&backing, &[]);
    let dev = ["--device", &lo.dev, "--yes", "--force-non-removable"];

    // Full (the default for a device). `--json` prints the engine's events, one
    // JSON object a line, then the summary last.
    let run = art.flash(&[&dev[..], &["--json"]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap().clone();
    assert_eq!(summary["ok"], true);
    let started: Vec<&str> = lines
        .iter()
        .filter(|e| e["event"] == "phase-started")
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["probe", "write", "read-back"], "{lines:#?}");
    let last_write = lines
        .iter()
        .rfind(|e| e["event"] == "progress" && e["phase"] == "write")
        .expect("write progress events");
    assert_eq!(last_write["done"], 64 * MIB as u64);
    assert_eq!(last_write["total"], 64 * MIB as u64);
    // Read back, but `write` takes local files: nothing signed was verified.
    assert_eq!(summary["read_back"], true);
    assert_eq!(summary["verified"], false);
    assert_eq!(summary["mode"], "full");
    assert_eq!(summary["node"], "titan-db");
    assert_eq!(summary["image_bytes"], 64 * MIB as u64);
    assert_same(
        &read_range(&backing, 0, 64 * MIB),
        &art.image,
        "device after --full",
    );
    // Past the image nothing changes but the disk's last 20 KiB, zeroed before
    // writing so a stale backup GPT cannot bring the old partitions back.
    let past = read_range(&backing, 64 * MIB as u64, 16 * MIB);
    assert!(
        past[..16 * MIB - DISK_END_WIPE].iter().all(|b| *b == JUNK),
        "bytes past the image changed (capacity probe not restored?)"
    );
    assert!(past[16 * MIB - DISK_END_WIPE..].iter().all(|b| *b == 0));

    // Sparse: the zero chunks must read back as zeros although the card held junk.
    fs::write(&backing, vec![JUNK; card_size]).unwrap();
    let run = art.flash(&[&dev[..], &["--sparse"]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("insert and power on"), "{run:?}");
    assert_same(
        &read_range(&backing, 0, 64 * MIB),
        &art.image,
        "device after --sparse",
    );

    // An image file: the same bytes, stored sparsely.
    let img = work.path().join("node.img");
    let run = art.flash(&["--output", img.to_str().unwrap(), "-q"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "-q printed: {run:?}");
    let file = fs::read(&img).unwrap();
    assert_same(&file, &art.image, "--output file");
    assert_same(&file, &read_range(&backing, 0, 64 * MIB), "file vs device");
    let allocated = fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        allocated < 48 * MIB as u64,
        "image file not sparse: {allocated} bytes allocated"
    );

    // --full on a file writes every byte and gives the same image.
    let full = work.path().join("full.img");
    let run = art.flash(&["--output", full.to_str().unwrap(), "--full", "-q"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_same(&fs::read(&full).unwrap(), &art.image, "--output --full");
}

#[test]
fn a_chunk_failing_verification_writes_nothing_or_wipes() {
    let art = Artifact::new(64 * MIB);
    let work = tempfile::tempdir().unwrap();
    let card_size = 72 * MIB;
    let backing = junk_file(work.path(), "card", card_size);
    let lo = Loop::attach(&backing, &[]);
    let dev = [
        "--device",
        lo.dev.as_str(),
        "--yes",
        "--force-non-removable",
    ];

    // The first chunk is wrong: it is checked before anything is written.
    let run = art.flash_table(&art.table_with_bad_hash(0), &dev);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("chunk 0 at byte offset 0"), "{run:?}");
    assert!(!run.stderr.contains("insert and power on"), "{run:?}");
    assert!(
        fs::read(&backing).unwrap().iter().all(|b| *b == JUNK),
        "the device changed although the first chunk failed verification"
    );

    // A late chunk is wrong: blocks before it are on the card, so it must be wiped.
    let late = (40..64).find(|&i| !art.composed.is_zero(i)).unwrap();
    let run = art.flash_table(&art.table_with_bad_hash(late), &dev);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(&format!("chunk {late} at byte offset")),
        "{run:?}"
    );
    assert_wiped(&run, &backing, 64 * MIB, card_size);
    // And it had written real blocks before stopping (so the wipe mattered).
    assert_same(
        &read_range(&backing, 8 * MIB as u64, 8 * MIB),
        &art.image[8 * MIB..16 * MIB],
        "blocks before the bad chunk",
    );
}

#[test]
fn unsafe_devices_are_refused_and_left_intact() {
    let art = Artifact::new(32 * MIB);
    let work = tempfile::tempdir().unwrap();

    // Not removable, without the override.
    let backing = junk_file(work.path(), "plain", 40 * MIB);
    let lo = Loop::attach(&backing, &[]);
    let run = art.flash(&["--device", &lo.dev, "--yes"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("not a removable"), "{run:?}");
    assert!(run.stderr.contains("--force-non-removable"), "{run:?}");

    // Not confirmed: the wrong node name on stdin.
    let mut child = Command::new(BIN)
        .args(art.args(&art.table))
        .args(["--device", &lo.dev, "--force-non-removable"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"titan-jh\n")
        .unwrap();
    let run = Run::from(child.wait_with_output().unwrap());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("Type the node name (titan-db)"),
        "{run:?}"
    );
    assert!(run.stderr.contains("no partitions"), "{run:?}");
    assert!(fs::read(&backing).unwrap().iter().all(|b| *b == JUNK));
    drop(lo);

    // A mounted filesystem.
    let fs_file = work.path().join("ext4");
    File::create(&fs_file)
        .unwrap()
        .set_len(40 * MIB as u64)
        .unwrap();
    let lo = Loop::attach(&fs_file, &[]);
    sh("mkfs.ext4", &["-q", &lo.dev]);
    let mounted = Mounted {
        point: tempfile::tempdir().unwrap(),
    };
    sh("mount", &[&lo.dev, mounted.point.path().to_str().unwrap()]);
    fs::write(mounted.point.path().join("keep"), b"precious").unwrap();
    sh("sync", &[]);
    let run = art.flash(&["--device", &lo.dev, "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("is mounted on"), "{run:?}");
    assert_eq!(
        fs::read(mounted.point.path().join("keep")).unwrap(),
        b"precious"
    );
    sh("umount", &[mounted.point.path().to_str().unwrap()]);
    sh("e2fsck", &["-fn", &lo.dev]);
    drop(mounted);
    drop(lo);

    // Active swap.
    let swap_file = junk_file(work.path(), "swap", 40 * MIB);
    let lo = Loop::attach(&swap_file, &[]);
    sh("mkswap", &["-q", &lo.dev]);
    sh("swapon", &[&lo.dev]);
    let swap = SwapOn(lo.dev.clone());
    let run = art.flash(&["--device", &lo.dev, "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("is active swap"), "{run:?}");
    drop(swap);
    drop(lo);

    // Read-only.
    let lo = Loop::attach(&backing, &["-r"]);
    let run = art.flash(&["--device", &lo.dev, "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("read-only"), "{run:?}");
    drop(lo);

    // Too small.
    let small = junk_file(work.path(), "small", 16 * MIB);
    let lo = Loop::attach(&small, &[]);
    let run = art.flash(&["--device", &lo.dev, "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("the image needs"), "{run:?}");
    assert!(fs::read(&small).unwrap().iter().all(|b| *b == JUNK));
    drop(lo);

    // A partition instead of the whole disk.
    let parted = work.path().join("parted");
    File::create(&parted)
        .unwrap()
        .set_len(80 * MIB as u64)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["-q", parted.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=100000, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let lo = Loop::attach(&parted, &["-P"]);
    let part = format!("{}p1", lo.dev);
    let _node = PartitionNode::ensure(&part);
    let run = art.flash(&["--device", &part, "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("partition of {}", lo.dev.as_str())),
        "{run:?}"
    );
}

/// The partition's device node; created from sysfs where no udev does it (containers),
/// and removed again on drop.
struct PartitionNode(Option<String>);

impl PartitionNode {
    fn ensure(part: &str) -> Self {
        let name = part.trim_start_matches("/dev/");
        let sys = format!("/sys/class/block/{name}/dev");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut added = false;
        while !Path::new(&sys).exists() {
            assert!(Instant::now() < deadline, "{sys} never appeared");
            std::thread::sleep(Duration::from_millis(100));
            if !added {
                // Some kernels (containers) skip the scan `losetup -P` asks for.
                let disk = part
                    .trim_end_matches(char::is_numeric)
                    .trim_end_matches('p');
                let _ = Command::new("partx").args(["-a", disk]).status();
                added = true;
            }
        }
        std::thread::sleep(Duration::from_millis(200)); // let udev, if any, make it
        if Path::new(part).exists() {
            return Self(None);
        }
        let numbers = fs::read_to_string(&sys).unwrap();
        let (major, minor) = numbers.trim().split_once(':').unwrap();
        sh("mknod", &[part, "b", major, minor]);
        Self(Some(part.to_string()))
    }
}

impl Drop for PartitionNode {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

#[test]
fn an_io_error_mid_write_wipes_the_card() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let art = Artifact::new(32 * MIB);
    let size = 40 * MIB;
    // Not a capacity-probe offset (those sit at size/16 * (i + 1/2)), and the
    // first byte of a block write (blocks of 4 MiB follow the held-back first
    // MiB), so the loop device's first request of that write fails outright.
    // A fault in the middle of a request would not reach us: FUSE returns a
    // short count and the loop driver completes a short *write* as a success
    // (the read-back would then catch it, exit 3).
    let eio_at = 17 * MIB;
    let card = FakeCard::start(size, &["--eio-at".into(), eio_at.to_string()], 2 * MIB);
    let run = art.flash(&["--device", card.dev(), "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("writing"), "{run:?}");
    assert_wiped(&run, &card.card(), 32 * MIB, size);
}

#[test]
fn a_card_that_wraps_writes_around_is_caught_and_the_page_cache_would_not() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let art = Artifact::new(32 * MIB);
    let claimed = 32 * MIB;
    let card = FakeCard::start(
        claimed,
        &["--real-size".into(), (8 * MIB).to_string()],
        2 * MIB,
    );

    // The pre-write probe refuses it, leaving the card as it was.
    let before = read_range(&card.card(), 0, 8 * MIB);
    let run = art.flash(&["--device", card.dev(), "--yes", "--force-non-removable"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("does not hold what it claims"),
        "{run:?}"
    );
    assert!(run.stderr.contains("wrap around"), "{run:?}");
    assert_same(
        &read_range(&card.card(), 0, 8 * MIB),
        &before,
        "probe restore",
    );

    // Without the probe, the cache-bypassing read-back catches it.
    let run = art.flash(&[
        "--device",
        card.dev(),
        "--yes",
        "--force-non-removable",
        "--skip-capacity-probe",
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("reads back differently"), "{run:?}");
    assert!(!run.stderr.contains("insert and power on"), "{run:?}");

    // Why the read-back must bypass the page cache: written and read back through
    // it, the same card looks perfect.
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(card.dev())
        .unwrap();
    dev.write_all(&art.image).unwrap();
    dev.sync_all().unwrap();
    let mut cached = vec![0u8; art.image.len()];
    dev.seek(SeekFrom::Start(0)).unwrap();
    dev.read_exact(&mut cached).unwrap();
    assert_same(&cached, &art.image, "read through the page cache");
    let direct = work_dd_direct(card.dev(), art.image.len());
    assert!(
        direct != art.image,
        "a direct read should see the wrapped-around data"
    );
}

fn work_dd_direct(dev: &str, len: usize) -> Vec<u8> {
    let out = Command::new("dd")
        .args([
            &format!("if={dev}"),
            "bs=1M",
            &format!("count={}", len / MIB),
            "iflag=direct",
            "status=none",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn sigint_or_sigterm_mid_write_wipes_the_card() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let art = Artifact::new(32 * MIB);
    let size = 40 * MIB;
    for signal in ["-INT", "-TERM"] {
        let card = FakeCard::start(size, &["--delay-ms".into(), "20".into()], 2 * MIB);
        let start_written = card.written();
        let child = Command::new(BIN)
            .args(art.args(&art.table))
            .args(["--device", card.dev(), "--yes", "--force-non-removable"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while card.written() < start_written + 8 * MIB as u64 {
            assert!(Instant::now() < deadline, "the flash never got going");
            std::thread::sleep(Duration::from_millis(10));
        }
        sh("kill", &[signal, &child.id().to_string()]);
        let run = Run::from(child.wait_with_output().unwrap());
        assert_eq!(run.code, 130, "{signal}: {run:?}");
        assert!(run.stderr.contains("interrupted"), "{signal}: {run:?}");
        assert!(
            card.written() < start_written + 30 * MIB as u64,
            "{signal}: the flash ran to the end before the signal"
        );
        assert_wiped(&run, &card.card(), 32 * MIB, size);
    }
}
