//! Personalising golden images end to end, checked with the real tools:
//! fsck.vfat, e2fsck, mtools and debugfs read back what was written.

mod fixtures;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fixtures::{
    ext4_files, extract, fat_files, golden_image, tool, tool_output, Layout, ARMBIAN, CIDATA,
    UBUNTU,
};
use metis_core::image::fat::SlotSpec;
use metis_core::image::golden::{file_sha256, GoldenError, GoldenImage};
use metis_core::image::overlay::OVERLAY_BLOCK;
use metis_core::image::partition::{Filesystem, Partition, PartitionError, PartitionSelector};
use metis_core::image::personalise::{
    personalise, write_image, PersonaliseError, PersonaliseRequest, Personalised,
};
use metis_core::image::rootfs::{read_root_file, RootFile};

const MACHINE_ID: &str = "5f3c0e1a9b7d4c2e8f6a1b3c5d7e9f01";

fn seed_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "user-data".into(),
        b"#cloud-config\nhostname: titan-db\nfqdn: titan-db.lab\n".to_vec(),
    );
    files.insert(
        "meta-data".into(),
        b"instance-id: titan-db-4f2a\nlocal-hostname: titan-db\n".to_vec(),
    );
    files.insert(
        "network-config".into(),
        b"version: 2\nethernets:\n  eth0:\n    match: {macaddress: 'dc:a6:32:01:02:03'}\n    addresses: [192.168.22.41/24]\n"
            .to_vec(),
    );
    files.insert(
        "metis/bootstrap.sh".into(),
        (0..9000u32)
            .map(|i| b"#!/bin/sh\nset -eu\n"[i as usize % 18])
            .collect(),
    );
    files
}

fn request(layout: &Layout, golden: &GoldenImage) -> PersonaliseRequest {
    let mut root_files = vec![
        RootFile::machine_id(MACHINE_ID).unwrap(),
        RootFile {
            path: "/etc/metis/node.conf".into(),
            bytes: b"node=titan-db\n".to_vec(),
            mode: 0o600,
        },
    ];
    let root = PartitionSelector::Label(layout.root_label.into());
    if layout.armbian {
        let table = {
            let mut overlay = golden.overlay().unwrap();
            metis_core::image::partition::PartitionTable::read(
                &mut overlay,
                golden.size(),
                golden.source(),
            )
            .unwrap()
        };
        let part = table.find(&root).unwrap();
        let existing =
            read_root_file(golden.raw_path(), part, "/etc/default/armbian-firstrun").unwrap();
        assert!(existing.is_some(), "fixture ships armbian-firstrun");
        root_files.push(RootFile::armbian_firstrun(existing.as_deref()));
    }
    PersonaliseRequest {
        seed: PartitionSelector::Label(layout.boot_label.into()),
        seed_filesystem: Filesystem::Vfat,
        root: Some(root),
        seed_files: seed_files(),
        slot: SlotSpec::default(),
        root_files,
    }
}

struct Built {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    golden_path: PathBuf,
    golden: GoldenImage,
}

fn build(layout: &Layout) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let golden_path = golden_image(dir.path(), layout);
    let sha = file_sha256(&golden_path).unwrap();
    let golden = GoldenImage::open(&golden_path, &sha).unwrap();
    Built {
        dir: dir.path().to_owned(),
        _dir: dir,
        golden_path,
        golden,
    }
}

/// The files of the golden image's root partition (`root`, as personalise
/// found it), read back with debugfs.
fn golden_root_files(built: &Built, root: &Partition) -> Vec<(String, Vec<u8>)> {
    let part = built.dir.join("golden-root.part");
    extract(&built.golden_path, root.start, root.len, &part);
    let files = ext4_files(&part, &built.dir.join("golden-root"));
    std::fs::remove_file(&part).unwrap();
    files
}

fn mtype(image: &Path, offset: u64, path: &str) -> Vec<u8> {
    tool(
        "mtype",
        &[
            "-i",
            &format!("{}@@{offset}", image.display()),
            &format!("::/{path}"),
        ],
    )
}

fn debugfs_cat(partition: &Path, path: &str) -> Vec<u8> {
    let out = tool_output(
        "debugfs",
        &["-R", &format!("cat {path}"), partition.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("not found"),
        "{path} missing in {}: {stderr}",
        partition.display()
    );
    out.stdout
}

fn debugfs_stat(partition: &Path, path: &str) -> String {
    String::from_utf8(tool(
        "debugfs",
        &["-R", &format!("stat {path}"), partition.to_str().unwrap()],
    ))
    .unwrap()
}

fn fsck_vfat(partition: &Path) {
    let out = tool_output("fsck.vfat", &["-n", partition.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fsck.vfat -n {} failed:\n{text}{}",
        partition.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn e2fsck(partition: &Path) {
    let out = tool_output("e2fsck", &["-fn", partition.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed:\n{}{}",
        partition.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 4 KiB blocks where two images differ.
fn differing_blocks(a: &Path, b: &Path) -> Vec<u64> {
    let a = std::fs::read(a).unwrap();
    let b = std::fs::read(b).unwrap();
    assert_eq!(a.len(), b.len(), "image sizes differ");
    a.chunks(OVERLAY_BLOCK as usize)
        .zip(b.chunks(OVERLAY_BLOCK as usize))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64 * OVERLAY_BLOCK)
        .collect()
}

/// Every check of the issue for one layout.
fn check_layout(layout: &Layout) {
    let built = build(layout);
    let req = request(layout, &built.golden);
    let personalised = personalise(&built.golden, &req).unwrap();
    let out = built.dir.join("node.img");
    write_image(&personalised, &out).unwrap();
    let seed = personalised.seed_partition.clone();
    let root = personalised.root_partition.clone().unwrap();

    // Both filesystems are clean.
    let seed_part = built.dir.join("seed.part");
    let root_part = built.dir.join("root.part");
    extract(&out, seed.start, seed.len, &seed_part);
    extract(&out, root.start, root.len, &root_part);
    fsck_vfat(&seed_part);
    e2fsck(&root_part);

    // The seed reads back; every golden boot file is still there, unchanged
    // unless the seed replaced it.
    for (path, bytes) in &req.seed_files {
        assert_eq!(
            &mtype(&out, seed.start, path),
            bytes,
            "{}: {path}",
            layout.name
        );
    }
    // What the golden seed holds, read back from the golden image itself.
    let golden_boot = fat_files(
        &built.golden_path,
        seed.start,
        &built.dir.join("golden-seed"),
    );
    assert!(
        golden_boot.iter().any(|(path, _)| path.contains('/')),
        "{}: the golden seed has a subdirectory: {:?}",
        layout.name,
        golden_boot.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    if layout.fragment_fat {
        let fillers = golden_boot
            .iter()
            .filter(|(path, _)| path.to_ascii_uppercase().starts_with("FILL"))
            .count();
        assert_eq!(fillers, 20, "{}: every other filler deleted", layout.name);
    }
    for (path, bytes) in golden_boot {
        let got = mtype(&out, seed.start, &path);
        match req.seed_files.get(&path) {
            Some(seeded) => assert_eq!(&got, seeded),
            None => assert_eq!(got, bytes, "{}: golden {path} changed", layout.name),
        }
    }

    // The root edits read back with their modes; the golden files are intact.
    for f in &req.root_files {
        assert_eq!(debugfs_cat(&root_part, &f.path), f.bytes, "{}", f.path);
        let stat = debugfs_stat(&root_part, &f.path);
        assert!(
            stat.contains(&format!("Mode:  {:04o}", f.mode)),
            "{}: {stat}",
            f.path
        );
        assert!(stat.contains("User:     0   Group:     0"), "{stat}");
        assert!(stat.contains("mtime: 0x5e0be100"), "fixed mtime: {stat}");
    }
    assert_eq!(
        debugfs_cat(&root_part, "/etc/machine-id"),
        format!("{MACHINE_ID}\n").as_bytes()
    );
    let golden_root = golden_root_files(&built, &root);
    assert!(
        golden_root.iter().any(|(p, _)| p == "/etc/machine-id"),
        "{}: the golden root ships /etc/machine-id",
        layout.name
    );
    let mut golden_firstrun = None;
    for (path, bytes) in golden_root {
        if path == "/etc/default/armbian-firstrun" {
            golden_firstrun = Some(String::from_utf8(bytes.clone()).unwrap());
        }
        if req.root_files.iter().any(|f| f.path == path) {
            continue;
        }
        assert_eq!(
            debugfs_cat(&root_part, &path),
            bytes,
            "golden {path} changed"
        );
    }
    if layout.armbian {
        let firstrun = debugfs_cat(&root_part, "/etc/default/armbian-firstrun");
        let text = String::from_utf8(firstrun).unwrap();
        assert!(
            text.contains("OPENSSHD_REGENERATE_HOST_KEYS=false\n"),
            "{text}"
        );
        assert!(!text.contains("=true"), "{text}");
        // Every other line of the golden's file is kept, in order.
        let golden = golden_firstrun.expect("the armbian golden ships armbian-firstrun");
        let kept: Vec<&str> = golden
            .lines()
            .filter(|l| !l.starts_with("OPENSSHD_REGENERATE_HOST_KEYS="))
            .collect();
        assert!(!kept.is_empty(), "golden armbian-firstrun: {golden}");
        let others: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("OPENSSHD_REGENERATE_HOST_KEYS="))
            .collect();
        assert_eq!(others, kept, "golden:\n{golden}\npersonalised:\n{text}");
    }

    // Only the seed partition and a few root blocks differ from the golden
    // image, and the dirty extents are exactly the differing blocks.
    let diff = differing_blocks(&built.golden_path, &out);
    assert!(!diff.is_empty());
    let in_root: Vec<&u64> = diff
        .iter()
        .filter(|&&b| b >= root.start && b < root.start + root.len)
        .collect();
    for &b in &diff {
        let in_seed = b >= seed.start && b < seed.start + seed.len;
        let in_rootp = b >= root.start && b < root.start + root.len;
        assert!(
            in_seed || in_rootp,
            "block at {b} changed outside seed and root"
        );
    }
    assert!(
        !in_root.is_empty() && in_root.len() <= 40,
        "{} root blocks changed",
        in_root.len()
    );
    let mut dirty_blocks = Vec::new();
    for e in personalised.dirty_extents() {
        let mut at = e.offset;
        while at < e.end() {
            dirty_blocks.push(at);
            at += OVERLAY_BLOCK;
        }
    }
    assert_eq!(dirty_blocks, diff, "dirty extents are the changed blocks");

    check_slot(layout, &personalised, &out, &built.dir);
}

fn check_slot(layout: &Layout, personalised: &Personalised, out: &Path, dir: &Path) {
    let slot = personalised.slot;
    let seed = &personalised.seed_partition;
    assert_eq!(slot.len, 64 * 1024);
    assert!(slot.offset >= seed.start && slot.offset + slot.len <= seed.start + seed.len);
    // Zero-filled as built.
    assert_eq!(
        mtype(out, seed.start, "metis-secrets.bin"),
        vec![0u8; 64 * 1024]
    );

    // What the flasher does: write bytes at the recorded offset, no FAT driver.
    let flashed = dir.join("flashed.img");
    std::fs::copy(out, &flashed).unwrap();
    let secrets: Vec<u8> = (0..slot.len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&flashed)
            .unwrap();
        f.seek(SeekFrom::Start(slot.offset)).unwrap();
        f.write_all(&secrets).unwrap();
    }
    assert_eq!(
        mtype(&flashed, seed.start, "metis-secrets.bin"),
        secrets,
        "{}: the slot's recorded offset is where the file's data is",
        layout.name
    );
    let seed_part = dir.join("flashed-seed.part");
    extract(&flashed, seed.start, seed.len, &seed_part);
    fsck_vfat(&seed_part);
    // Nothing outside the slot moved.
    let diff = differing_blocks(out, &flashed);
    for b in diff {
        assert!(
            b + OVERLAY_BLOCK > slot.offset && b < slot.offset + slot.len,
            "block {b} outside the slot changed"
        );
    }
}

#[test]
fn ubuntu_mbr_fat32() {
    check_layout(&UBUNTU);
}

#[test]
fn armbian_gpt_fat16() {
    check_layout(&ARMBIAN);
}

#[test]
fn cidata_mbr_fat12_fragmented() {
    check_layout(&CIDATA);
}

/// The nodes of a class share one metadata copy of the golden root, each
/// node's edits rolled back with e2undo: a node built after another is byte
/// for byte the node built alone, and the copy survives for the next one.
#[test]
fn nodes_sharing_the_root_copy_are_the_nodes_built_alone() {
    for layout in [&UBUNTU, &ARMBIAN] {
        let built = build(layout);
        let req_a = request(layout, &built.golden);
        let mut req_b = request(layout, &built.golden);
        req_b.root_files[0] = RootFile::machine_id("0123456789abcdef0123456789abcdef").unwrap();
        req_b.root_files[1].bytes = b"node=titan-jh, a longer file than node a has\n".to_vec();
        assert!(!built.golden.root_scratch().holds_copy());
        let a = built.dir.join("a.img");
        let b_after_a = built.dir.join("b-after-a.img");
        let b_alone = built.dir.join("b-alone.img");
        let a_again = built.dir.join("a-again.img");
        write_image(&personalise(&built.golden, &req_a).unwrap(), &a).unwrap();
        assert!(built.golden.root_scratch().holds_copy(), "{}", layout.name);
        write_image(&personalise(&built.golden, &req_b).unwrap(), &b_after_a).unwrap();
        write_image(&personalise(&built.golden, &req_a).unwrap(), &a_again).unwrap();
        assert!(
            built.golden.root_scratch().holds_copy(),
            "{}: a roll-back failed and the copy was dropped",
            layout.name
        );
        let fresh = GoldenImage::open(
            &built.golden_path,
            &file_sha256(&built.golden_path).unwrap(),
        )
        .unwrap();
        write_image(&personalise(&fresh, &req_b).unwrap(), &b_alone).unwrap();
        assert!(
            std::fs::read(&b_after_a).unwrap() == std::fs::read(&b_alone).unwrap(),
            "{}: node b built after node a differs from node b built alone",
            layout.name
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&a_again).unwrap(),
            "{}: node a built again differs",
            layout.name
        );
        assert!(
            std::fs::read(&a).unwrap() != std::fs::read(&b_alone).unwrap(),
            "{}: the two nodes should differ",
            layout.name
        );
    }
}

#[test]
fn same_input_gives_the_same_image() {
    let built = build(&ARMBIAN);
    let req = request(&ARMBIAN, &built.golden);
    let a = built.dir.join("a.img");
    let b = built.dir.join("b.img");
    let first = personalise(&built.golden, &req).unwrap();
    write_image(&first, &a).unwrap();
    let second = personalise(&built.golden, &req).unwrap();
    write_image(&second, &b).unwrap();
    assert_eq!(first.dirty_extents(), second.dirty_extents());
    assert_eq!(first.slot, second.slot);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds of the same node differ"
    );
}

#[test]
fn seed_by_gpt_name() {
    let built = build(&ARMBIAN);
    let mut req = request(&ARMBIAN, &built.golden);
    req.seed = PartitionSelector::GptName("armbi_boot".into());
    req.root = Some(PartitionSelector::GptName("armbi_root".into()));
    let p = personalise(&built.golden, &req).unwrap();
    assert_eq!(p.seed_partition.number, 1);
    assert_eq!(p.root_partition.unwrap().number, 2);
}

#[test]
fn compressed_inputs_give_the_same_image() {
    let built = build(&UBUNTU);
    let req = request(&UBUNTU, &built.golden);
    let reference = built.dir.join("raw.img");
    write_image(&personalise(&built.golden, &req).unwrap(), &reference).unwrap();
    let raw = built.golden_path.to_str().unwrap();
    tool("zstd", &["-q", "-3", raw, "-o", &format!("{raw}.zst")]);
    tool("xz", &["-k", "-1", "-T1", raw]);
    for ext in ["zst", "xz"] {
        let path = PathBuf::from(format!("{raw}.{ext}"));
        let sha = file_sha256(&path).unwrap();
        let golden = GoldenImage::open(&path, &sha).unwrap();
        assert_eq!(golden.size(), built.golden.size());
        let out = built.dir.join(format!("from-{ext}.img"));
        write_image(&personalise(&golden, &req).unwrap(), &out).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&reference).unwrap(),
            ".{ext} input gives another image"
        );
    }
}

#[test]
fn corrupted_golden_fails_before_anything_else() {
    let built = build(&CIDATA);
    let sha = file_sha256(&built.golden_path).unwrap();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&built.golden_path)
            .unwrap();
        f.seek(SeekFrom::Start(600_000)).unwrap();
        f.write_all(b"bitrot").unwrap();
    }
    let err = GoldenImage::open(&built.golden_path, &sha).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GoldenError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&sha), "names the expected digest: {msg}");
    assert!(
        msg.contains(&file_sha256(&built.golden_path).unwrap()),
        "names the actual digest: {msg}"
    );
    assert!(msg.contains("cidata.img"), "names the file: {msg}");
}

#[test]
fn truncated_golden_fails_with_a_clear_message() {
    let built = build(&UBUNTU);
    let truncated = built.dir.join("truncated.img");
    extract(&built.golden_path, 0, 100 * 1024 * 1024, &truncated);
    // The digest matches (of the truncated file): the table catches it.
    let golden = GoldenImage::open(&truncated, &file_sha256(&truncated).unwrap()).unwrap();
    let err = personalise(&golden, &request(&UBUNTU, &golden)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PersonaliseError::Partition(PartitionError::OutOfBounds { .. })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("truncated") && msg.contains("truncated.img"),
        "{msg}"
    );

    // A truncated compressed image fails to decompress.
    let raw = built.golden_path.to_str().unwrap();
    tool("zstd", &["-q", raw, "-o", &format!("{raw}.zst")]);
    let zst = PathBuf::from(format!("{raw}.zst"));
    let bytes = std::fs::read(&zst).unwrap();
    std::fs::write(&zst, &bytes[..bytes.len() / 2]).unwrap();
    let err = GoldenImage::open(&zst, &file_sha256(&zst).unwrap()).unwrap_err();
    assert!(matches!(err, GoldenError::Decompress { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn missing_seed_label_lists_what_was_found() {
    let built = build(&UBUNTU);
    let mut req = request(&UBUNTU, &built.golden);
    req.seed = PartitionSelector::Label("CIDATA".into());
    let err = personalise(&built.golden, &req).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PersonaliseError::Partition(PartitionError::NotFound { .. })
        ),
        "{msg}"
    );
    assert!(msg.contains("\"CIDATA\""), "{msg}");
    assert!(msg.contains("system-boot"), "lists found labels: {msg}");
    assert!(msg.contains("writable"), "lists found labels: {msg}");

    // A seed label that names the ext4 root is the wrong filesystem.
    req.seed = PartitionSelector::Label("writable".into());
    let err = personalise(&built.golden, &req).unwrap_err();
    assert!(
        matches!(
            err,
            PersonaliseError::Partition(PartitionError::WrongFilesystem { .. })
        ),
        "{err}"
    );
}

#[test]
fn ambiguous_seed_label_lists_the_candidates() {
    let layout = Layout {
        name: "twice",
        duplicate_boot: true,
        ..CIDATA
    };
    let built = build(&layout);
    let err = personalise(&built.golden, &request(&layout, &built.golden)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PersonaliseError::Partition(PartitionError::Ambiguous { .. })
        ),
        "{msg}"
    );
    assert!(msg.contains("1 (vfat") && msg.contains("2 (vfat"), "{msg}");
}

/// The project's stand-in golden images (tests/golden/gen.sh), when the
/// generator is there: each class layout personalises and reads back clean.
#[test]
fn gen_sh_stand_ins() {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/gen.sh");
    if !gen.is_file() {
        eprintln!("skipped: {} is absent", gen.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    tool("sh", &[gen.to_str().unwrap(), dir.path().to_str().unwrap()]);
    let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    for (name, seed, root) in [
        ("rpi-ubuntu.img", "system-boot", "writable"),
        ("armbian.img", "armbi_boot", "armbi_root"),
        ("amd64.img", "CIDATA", "rootfs"),
    ] {
        let sha = sums
            .lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name} not in SHA256SUMS"));
        let golden = GoldenImage::open(&dir.path().join(name), sha).unwrap();
        let req = PersonaliseRequest {
            seed: PartitionSelector::Label(seed.into()),
            seed_filesystem: Filesystem::Vfat,
            root: Some(PartitionSelector::Label(root.into())),
            seed_files: seed_files(),
            slot: SlotSpec::default(),
            root_files: vec![RootFile::machine_id(MACHINE_ID).unwrap()],
        };
        let p = personalise(&golden, &req).unwrap();
        let out = dir.path().join(format!("node-{name}"));
        write_image(&p, &out).unwrap();
        let seed_part = dir.path().join("seed.part");
        let root_part = dir.path().join("root.part");
        let (s, r) = (&p.seed_partition, p.root_partition.as_ref().unwrap());
        extract(&out, s.start, s.len, &seed_part);
        extract(&out, r.start, r.len, &root_part);
        fsck_vfat(&seed_part);
        e2fsck(&root_part);
        for (path, bytes) in &req.seed_files {
            assert_eq!(&mtype(&out, s.start, path), bytes, "{name}: {path}");
        }
        assert_eq!(
            debugfs_cat(&root_part, "/etc/machine-id"),
            format!("{MACHINE_ID}\n").as_bytes(),
            "{name}"
        );
        check_slot(&UBUNTU, &p, &out, dir.path());
    }
}

/// Enough root edits for debugfs's undo file to need several key blocks:
/// every file must still land, and nothing else may change.
#[test]
fn many_root_files_fold_back_completely() {
    let built = build(&CIDATA);
    let mut req = request(&CIDATA, &built.golden);
    for i in 0..150u32 {
        req.root_files.push(RootFile {
            path: format!("/etc/metis/many/d{}/f{i:03}", i % 7),
            bytes: (0..(1000 + i * 37)).map(|j| (j ^ i) as u8).collect(),
            mode: 0o640,
        });
    }
    let p = personalise(&built.golden, &req).unwrap();
    let out = built.dir.join("many.img");
    write_image(&p, &out).unwrap();
    let root = p.root_partition.as_ref().unwrap();
    let root_part = built.dir.join("many-root.part");
    extract(&out, root.start, root.len, &root_part);
    e2fsck(&root_part);
    for f in &req.root_files {
        assert_eq!(debugfs_cat(&root_part, &f.path), f.bytes, "{}", f.path);
    }
    let golden_root = golden_root_files(&built, root);
    assert!(!golden_root.is_empty());
    for (path, bytes) in golden_root {
        if path != "/etc/machine-id" {
            assert_eq!(
                debugfs_cat(&root_part, &path),
                bytes,
                "golden {path} changed"
            );
        }
    }
}
