//! What the flasher's end-to-end tests share: the example lab published into an
//! `oci:` registry, the `metis-flash` binary run with a private cache and config
//! directory, and loop devices detached on drop.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_core::publish::{self, PublishOptions, SealedSecrets};
use metis_core::secrets::Identities;
use metis_core::trust::PrivateKey;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A file of the example lab's demo keys.
pub fn demo(file: &str) -> PathBuf {
    root().join("inventory/demo-keys").join(file)
}

/// The `PATH` for the binary and the tools: the caller's plus the sbin directories.
pub fn sbin_path() -> String {
    format!(
        "/usr/sbin:/sbin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The example lab's `only` nodes published into `oci:<dir>/registry`; returns
/// the inventory copy and the registry directory.
pub fn published(dir: &Path, only: &[&str]) -> (PathBuf, PathBuf) {
    let inv_dir = dir.join("inventory");
    metis_tests::copy_example_inventory(&inv_dir);
    let gen = Command::new(root().join("tests/golden/gen.sh"))
        .arg(inv_dir.join("golden"))
        .env("PATH", sbin_path())
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "gen.sh: {}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let reg_dir = dir.join("registry");
    publish_into(&inv_dir, &reg_dir, only, None);
    (inv_dir, reg_dir)
}

/// Publishes the inventory's `only` nodes (signed with the demo key) into the
/// `oci:` registry `reg_dir`, as build `revision` (`None`: the next one).
pub fn publish_into(inv_dir: &Path, reg_dir: &Path, only: &[&str], revision: Option<u64>) {
    let inv = metis_core::lab::load(inv_dir).unwrap();
    let registry =
        metis_core::oci::Registry::open(&format!("oci:{}", reg_dir.display()), &Default::default())
            .unwrap();
    let key = PrivateKey::from_encrypted_pem(
        &std::fs::read_to_string(demo("cosign.key")).unwrap(),
        b"demo",
    )
    .unwrap();
    let ci = Identities::from_file(&demo("builder.agekey")).unwrap();
    let secrets = SealedSecrets::new(Some(ci));
    let plan = publish::plan(&inv, &registry, &secrets).unwrap();
    let report = publish::publish(
        &inv,
        &registry,
        &key,
        &secrets,
        &plan,
        &PublishOptions {
            only: only.iter().map(|n| n.to_string()).collect(),
            jobs: 1,
            dry_run: false,
            partial: true,
            rebuild: false,
            prune: false,
            revision,
            work_dir: inv_dir.with_file_name("work"),
            built: "2026-11-25T00:00:00Z".into(),
            source: "test".into(),
        },
    )
    .unwrap();
    assert!(!report.failed(), "{report:?}");
}

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

/// SHA-256 of the first `len` bytes of a file or device.
pub fn sha(path: &Path, len: u64) -> String {
    use std::io::Read as _;
    let head = std::fs::File::open(path).unwrap().take(len);
    let (digest, _) = metis_core::digest::HashingReader::new(head)
        .drain()
        .unwrap();
    digest.hex()
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
