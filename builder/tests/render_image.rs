//! `metis-build render NODE --image` on the stand-in golden images of every
//! class: fsck-clean, byte-reproducible, holding exactly the rendered seed and
//! root files, changed only inside the seed and root partitions, with a
//! secrets slot the flasher can fill by offset.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use metis_tests::card::Card;
use metis_tests::golden::generate_standins;

/// A copy of the example inventory with the stand-ins generated into its golden/.
fn lab() -> &'static Path {
    static LAB: OnceLock<PathBuf> = OnceLock::new();
    LAB.get_or_init(|| {
        // A static outlives the run: the lab lives in the target directory and
        // the next run replaces it.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("render-image-lab");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        metis_tests::copy_example_inventory(&dir);
        generate_standins(&dir.join("golden")).expect("gen.sh");
        dir
    })
}

fn metis_build(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-build"));
    cmd.args(args);
    cmd.env("PATH", metis_tests::tool::search_path());
    cmd.output().unwrap()
}

fn build_image(inv: &Path, node: &str, out: &Path) -> String {
    let o = metis_build(&[
        "render",
        node,
        "--inventory",
        inv.to_str().unwrap(),
        "--image",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        o.status.success(),
        "render {node} --image failed:\n{stderr}"
    );
    stderr
}

/// (first, last) byte of the secrets slot from the render's report.
fn slot_range(stderr: &str) -> (u64, u64) {
    let s = stderr
        .split("secrets slot at bytes ")
        .nth(1)
        .expect("slot reported");
    let range = s.split_whitespace().next().unwrap();
    let (a, b) = range.split_once("..").unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

struct ClassCase {
    node: &'static str,
    golden: &'static str,
    seed: usize,
    root: usize,
}

const CASES: &[ClassCase] = &[
    ClassCase {
        node: "titan-04",
        golden: "rpi-ubuntu.img",
        seed: 1,
        root: 2,
    },
    ClassCase {
        node: "titan-0a",
        golden: "rpi-ubuntu.img",
        seed: 1,
        root: 2,
    },
    ClassCase {
        node: "titan-13",
        golden: "armbian.img",
        seed: 1,
        root: 2,
    },
    ClassCase {
        node: "titan-12",
        golden: "armbian.img",
        seed: 1,
        root: 2,
    },
    ClassCase {
        node: "titan-db",
        golden: "amd64.img",
        seed: 2,
        root: 3,
    },
    ClassCase {
        node: "atlas",
        golden: "amd64.img",
        seed: 2,
        root: 3,
    },
];

#[test]
fn every_class_gets_a_clean_reproducible_personalised_card() {
    let inv = lab();
    for case in CASES {
        let work = tempfile::tempdir().unwrap();
        let a = work.path().join("a.img");
        let b = work.path().join("b.img");
        let stderr = build_image(inv, case.node, &a);
        build_image(inv, case.node, &b);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{}: two builds differ",
            case.node
        );

        // What render --out writes is what landed in the image.
        let seed_dir = work.path().join("render");
        let o = metis_build(&[
            "render",
            case.node,
            "--inventory",
            inv.to_str().unwrap(),
            "--out",
            seed_dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let card = Card::open(&a).unwrap();
        card.fat_check(case.seed)
            .unwrap_or_else(|e| panic!("{}: fsck.vfat: {e:#}", case.node));
        card.ext4_check(case.root)
            .unwrap_or_else(|e| panic!("{}: e2fsck: {e:#}", case.node));
        for name in ["user-data", "meta-data", "network-config"] {
            let want = std::fs::read(seed_dir.join("seed").join(name)).unwrap();
            let got = card.fat_read(case.seed, name).unwrap();
            assert!(
                got == want,
                "{}: {name} on the card differs from the render",
                case.node
            );
        }
        let meta = card.fat_read_string(case.seed, "meta-data").unwrap();
        assert!(
            meta.contains("instance-id: "),
            "{}: meta-data without instance-id:\n{meta}",
            case.node
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(seed_dir.join("render.json")).unwrap()).unwrap();
        let machine_id = card.ext4_read_string(case.root, "/etc/machine-id").unwrap();
        assert_eq!(
            machine_id.trim(),
            summary["machine_id"].as_str().unwrap(),
            "{}",
            case.node
        );

        // Every file the golden image's seed had is still there.
        let golden_card = Card::open(inv.join("golden").join(case.golden)).unwrap();
        let before = golden_card.fat_list(case.seed, "/").unwrap();
        let after = card.fat_list(case.seed, "/").unwrap();
        for f in &before {
            assert!(
                after.contains(f),
                "{}: golden seed file {f} is gone",
                case.node
            );
        }

        // Only bytes inside the seed and root partitions changed.
        let seed_p = card.partition(case.seed).unwrap().clone();
        let root_p = card.partition(case.root).unwrap().clone();
        let (ga, gb) = (
            std::fs::read(inv.join("golden").join(case.golden)).unwrap(),
            std::fs::read(&a).unwrap(),
        );
        assert_eq!(ga.len(), gb.len());
        for (i, (x, y)) in ga.chunks(4096).zip(gb.chunks(4096)).enumerate() {
            if x != y {
                let off = (i * 4096) as u64;
                let inside = |p: &metis_tests::card::Partition| {
                    off >= p.offset() && off < p.offset() + p.len()
                };
                assert!(
                    inside(&seed_p) || inside(&root_p),
                    "{}: byte {off} changed outside seed and root",
                    case.node
                );
            }
        }

        // The slot is where the report says: fill it with random bytes by
        // offset, as the flasher will, and the filesystem stays clean.
        let (start, end) = slot_range(&stderr);
        assert_eq!(end - start, 64 * 1024);
        let slot = card.fat_read(case.seed, "metis-secrets.bin").unwrap();
        assert!(
            slot.len() == 64 * 1024 && slot.iter().all(|b| *b == 0),
            "{}: slot not zeroed",
            case.node
        );
        let noise: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        f.write_all(&noise).unwrap();
        drop(f);
        assert_eq!(
            card.fat_read(case.seed, "metis-secrets.bin").unwrap(),
            noise,
            "{}: slot offset is wrong",
            case.node
        );
        card.fat_check(case.seed)
            .unwrap_or_else(|e| panic!("{}: fsck after filling the slot: {e:#}", case.node));
    }
}

#[test]
fn armbian_cards_keep_their_host_keys_and_mac() {
    let inv = lab();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("t13.img");
    build_image(inv, "titan-13", &img);
    let card = Card::open(&img).unwrap();
    let env = card.fat_read_string(1, "armbianEnv.txt").unwrap();
    assert!(
        env.lines().any(|l| l == "ethaddr=dc:a6:32:00:00:13"),
        "armbianEnv.txt:\n{env}"
    );
    let firstrun = card
        .ext4_read_string(2, "/etc/default/armbian-firstrun")
        .unwrap();
    assert!(
        firstrun
            .lines()
            .any(|l| l.trim() == "OPENSSHD_REGENERATE_HOST_KEYS=false"),
        "armbian-firstrun:\n{firstrun}"
    );
    // armbian-firstrun randomises ethaddr at first boot; the drop-in puts the
    // node's back (core/tests/render_tools.rs runs the real script's lines).
    let dropin = card
        .ext4_read_string(
            2,
            "/etc/systemd/system/armbian-firstrun.service.d/60-metis-mac.conf",
        )
        .unwrap();
    assert!(
        dropin.contains("s/^ethaddr=.*/ethaddr=dc:a6:32:00:00:13/"),
        "armbian-firstrun drop-in:\n{dropin}"
    );
}

#[test]
fn a_corrupted_golden_image_is_refused_with_both_digests() {
    let src = lab();
    let inv = tempfile::tempdir().unwrap();
    metis_tests::copy_example_inventory(inv.path());
    std::fs::create_dir_all(inv.path().join("golden")).unwrap();
    for f in ["rpi-ubuntu.img", "armbian.img", "amd64.img"] {
        std::fs::copy(
            src.join("golden").join(f),
            inv.path().join("golden").join(f),
        )
        .unwrap();
    }
    let golden = inv.path().join("golden/amd64.img");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&golden)
        .unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"\xff").unwrap();
    drop(f);
    let out = inv.path().join("x.img");
    let o = metis_build(&[
        "render",
        "titan-db",
        "--inventory",
        inv.path().to_str().unwrap(),
        "--image",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a corrupted golden image was accepted");
    assert!(
        stderr.contains("5fc23c6f69d15548abf6d11259699b8146694fdabe80e21d5d41528a0f47a216"),
        "expected digest not named:\n{stderr}"
    );
    assert!(stderr.contains("amd64.img"), "file not named:\n{stderr}");
    assert!(
        !out.exists(),
        "an image was written from a corrupted golden image"
    );

    // Truncated: also refused.
    std::fs::File::options()
        .write(true)
        .open(&golden)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let o = metis_build(&[
        "render",
        "titan-db",
        "--inventory",
        inv.path().to_str().unwrap(),
        "--image",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "a truncated golden image was accepted");
}

/// The artifact form of a node's card — shared class base + node patch —
/// composes, with every chunk verified, to exactly what `render --image` writes.
#[test]
fn base_plus_patch_composes_to_the_rendered_image_on_every_class() {
    use metis_core::image::base::{write_base, BaseOptions};
    use metis_core::image::compose::{compose_table, ComposeOptions, Composer};
    use std::io::Read;

    let inv = metis_core::lab::load(lab()).unwrap();
    let mut bases: std::collections::BTreeMap<
        &str,
        (PathBuf, metis_core::image::chunks::ChunkTable),
    > = Default::default();
    let work = tempfile::tempdir().unwrap();
    for case in CASES {
        let golden = lab().join("golden").join(case.golden);
        let (base_path, base_table) = bases
            .entry(case.golden)
            .or_insert_with(|| {
                let path = work.path().join(format!("{}.zst", case.golden));
                let summary = write_base(
                    std::fs::File::open(&golden).unwrap(),
                    std::fs::File::create(&path).unwrap(),
                    &BaseOptions::default().with_chunk_size(1 << 20),
                )
                .unwrap();
                // The base is a plain zstd stream too: `zstd -d` gives the golden image back.
                let o = Command::new("zstd")
                    .args(["-d", "-c", "-q"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success() && o.stdout == std::fs::read(&golden).unwrap(),
                    "zstd -d of the {} base",
                    case.golden
                );
                (path, summary.table)
            })
            .clone();

        let out = work.path().join(format!("{}.img", case.node));
        let img = metis_core::build::node::write_node_image(&inv, case.node, &out, None).unwrap();
        let patch = img.patch().unwrap();
        assert!(
            patch.byte_count() < 1 << 20,
            "{}: patch of {} bytes",
            case.node,
            patch.byte_count()
        );
        let encoded = patch.encode().unwrap();
        let patch = metis_core::image::patch::Patch::decode(&encoded).unwrap();
        let composed = compose_table(
            std::fs::File::open(&base_path).unwrap(),
            &base_table,
            &patch,
        )
        .unwrap();
        let mut reader = Composer::new(
            std::fs::File::open(&base_path).unwrap(),
            composed,
            patch,
            ComposeOptions::default(),
        )
        .unwrap()
        .into_reader();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        let want = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), want.len(), "{}: composed size", case.node);
        assert!(
            got == want,
            "{}: compose(base, patch) differs from render --image",
            case.node
        );
        eprintln!("{}: patch {} bytes encoded", case.node, encoded.len());
    }
}
