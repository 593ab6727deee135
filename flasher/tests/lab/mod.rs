//! What the flasher's end-to-end tests share: the example lab published into an
//! `oci:` registry, the `metis-flash` binary run with a private cache and config
//! directory, and loop devices detached on drop.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_core::inventory;
use metis_core::publish::{self, PublishOptions, SealedSecrets};
use metis_core::secrets::Identities;
use metis_core::trust::PrivateKey;
use sha2::{Digest, Sha256};

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
    let inv = inventory::load(inv_dir).unwrap();
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
    let mut f = std::fs::File::open(path).unwrap().take(len);
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
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
