//! End to end with files and the real `zstd` CLI: golden image → class base →
//! node patch → composed chunk table (through JSON) → verified compose with a
//! secrets slot filled in.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use metis_core::image::base::{write_base, BaseOptions};
use metis_core::image::chunks::ChunkTable;
use metis_core::image::compose::{compose_table, ComposeError, ComposeOptions, Composer};
use metis_core::image::patch::{Patch, PatchBuilder};

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A golden image: random data, a long zero run (an empty partition), text, and a
/// size that is not a multiple of any chunk size.
fn golden_image(size: usize) -> Vec<u8> {
    let mut image = noise(42, size);
    image[size / 4..size / 2].fill(0);
    let text = b"#cloud-config\nhostname: titan-db\n";
    for (i, b) in image[size / 2..size * 3 / 4].iter_mut().enumerate() {
        *b = text[i % text.len()];
    }
    image
}

/// A node image as the injection engine leaves it.
struct Injected {
    node: Vec<u8>,
    /// The engine's dirty extents.
    dirty: Vec<(u64, Vec<u8>)>,
    /// The secrets slot: offset and length.
    slot: (u64, usize),
}

/// What the injection engine does for a node: write a seed and zero the secrets slot.
fn inject(image: &[u8]) -> Injected {
    let mut node = image.to_vec();
    let seed_at = image.len() / 3 + 5;
    let seed = b"instance-id: titan-db-0123\nlocal-hostname: titan-db\n".repeat(40);
    let slot_at = image.len() / 5 + 1;
    let slot = vec![0u8; 8192 + 3];
    // The engine rewrites whole 512-byte sectors around the seed, most bytes unchanged.
    let sector_start = seed_at / 512 * 512;
    let sector_end = (seed_at + seed.len()).div_ceil(512) * 512;
    node[seed_at..seed_at + seed.len()].copy_from_slice(&seed);
    node[slot_at..slot_at + slot.len()].copy_from_slice(&slot);
    let dirty = vec![
        (sector_start as u64, node[sector_start..sector_end].to_vec()),
        (slot_at as u64, slot.clone()),
    ];
    Injected {
        node,
        dirty,
        slot: (slot_at as u64, slot.len()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    File::create(path).unwrap().write_all(bytes).unwrap();
}

fn zstd_cli(args: &[&str]) -> std::process::Output {
    Command::new("zstd")
        .args(args)
        .output()
        .expect("the zstd CLI must be installed for this test (apt-get install zstd)")
}

#[test]
fn class_base_decodes_with_the_zstd_cli_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let image = golden_image((9 << 20) + 12_345);
    let raw = dir.path().join("golden.img");
    write_file(&raw, &image);
    for chunk_size in [64 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let base = dir.path().join(format!("base-{chunk_size}.zst"));
        let options = BaseOptions::default()
            .with_chunk_size(chunk_size)
            .with_threads(3);
        let summary = write_base(
            BufReader::new(File::open(&raw).unwrap()),
            File::create(&base).unwrap(),
            &options,
        )
        .unwrap();
        assert_eq!(summary.compressed_size, fs::metadata(&base).unwrap().len());
        let out = zstd_cli(&["-d", "-c", "-q", base.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == image,
            "zstd -d of the {chunk_size}-byte-chunk base differs from the image"
        );
        let out = zstd_cli(&["-t", "-q", base.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "zstd -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The zero run is whole chunks: they are listed.
        let expected_zero =
            (image.len() / 4).div_ceil(chunk_size as usize)..image.len() / 2 / chunk_size as usize;
        let zeros: Vec<usize> = summary.table.zero_chunks().collect();
        assert_eq!(zeros, expected_zero.collect::<Vec<_>>());
    }
}

#[test]
fn node_card_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let chunk_size = 256 << 10;
    let image = golden_image((6 << 20) + 777);
    let Injected {
        node,
        dirty,
        slot: (slot_at, slot_len),
    } = inject(&image);
    let raw = dir.path().join("golden.img");
    let node_img = dir.path().join("node.img");
    write_file(&raw, &image);
    write_file(&node_img, &node);

    // Builder: base (twice, with different thread counts: same bytes).
    let base_path = dir.path().join("base.zst");
    let mut bases = Vec::new();
    let mut base_table = None;
    for threads in [1, 4] {
        let mut out = Vec::new();
        let options = BaseOptions::default()
            .with_chunk_size(chunk_size)
            .with_threads(threads);
        base_table = Some(
            write_base(File::open(&raw).unwrap(), &mut out, &options)
                .unwrap()
                .table,
        );
        bases.push(out);
    }
    assert!(bases[0] == bases[1], "base depends on the thread count");
    write_file(&base_path, &bases[0]);
    let base_table = base_table.unwrap();

    // Builder: patch from the engine's dirty extents, minimised against the golden
    // image, is exactly the patch a plain diff of the two files gives.
    let mut builder = PatchBuilder::new(image.len() as u64);
    for (offset, bytes) in &dirty {
        builder.write(*offset, bytes).unwrap();
    }
    let from_engine = builder
        .finish()
        .minimize(File::open(&raw).unwrap())
        .unwrap();
    let diffed = Patch::diff(
        BufReader::new(File::open(&raw).unwrap()),
        BufReader::new(File::open(&node_img).unwrap()),
    )
    .unwrap();
    assert_eq!(from_engine, diffed);
    let patch_path = dir.path().join("node.patch");
    write_file(&patch_path, &diffed.encode().unwrap());
    assert!(
        fs::metadata(&patch_path).unwrap().len() < 4096,
        "the patch is tiny"
    );

    // Builder: the composed table, as it goes into the signed config.
    let composed = compose_table(File::open(&base_path).unwrap(), &base_table, &diffed).unwrap();
    assert_eq!(
        composed,
        ChunkTable::from_image(&node[..], chunk_size).unwrap()
    );
    let json = serde_json::to_string(&composed).unwrap();

    // Flasher: everything from files and JSON; the slot is filled after verification.
    let table: ChunkTable = serde_json::from_str(&json).unwrap();
    let patch = Patch::read_from(File::open(&patch_path).unwrap()).unwrap();
    let secrets = noise(7, slot_len);
    let composer = Composer::new(
        File::open(&base_path).unwrap(),
        table,
        patch,
        ComposeOptions::default(),
    )
    .unwrap()
    .with_slot(slot_at, secrets.clone())
    .unwrap();
    let card_path = dir.path().join("card.img");
    let mut card = File::create(&card_path).unwrap();
    let copied = io::copy(&mut composer.into_reader(), &mut card).unwrap();
    assert_eq!(copied, node.len() as u64);
    let mut want = node.clone();
    want[slot_at as usize..slot_at as usize + slot_len].copy_from_slice(&secrets);
    assert!(
        fs::read(&card_path).unwrap() == want,
        "card differs from the node image"
    );
}

#[test]
fn corrupt_base_file_stops_compose_naming_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let chunk_size = 64 << 10;
    let image = golden_image(1 << 20);
    let node = inject(&image).node;
    let base_path = dir.path().join("base.zst");
    let options = BaseOptions::default().with_chunk_size(chunk_size);
    let summary = write_base(&image[..], File::create(&base_path).unwrap(), &options).unwrap();
    let patch = Patch::diff(&image[..], &node[..]).unwrap();
    let table = compose_table(File::open(&base_path).unwrap(), &summary.table, &patch).unwrap();

    // Damage the middle of chunk 14's frame (a data chunk of the last quarter).
    let reader =
        metis_core::image::base::BaseReader::open(File::open(&base_path).unwrap(), table.layout())
            .unwrap();
    let frame = reader.frame_range(14);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&base_path)
        .unwrap();
    let at = (frame.start + frame.end) / 2;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0x40]).unwrap();
    drop(file);

    let composer = Composer::new(
        File::open(&base_path).unwrap(),
        table,
        patch,
        ComposeOptions::default(),
    )
    .unwrap();
    let mut good = 0;
    let mut failure = None;
    for chunk in composer.chunks() {
        match chunk {
            Ok(_) => good += 1,
            Err(e) => failure = Some(e),
        }
    }
    assert_eq!(good, 14, "chunks before the damaged one are handed out");
    let err = failure.expect("damage detected");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("chunk 14 at byte offset {}", 14 * chunk_size)),
        "{message}"
    );
    assert!(matches!(
        err,
        ComposeError::Base(_) | ComposeError::HashMismatch { .. }
    ));
}
