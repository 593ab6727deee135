//! metis-core: everything `metis-build` and `metis-flash` share.
//!
//! One module per pipeline stage: `inventory` loads and checks the lab's
//! GitOps data; later stages (render, image, oci, trust, secrets, publish)
//! build on it.
//!
//! Features: `build` (default) compiles what only `metis-build` needs — the
//! inventory, rendering, writing card images (FAT, partition tables, golden
//! images, root filesystems), sealing secrets and publishing — with the
//! crates only they use (fatfs, gpt, mbrman, liblzma, tar, …). Without it,
//! what remains is the flasher's side: reading the lab's settings
//! ([`profile`], [`lab_registry`]), pulling and caching artifacts ([`oci`]),
//! verifying them ([`trust`]), reading the node's config ([`artifact`]),
//! decrypting its secrets ([`secrets`]) and composing the card from base and
//! patch ([`image`]). `signing` (default)
//! adds key generation and signing to [`trust`]. See docs/decisions.md.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The docs describe the whole crate (they are built with default features);
// without `build` their links to builder items have nothing to point at.
#![cfg_attr(not(feature = "build"), allow(rustdoc::broken_intra_doc_links))]

pub mod artifact;
#[cfg(feature = "build")]
pub mod build;
pub mod digest;
pub mod image;
#[cfg(feature = "build")]
pub mod inventory;
#[cfg(feature = "build")]
pub mod lab;
pub mod lab_registry;
pub mod layout;
pub mod location;
pub mod oci;
#[cfg(feature = "build")]
pub mod paths;
pub mod profile;
#[cfg(all(feature = "build", feature = "signing"))]
pub mod publish;
#[cfg(feature = "build")]
pub mod render;
pub mod secrets;
pub mod trust;
