//! What the GUI's tests share: the example lab published into an `oci:`
//! registry by the project's own publisher (demo keys), its lab profile, and
//! the CLI's flash of a node to compare with.
#![allow(dead_code)] // each test binary uses its part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use metis_core::profile::{LabProfile, PROFILE_FORMAT};

#[allow(unused_imports)] // each test binary uses its part
pub use metis_tests::lab::{demo, root, sbin_path, sha};

/// The example lab's titan-13 (an agent) and titan-0a (a k3s server) published once for all tests of a
/// test binary into `oci:<target tmp>/…/registry`.
pub fn registry() -> &'static Path {
    static REGISTRY: OnceLock<PathBuf> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gui-lab-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        metis_tests::lab::published(&dir, &["titan-13", "titan-0a"]).1
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
