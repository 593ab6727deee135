//! Card images. Building one: golden image input ([`golden`]), partition tables
//! ([`partition`]), the copy-on-write [`overlay`], seed injection into the FAT
//! seed partition ([`fat`]), root filesystem edits ([`rootfs`]), per-node
//! personalisation ([`personalise`], [`node`]). Shipping one: a class base shared
//! by every node of the class ([`base`], the golden image in the zstd seekable
//! format) plus a small node patch ([`patch`]); [`chunks`] holds the per-chunk
//! SHA-256 tables the signed node config carries, and [`compose`] rebuilds the
//! card stream from base and patch, verifying every chunk. Wire formats:
//! `docs/formats.md`.

pub mod base;
pub mod chunks;
pub mod compose;
pub mod fat;
pub mod golden;
pub mod golden_oci;
pub mod import;
pub mod node;
pub mod overlay;
pub mod partition;
pub mod patch;
pub mod personalise;
pub mod rootfs;
