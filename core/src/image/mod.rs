//! Card images. Building one: golden image input ([`golden`]), partition tables
//! ([`partition`]), the copy-on-write [`overlay`], seed injection into the FAT
//! seed partition ([`fat`]), root filesystem edits ([`rootfs`]), per-node
//! personalisation ([`personalise`]); a whole node's image from the inventory
//! is [`crate::build::node`], above this module. Shipping one: a class base
//! shared by every node of the class ([`base`], the golden image in the zstd
//! seekable format) plus a small node patch ([`patch`]); [`chunks`] holds the
//! per-chunk SHA-256 tables the signed node config carries, and [`compose`]
//! rebuilds the card stream from base and patch, verifying every chunk. Wire
//! formats: `docs/formats.md`.
//!
//! Building needs the `build` feature; shipping (base, patch, chunks,
//! compose) is what `metis-flash` reads and is always there.

pub mod base;
pub mod chunks;
pub mod compose;
#[cfg(feature = "build")]
pub mod fat;
#[cfg(feature = "build")]
pub mod golden;
#[cfg(feature = "build")]
pub mod golden_oci;
#[cfg(feature = "build")]
pub mod overlay;
#[cfg(feature = "build")]
pub mod partition;
pub mod patch;
#[cfg(feature = "build")]
pub mod personalise;
mod pipeline;
#[cfg(feature = "build")]
pub mod rootfs;
mod seek_table;
