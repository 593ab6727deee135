//! Spare cards, end to end through the binary: the example lab published into an
//! `oci:` registry, one card (a loop device, or a FUSE card whose faults the test
//! controls) turned into one node of a class after another. A card holding a
//! node of the same class is compared and only what differs is written; anything
//! else gets a full write; either way the card ends byte for byte as a full write
//! of the node onto a new card leaves it, and an interrupted flash is repaired by
//! the next run.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::{demo, flash, have_fusepy, publish_into, published, sha, FakeCard, Loop};

const MIB: u64 = 1 << 20;
const CARD: u64 = 200 * MIB;

/// The lab, published and pulled, with the operator's key and the demo signing
/// key pinned.
struct Lab {
    work: tempfile::TempDir,
    inv: PathBuf,
    reg: PathBuf,
    cache: PathBuf,
    config: PathBuf,
}

impl Lab {
    fn new(nodes: &[&str]) -> Self {
        let work = tempfile::tempdir().unwrap();
        let (inv, reg) = published(work.path(), nodes);
        let lab = Lab {
            cache: work.path().join("cache"),
            config: work.path().join("config"),
            inv,
            reg,
            work,
        };
        lab.ok(&["trust", "add", demo("cosign.pub").to_str().unwrap()]);
        lab
    }

    fn registry(&self) -> String {
        format!("oci:{}", self.reg.display())
    }

    fn run(&self, args: &[&str]) -> Output {
        let reg = self.registry();
        let identity = demo("operator.agekey");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--registry", &reg, "--identity", identity.to_str().unwrap()]);
        flash(&self.cache, &self.config, &all)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = if args[0] == "trust" {
            flash(&self.cache, &self.config, args)
        } else {
            self.run(args)
        };
        assert!(
            o.status.success(),
            "metis-flash {args:?}:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Flashes `node` onto `dev` (`--json`) and returns the summary.
    fn flash_json(&self, node: &str, dev: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = flash_onto(node, dev).to_vec();
        args.extend_from_slice(extra);
        let o = self.ok(&args);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let summary: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(summary["ok"], true, "{summary:#}");
        summary
    }

    /// The node's image with its secrets, as `--output` writes it.
    fn output(&self, node: &str) -> PathBuf {
        let img = self.work.path().join(format!("{node}.img"));
        let _ = std::fs::remove_file(&img);
        self.ok(&["flash", node, "--output", img.to_str().unwrap()]);
        img
    }

    /// A new card holding `content`, flashed with `node` in full; the whole card's
    /// SHA-256.
    fn fresh_card(&self, node: &str, content: &[u8]) -> String {
        let file = self.work.path().join("fresh.raw");
        std::fs::write(&file, content).unwrap();
        let dev = Loop::attach(&file, &[]);
        let s = self.flash_json(node, &dev.dev, &["--full"]);
        assert!(s["card_held"].is_null(), "{s:#}");
        drop(dev);
        let digest = sha(&file, CARD);
        std::fs::remove_file(&file).unwrap();
        digest
    }
}

/// Reproducible junk: what a card bought second-hand holds.
fn random_card() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..CARD / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn chunks(s: &serde_json::Value, what: &str) -> u64 {
    s["chunks"][what].as_u64().unwrap()
}

#[test]
fn a_spare_card_becomes_each_node_of_its_class_writing_only_what_differs() {
    let lab = Lab::new(&["titan-13", "titan-15", "titan-db"]);
    let junk = random_card();
    let file = lab.work.path().join("card.raw");
    std::fs::write(&file, &junk).unwrap();
    let card = Loop::attach(&file, &[]);

    // Random bytes: no marker, a full write with no comparison read.
    let s = lab.flash_json("titan-13", &card.dev, &[]);
    assert!(s["card_held"].is_null(), "{s:#}");
    assert_eq!(chunks(&s, "compared"), 0, "{s:#}");
    let total = chunks(&s, "total");
    assert_eq!(chunks(&s, "rewritten"), total, "{s:#}");
    let image = s["image_bytes"].as_u64().unwrap();

    // Another node of the class: compared, a few chunks written, the card as a
    // full write of titan-15 onto a new card leaves it.
    let s = lab.flash_json("titan-15", &card.dev, &[]);
    assert_eq!(s["card_held"]["node"], "titan-13", "{s:#}");
    assert_eq!(chunks(&s, "compared"), total, "{s:#}");
    let differing = chunks(&s, "differing");
    assert!(differing >= 1 && differing < total / 4, "{s:#}");
    assert_eq!(
        chunks(&s, "skipped") + chunks(&s, "rewritten"),
        total,
        "{s:#}"
    );
    assert!(
        s["bytes_written"].as_u64().unwrap() < image / 4,
        "wrote {} of {image}: {s:#}",
        s["bytes_written"]
    );
    let titan15 = lab.fresh_card("titan-15", &junk);
    assert_eq!(
        sha(&file, CARD),
        titan15,
        "titan-13 → titan-15 is not titan-15"
    );

    // One chunk corrupted after flashing: only it (and the partition-table
    // chunks the wipe takes) is rewritten, and the operator is told so.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&card.dev)
            .unwrap();
        f.seek(SeekFrom::Start(100 * MIB + 12345)).unwrap();
        f.write_all(b"bit rot").unwrap();
        f.sync_all().unwrap();
    }
    let o = lab.ok(&[
        "flash",
        "titan-15",
        "--device",
        &card.dev,
        "--yes",
        "--force-non-removable",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "titan-15: 1 of {total} chunks differ from the card (it held titan-15 revision"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("insert and power on"), "{stderr}");
    assert_eq!(
        sha(&file, CARD),
        titan15,
        "the repaired card is not titan-15"
    );

    // The same node's next revision (a label added in the inventory).
    let node_file = lab.inv.join("nodes/titan-15.yaml");
    let yaml = std::fs::read_to_string(&node_file).unwrap().replace(
        "    - lab.home.arpa/board=rpi4\n",
        "    - lab.home.arpa/board=rpi4\n    - lab.home.arpa/rack=b\n",
    );
    std::fs::write(&node_file, yaml).unwrap();
    publish_into(&lab.inv, &lab.reg, &["titan-15"], None);
    let s = lab.flash_json("titan-15", &card.dev, &[]);
    assert_eq!(s["card_held"]["node"], "titan-15", "{s:#}");
    assert!(chunks(&s, "differing") < total / 4, "{s:#}");
    let next = lab.fresh_card("titan-15", &junk);
    assert_ne!(next, titan15, "the new revision changed nothing");
    assert_eq!(
        sha(&file, CARD),
        next,
        "the card is not titan-15's new revision"
    );

    // Another class: a full write, no comparison.
    let s = lab.flash_json("titan-db", &card.dev, &[]);
    assert!(s["card_held"].is_null(), "{s:#}");
    assert_eq!(chunks(&s, "compared"), 0, "{s:#}");
    assert_eq!(
        sha(&file, CARD),
        lab.fresh_card("titan-db", &junk),
        "the card is not titan-db"
    );
}

/// The arguments that flash `node` onto `dev` with no question, `--json`.
fn flash_onto<'a>(node: &'a str, dev: &'a str) -> [&'a str; 7] {
    [
        "flash",
        node,
        "--device",
        dev,
        "--yes",
        "--force-non-removable",
        "--json",
    ]
}

/// `metis-flash` in the background, `--json` on stdout.
fn spawn(lab: &Lab, node: &str, dev: &str) -> std::process::Child {
    let reg = lab.registry();
    Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args(flash_onto(node, dev))
        .args([
            "--registry",
            &reg,
            "--identity",
            demo("operator.agekey").to_str().unwrap(),
        ])
        .env("METIS_CACHE", &lab.cache)
        .env("XDG_CONFIG_HOME", &lab.config)
        .env("PATH", lab::sbin_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn head_is_zero(card: &Path) -> bool {
    use std::io::Read as _;
    let mut head = vec![0u8; MIB as usize];
    std::fs::File::open(card)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    head.iter().all(|b| *b == 0)
}

#[test]
fn interrupted_spare_card_flashes_are_repaired_by_the_next_run() {
    assert!(have_fusepy(), "needs python3-fusepy and /dev/fuse");
    let lab = Lab::new(&["titan-13", "titan-15"]);
    let want = lab.output("titan-15");
    let image = std::fs::metadata(&want).unwrap().len();
    let arm = lab.work.path().join("eio-armed");
    // A write at 1 MiB + 4 KiB fails while `arm` exists: within the first FUSE
    // request of chunk 0's block (a rewrite always writes chunk 0, its first MiB
    // held back for last; 1 MiB itself is a capacity-probe offset), so the loop
    // device's first request of that write fails outright — a fault in the middle
    // of a request is lost below us (FUSE returns a short count, the loop driver
    // completes a short write as a success). Each write takes 5 ms so a signal
    // lands mid-way.
    let options = [
        "--delay-ms".to_string(),
        "5".into(),
        "--eio-at".into(),
        (MIB + 4096).to_string(),
        "--eio-arm".into(),
        arm.to_str().unwrap().into(),
    ];
    let card = FakeCard::start(CARD as usize, &options, 4 * MIB as usize);
    let s = lab.flash_json("titan-13", card.dev(), &[]);
    assert!(s["card_held"].is_null(), "{s:#}");

    // SIGINT while the differing chunks are being written: exit 130, wiped.
    let started = card.written();
    let child = spawn(&lab, "titan-15", card.dev());
    let deadline = Instant::now() + Duration::from_secs(120);
    while card.written() < started + 2 * MIB {
        assert!(Instant::now() < deadline, "the flash never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        head_is_zero(&card.card()),
        "an interrupted flash left a partition table"
    );

    // The next run compares (the marker survived the wipe) and repairs it.
    let s = lab.flash_json("titan-15", card.dev(), &[]);
    assert_eq!(s["card_held"]["node"], "titan-15", "{s:#}");
    assert_eq!(sha(&card.card(), image), sha(&want, image));

    // An I/O error mid-way: exit 5, wiped; repaired once the card behaves.
    let s = lab.flash_json("titan-13", card.dev(), &[]);
    assert_eq!(s["card_held"]["node"], "titan-15", "{s:#}");
    std::fs::write(&arm, b"").unwrap();
    let o = spawn(&lab, "titan-15", card.dev())
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("was wiped"), "{stderr}");
    assert!(head_is_zero(&card.card()));
    std::fs::remove_file(&arm).unwrap();
    let s = lab.flash_json("titan-15", card.dev(), &[]);
    assert_eq!(s["card_held"]["node"], "titan-15", "{s:#}");
    assert_eq!(sha(&card.card(), image), sha(&want, image));
}
