//! Shared harness for Metis's end-to-end tests: paths, golden images, helpers
//! that start real parts and clean up after themselves.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

pub mod card;
pub mod golden;
pub mod qemu;
pub mod registry;
pub mod tool;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}
