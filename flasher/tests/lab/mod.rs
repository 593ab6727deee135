//! What the flasher's end-to-end tests share: the example lab published into an
//! `oci:` registry, the `metis-flash` binary run with a private cache and config
//! directory, and loop devices detached on drop.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(unused_imports)] // each test binary uses its part
pub use metis_tests::lab::{demo, publish_into, published, root, sbin_path, sha};

/// `metis-build operator-profile` of `inv_dir`, written to `to`.
pub fn export_profile(inv_dir: &Path, to: &Path) {
    let build = metis_tests::registry::workspace_binary("metis-build", "metis-build").unwrap();
    let o = Command::new(build)
        .args(["operator-profile", "--inventory"])
        .arg(inv_dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "operator-profile: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(to, &o.stdout).unwrap();
}

/// The example inventory's registry pointed at the test's `oci:` registry.
pub fn point_inventory_at(inv_dir: &Path, registry: &Path) {
    let path = inv_dir.join("metis.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replace(
        "host: oci:../out/registry",
        &format!("host: oci:{}", registry.display()),
    );
    assert!(yaml.contains(&registry.display().to_string()));
    std::fs::write(path, yaml).unwrap();
}

/// The fingerprint of the first signing key a lab profile carries.
pub fn fingerprint(profile: &Path) -> String {
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(profile).unwrap()).unwrap();
    let pem = p["public_keys"][0].as_str().unwrap();
    metis_core::trust::PublicKey::from_pem(pem)
        .unwrap()
        .fingerprint()
}

/// Runs `metis-flash` with its own cache and config directory, stdin from /dev/null.
pub fn flash(cache: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args(args)
        .env("METIS_CACHE", cache)
        .env("XDG_CONFIG_HOME", config)
        .env("PATH", sbin_path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A loop device, detached on drop.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    /// Attaches `file` (with extra `losetup` options) to the first free loop device.
    pub fn attach(file: &Path, options: &[&str]) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .args(options)
            .arg(file)
            .env("PATH", sbin_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// What a fake card holds before a test writes it, so a test sees what changed.
pub const CARD_JUNK: u8 = 0xAA;

/// A card served by `fakecard.py` over FUSE with a loop device on top. The first
/// `junk_head` bytes and the last MiB hold [`CARD_JUNK`].
pub struct FakeCard {
    lo: Option<Loop>,
    mount: tempfile::TempDir,
    daemon: std::process::Child,
    log: PathBuf,
}

impl FakeCard {
    /// Starts `fakecard.py` with a card of `size` bytes and its `options`.
    pub fn start(size: usize, options: &[String], junk_head: usize) -> Self {
        use std::io::{Seek, SeekFrom, Write};
        use std::time::{Duration, Instant};
        const MIB: usize = 1 << 20;
        let mount = tempfile::tempdir().unwrap();
        let log = mount.path().with_extension("written");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakecard.py");
        let daemon = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(mount.path())
            .args(["--size", &size.to_string(), "--log", log.to_str().unwrap()])
            .args(options)
            .spawn()
            .unwrap();
        let card = mount.path().join("card");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !card.exists() {
            assert!(Instant::now() < deadline, "fakecard.py did not mount");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut fake = Self {
            lo: None,
            mount,
            daemon,
            log,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(fake.card())
            .unwrap();
        f.write_all(&vec![CARD_JUNK; junk_head]).unwrap();
        f.seek(SeekFrom::Start((size - MIB) as u64)).unwrap();
        f.write_all(&vec![CARD_JUNK; MIB]).unwrap();
        drop(f);
        fake.lo = Some(Loop::attach(&fake.card(), &[]));
        fake
    }

    /// The FUSE file under the loop device.
    pub fn card(&self) -> PathBuf {
        self.mount.path().join("card")
    }

    /// The loop device.
    pub fn dev(&self) -> &str {
        &self.lo.as_ref().unwrap().dev
    }

    /// Bytes written to the card since it started.
    pub fn written(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for FakeCard {
    fn drop(&mut self) {
        self.lo = None; // detach first
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg(self.mount.path())
            .status();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether FUSE cards can be served here (python3-fusepy and /dev/fuse).
pub fn have_fusepy() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import fusepy"])
        .status()
        .is_ok_and(|s| s.success())
        && Path::new("/dev/fuse").exists()
}

#[allow(unused_imports)] // not every test binary of this crate skips
pub use metis_tests::skip_outside_ci;
