//! The pickers as an operator uses them: `metis-flash` on a real pseudo-terminal
//! (a detached tmux session), keys sent one by one, the screen read back. The
//! node picker lists the signed lab index with each node's class and cache
//! state; the disk picker offers a loop device (with --force-non-removable),
//! lists the system disk as refused with its reason, and still asks for the node
//! name, even with --yes. Without a terminal, NODE and the target must be named.
//! Needs root (loop devices) and tmux.

mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lab::{demo, flash, published, sbin_path, sha, Loop};
use metis_tests::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_metis-flash");
const WAIT: Duration = Duration::from_secs(120);
const CARD_BYTES: u64 = 256 << 20;

#[test]
fn without_a_terminal_the_node_and_the_target_must_be_named() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let config = work.path().join("config");

    let o = flash(&cache, &config, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: name the node to flash: metis-flash NODE (metis-flash list shows the lab's nodes)"
        ),
        "{stderr}"
    );

    let o = flash(&cache, &config, &["titan-13", "--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--device") && stderr.contains("--output"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["exit_code"], 2);
    // Refused before any work: no cache was even opened.
    assert!(!cache.exists(), "the cache was created for a usage error");
}

/// The whole disk that holds `/`, if `/` is on a block device.
fn system_disk() -> Option<String> {
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("PATH", sbin_path())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let mut dev = run(&["findmnt", "-no", "SOURCE", "/"])?;
    if !dev.starts_with("/dev/") {
        return None;
    }
    // Partition, LVM or dm-crypt: walk up to the disk.
    for _ in 0..5 {
        let parent = run(&["lsblk", "-ndo", "PKNAME", &dev])?;
        if parent.is_empty() {
            break;
        }
        dev = format!("/dev/{}", parent.lines().next().unwrap_or_default());
    }
    Some(dev)
}

/// The rows of the picker under the line holding `prompt` and the column
/// header: its items, in order.
fn picker_rows(screen: &str, prompt: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.contains(prompt))
        .unwrap_or_else(|| panic!("no {prompt:?} on the screen:\n{screen}"));
    let header = lines.get(at + 1).unwrap_or(&"");
    assert!(
        header.starts_with("  NODE") || header.starts_with("  DISK"),
        "no column header under {prompt:?}:\n{screen}"
    );
    lines[at + 2..]
        .iter()
        .take_while(|l| l.starts_with("> ") || l.starts_with("  "))
        .map(|l| l.to_string())
        .collect()
}

fn is_zero(path: &Path) -> bool {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return true;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return false;
        }
    }
}

struct Operator {
    _work: tempfile::TempDir,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    common: Vec<String>,
    identity: String,
}

impl Operator {
    /// `metis-flash ARGS --identity … --registry …` on a terminal.
    fn run(&self, args: &[&str]) -> Tmux {
        let mut argv = vec![BIN];
        argv.extend_from_slice(args);
        argv.extend(self.common.iter().map(String::as_str));
        argv.extend(["--identity", self.identity.as_str()]);
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Tmux::start(&argv, &env)
    }

    /// `metis-flash ARGS --registry …` without a terminal.
    fn flash(&self, args: &[&str]) -> std::process::Output {
        let mut a = args.to_vec();
        a.extend(self.common.iter().map(String::as_str));
        flash(&self.dir.join("cache"), &self.dir.join("config"), &a)
    }
}

/// titan-13 and titan-15 published, titan-13 pulled, the lab key pinned.
fn operator() -> Operator {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let (inv_dir, reg_dir) = published(&dir, &["titan-13", "titan-15"]);
    let reg = format!("oci:{}", reg_dir.display());
    let op = Operator {
        env: vec![
            ("METIS_CACHE", dir.join("cache").display().to_string()),
            ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
            ("PATH", sbin_path()),
        ],
        common: vec![
            "--registry".into(),
            reg,
            "--inventory".into(),
            inv_dir.display().to_string(),
        ],
        identity: demo("operator.agekey").display().to_string(),
        dir,
        _work: work,
    };
    let o = flash(
        &op.dir.join("cache"),
        &op.dir.join("config"),
        &["trust", "add", demo("cosign.pub").to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = op.flash(&["pull", "titan-13"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    op
}

#[test]
fn pickers_on_a_terminal() {
    let op = operator();
    let node_prompt = "Node to flash";

    // The node picker lists the index: class, revision, cache state. Esc: nothing.
    let never = op.dir.join("never.img");
    let t = op.run(&["--output", never.to_str().unwrap()]);
    let screen = t.wait_for(node_prompt, WAIT);
    let rows = picker_rows(&screen, node_prompt);
    assert_eq!(rows.len(), 2, "{screen}");
    assert!(
        rows[0].starts_with("> titan-13")
            && rows[0].contains("rpi4-armbian-longhorn")
            && rows[0].trim_end().ends_with(" cached"),
        "{screen}"
    );
    assert!(
        rows[1].starts_with("  titan-15")
            && rows[1].contains("rpi4-armbian-longhorn")
            && rows[1].trim_end().ends_with("not cached"),
        "{screen}"
    );
    assert!(screen.contains("lab index revision"), "{screen}");
    t.keys(&["Escape"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("nothing picked"), "{screen}");
    assert!(!never.exists());
    drop(t);
    // Ctrl-C: interrupted (130), nothing written.
    let t = op.run(&["--output", never.to_str().unwrap()]);
    t.wait_for(node_prompt, WAIT);
    t.keys(&["C-c"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 130, "{screen}");
    assert!(
        screen.contains("interrupted: nothing was written"),
        "{screen}"
    );
    assert!(!never.exists());
    drop(t);

    // Down and Enter pick titan-15 (not cached: pulled now), written to a file
    // that is byte for byte what `metis-flash flash titan-15 --output` writes.
    let picked = op.dir.join("picked.img");
    let t = op.run(&["--output", picked.to_str().unwrap()]);
    t.wait_for(node_prompt, WAIT);
    t.keys(&["Down"]);
    t.wait_until("titan-15 highlighted", WAIT, |s| {
        picker_rows(s, node_prompt)
            .first()
            .is_some_and(|r| r.starts_with("  titan-13"))
            && s.contains("> titan-15")
    });
    t.keys(&["Enter"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("titan-15: revision"), "{screen}");
    assert!(screen.contains("read back and verified"), "{screen}");
    drop(t);
    let size = assert_holds_the_nodes_image(&op, "titan-15", &picked);
    assert_eq!(std::fs::metadata(&picked).unwrap().len(), size);

    // The disk picker: the test's loop device is offered (--force-non-removable),
    // the system disk is not, with its reason. --yes does not skip the
    // confirmation of a picked disk: a wrong answer writes nothing.
    let card = op.dir.join("card.raw");
    std::fs::File::create(&card)
        .unwrap()
        .set_len(CARD_BYTES)
        .unwrap();
    let dev = Loop::attach(&card, &[]);
    let disk_prompt = "Disk to write titan-13 to";
    let pick_loop = |t: &Tmux| {
        let screen = t.wait_for(disk_prompt, WAIT);
        let rows = picker_rows(&screen, disk_prompt);
        let at = rows
            .iter()
            .position(|r| r[2..].starts_with(&format!("{} ", dev.dev)))
            .unwrap_or_else(|| panic!("{} is not offered:\n{screen}", dev.dev));
        assert!(rows[at].contains("256.0 MiB"), "{screen}");
        assert!(rows[at].contains("loop"), "{screen}");
        assert!(rows[at].contains("no partitions"), "{screen}");
        if let Some(system) = system_disk() {
            let refused = screen
                .lines()
                .find(|l| l.starts_with(&format!("  {system} ")))
                .unwrap_or_else(|| panic!("{system} (holds /) is not listed:\n{screen}"));
            assert!(
                refused.contains("it holds the running system"),
                "{system} is not refused as the system disk:\n{screen}"
            );
            assert!(
                screen.find("not offered:").unwrap() < screen.rfind(disk_prompt).unwrap(),
                "{screen}"
            );
        }
        for _ in 0..at {
            t.keys(&["Down"]);
        }
        t.wait_for(&format!("> {} ", dev.dev), WAIT);
        t.keys(&["Enter"]);
        t.wait_for("Type the node name (titan-13) to write it: ", WAIT)
    };
    let t = op.run(&["titan-13", "--force-non-removable", "--yes"]);
    let screen = pick_loop(&t);
    assert!(
        screen.contains("Everything on this disk will be lost"),
        "{screen}"
    );
    t.type_text("titan-15");
    t.keys(&["Enter"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains(&format!(
            "not confirmed: nothing was written to {}",
            dev.dev
        )),
        "{screen}"
    );
    assert!(is_zero(&card), "an unconfirmed pick wrote to the card");
    drop(t);

    // Both pickers in one run, as at 2 a.m.: titan-13, the loop device, its name.
    let t = op.run(&["--force-non-removable"]);
    t.wait_for(node_prompt, WAIT);
    t.keys(&["Enter"]);
    pick_loop(&t);
    t.type_text("titan-13");
    t.keys(&["Enter"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("insert and power on"), "{screen}");
    drop(t);
    assert_holds_the_nodes_image(&op, "titan-13", &card);
}

/// `written` begins with what `metis-flash flash NODE --output` writes for
/// `node`; returns that image's size.
fn assert_holds_the_nodes_image(op: &Operator, node: &str, written: &Path) -> u64 {
    let reference = op.dir.join(format!("{node}.img"));
    let o = op.flash(&[
        "flash",
        node,
        "--output",
        reference.to_str().unwrap(),
        "--identity",
        &op.identity,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let size = std::fs::metadata(&reference).unwrap().len();
    assert_eq!(
        sha(written, size),
        sha(&reference, size),
        "{} is not {node}'s image",
        written.display()
    );
    size
}

#[test]
fn with_no_disk_to_offer_the_picker_says_why_and_what_to_do() {
    // Only where this machine has no removable disk of its own (a test VM):
    // then no disk passes the rules without --force-non-removable.
    let devices = Command::new(BIN)
        .args(["devices", "--json"])
        .output()
        .unwrap();
    let disks: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    if disks
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["removable"] == true || d["bus"] == "usb" || d["bus"] == "mmc")
    {
        eprintln!("skipped: this machine has a removable disk");
        return;
    }
    let op = operator();
    let t = op.run(&["titan-13", "--offline"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 4, "{screen}");
    assert!(screen.contains("not offered:"), "{screen}");
    assert!(
        screen.contains("no disk can take titan-13's card")
            && screen.contains("insert the card")
            && screen.contains("--force-non-removable")
            && screen.contains("--output FILE.img"),
        "{screen}"
    );
    if let Some(system) = system_disk() {
        assert!(
            screen
                .lines()
                .any(|l| l.starts_with(&format!("  {system} ")) && l.contains("not a removable")),
            "{screen}"
        );
    }
}
