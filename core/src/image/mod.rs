//! Card images: golden image input, partition tables, the copy-on-write
//! overlay, seed injection into the FAT seed partition, root filesystem edits,
//! and the per-node personalisation that ties them together.

pub mod fat;
pub mod golden;
pub mod node;
pub mod overlay;
pub mod partition;
pub mod personalise;
pub mod rootfs;
