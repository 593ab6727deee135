//! What the GUI's tests share: the example lab published into an `oci:`
//! registry by the project's own publisher (demo keys), its lab profile, and
//! the CLI's flash of a node to compare with.
#![allow(dead_code)] // each test binary uses its part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use metis_core::profile::{LabProfile, PROFILE_FORMAT};
use metis_core::publish::{self, PublishOptions, SealedSecrets};
use metis_core::secrets::Identities;
use metis_core::trust::PrivateKey;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn demo(file: &str) -> PathBuf {
    root().join("inventory/demo-keys").join(file)
}

pub fn sbin_path() -> String {
    format!(
        "/usr/sbin:/sbin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The example lab's titan-13 (an agent) and titan-0a (a k3s server) published once for all tests of this
/// file into `oci:<target tmp>/…/registry` (as flasher/tests/lab does).
pub fn registry() -> &'static Path {
    static REGISTRY: OnceLock<PathBuf> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gui-lab-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
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
        let inv = metis_core::lab::load(&inv_dir).unwrap();
        let registry = metis_core::oci::Registry::open(
            &format!("oci:{}", reg_dir.display()),
            &Default::default(),
        )
        .unwrap();
        let key = PrivateKey::from_encrypted_pem(
            &std::fs::read_to_string(demo("cosign.key")).unwrap(),
            b"demo",
        )
        .unwrap();
        let secrets = SealedSecrets::new(Some(
            Identities::from_file(&demo("builder.agekey")).unwrap(),
        ));
        let plan = publish::plan(&inv, &registry, &secrets).unwrap();
        let report = publish::publish(
            &inv,
            &registry,
            &key,
            &secrets,
            &plan,
            &PublishOptions {
                only: vec!["titan-13".into(), "titan-0a".into()],
                jobs: 1,
                dry_run: false,
                partial: true,
                rebuild: false,
                prune: false,
                revision: None,
                work_dir: dir.join("work"),
                built: "2026-11-25T00:00:00Z".into(),
                source: "test".into(),
            },
        )
        .unwrap();
        assert!(!report.failed(), "{report:?}");
        reg_dir
    })
}

/// The lab profile `metis-build operator-profile` would export for it.
pub fn profile(to: &Path) -> PathBuf {
    profile_of(to, registry())
}

/// The example lab's profile for the `oci:` registry `registry`.
pub fn profile_of(to: &Path, registry: &Path) -> PathBuf {
    let profile = LabProfile {
        format: PROFILE_FORMAT.into(),
        lab: "example.lab".into(),
        registry: format!("oci:{}", registry.display()),
        prefix: "metis".into(),
        ca_certificate: None,
        public_keys: vec![std::fs::read_to_string(demo("cosign.pub")).unwrap()],
    };
    let path = to.join("lab.metis");
    std::fs::write(&path, profile.to_json()).unwrap();
    path
}

pub fn sha(path: &Path, len: u64) -> String {
    use std::io::Read as _;
    let head = std::fs::File::open(path).unwrap().take(len);
    let (digest, _) = metis_core::digest::HashingReader::new(head)
        .drain()
        .unwrap();
    digest.hex()
}

/// `metis-flash NODE --output FILE` with every flag given by hand, on its own laptop.
pub fn cli_flash(dir: &Path, node: &str, output: &Path) {
    let cli = metis_tests::registry::workspace_binary("metis-flash", "metis-flash").unwrap();
    let o = Command::new(cli)
        .args([node, "--output"])
        .arg(output)
        .args(["--registry", &format!("oci:{}", registry().display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", demo("operator.agekey").to_str().unwrap()])
        .env("XDG_CONFIG_HOME", dir.join("cli-config"))
        .env("METIS_CACHE", dir.join("cli-cache"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
