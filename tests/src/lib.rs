//! Shared harness for Metis's end-to-end tests: paths, golden images, helpers
//! that start real parts and clean up after themselves.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

pub mod card;
pub mod golden;
pub mod lab;
pub mod qemu;
pub mod registry;
pub mod tmux;
pub mod tool;
pub mod wine;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// Says why a test that needs a prepared artifact (`METIS_WINDOWS_EXE`,
/// `METIS_RELEASE_DIR`) is skipped; in CI, where `.ci/run` prepares it, fails.
pub fn skip_outside_ci(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "in CI the {test} test must run: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// The example lab's demo builder secrets on a `metis-build` command, as CI
/// gives it its real ones.
pub trait DemoBuilderEnv {
    /// Sets the cosign key's password (`COSIGN_PASSWORD`) and the CI age
    /// identity (`METIS_AGE_IDENTITY`) from `inventory/demo-keys`.
    fn demo_builder_env(&mut self) -> &mut Self;
}

impl DemoBuilderEnv for std::process::Command {
    fn demo_builder_env(&mut self) -> &mut Self {
        let identity = workspace_root().join("inventory/demo-keys/builder.agekey");
        self.env("COSIGN_PASSWORD", "demo").env(
            "METIS_AGE_IDENTITY",
            std::fs::read_to_string(&identity)
                .unwrap_or_else(|e| panic!("reading {}: {e}", identity.display())),
        )
    }
}

/// Copies the example inventory (`inventory/`, without generated golden
/// images) to `to`, for tests that change or publish it.
pub fn copy_example_inventory(to: &std::path::Path) {
    copy_tree(&workspace_root().join("inventory"), to);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("creating the inventory copy");
    for e in std::fs::read_dir(from).expect("reading the example inventory") {
        let e = e.expect("reading the example inventory");
        if e.file_name() == "golden" {
            continue;
        }
        if e.path().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copying the example inventory");
        }
    }
}
