//! A node's card image from its class golden image: the seed written into the
//! seed partition, the secrets slot allocated, the root filesystem edited —
//! all in a copy-on-write overlay, so the result is the golden image plus a
//! few extents.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::fat::{self, FatError, SecretsSlot, SlotSpec};
use super::golden::GoldenImage;
use super::overlay::{Extent, Overlay};
use super::partition::{Filesystem, Partition, PartitionError, PartitionSelector, PartitionTable};
use super::rootfs::{self, RootEdits, RootFile, RootfsError};

/// Errors personalising a card image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PersonaliseError {
    /// The partition table, or a partition the class names.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Writing the seed or allocating the secrets slot.
    #[error(transparent)]
    Seed(#[from] FatError),
    /// Editing the root filesystem.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The class asks for something this builder cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Reading the golden image or writing the output failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What to lay into a golden image for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaliseRequest {
    /// The seed partition.
    pub seed: PartitionSelector,
    /// Filesystem the class says the seed partition holds (only
    /// [`Filesystem::Vfat`] is written).
    pub seed_filesystem: Filesystem,
    /// The ext4 root partition; needed only when `root_files` is not empty.
    pub root: Option<PartitionSelector>,
    /// Seed files by path (`user-data`, `metis/bootstrap.sh`, …).
    pub seed_files: BTreeMap<String, Vec<u8>>,
    /// The secrets slot.
    pub slot: SlotSpec,
    /// Files to lay into the root filesystem before first boot.
    pub root_files: Vec<RootFile>,
}

/// A node's card image: the golden image plus the overlay's changes.
#[derive(Debug)]
pub struct Personalised {
    /// The changed blocks over the golden image.
    pub overlay: Overlay,
    /// Card image size in bytes.
    pub image_size: u64,
    /// Where the flasher writes the node's secrets.
    pub slot: SecretsSlot,
    /// The seed partition.
    pub seed_partition: Partition,
    /// The root partition, when edited.
    pub root_partition: Option<Partition>,
    /// What the root edits wrote.
    pub root_edits: RootEdits,
    /// The golden image file it was made from (for messages).
    pub golden: PathBuf,
}

impl Personalised {
    /// The ranges that differ from the golden image: what the node patch holds.
    pub fn dirty_extents(&self) -> Vec<Extent> {
        self.overlay.dirty_extents()
    }
}

/// Lays `request` into `golden`.
///
/// Nothing is written to disk but debugfs's temporary metadata copy; the
/// golden image is only read.
pub fn personalise(
    golden: &GoldenImage,
    request: &PersonaliseRequest,
) -> Result<Personalised, PersonaliseError> {
    let image = golden.source();
    if request.seed_filesystem != Filesystem::Vfat {
        return Err(PersonaliseError::Unsupported(format!(
            "seed filesystem {} is not supported: Metis writes seeds into vfat partitions; \
             fix the class's seed filesystem",
            request.seed_filesystem
        )));
    }
    let mut overlay = golden.overlay().map_err(|source| PersonaliseError::Io {
        path: golden.raw_path().to_owned(),
        source,
    })?;
    let table = PartitionTable::read(&mut overlay, golden.size(), image)?;
    let seed = table.find_with(&request.seed, Filesystem::Vfat)?.clone();

    let mut root_partition = None;
    let mut root_edits = RootEdits::default();
    if !request.root_files.is_empty() {
        let selector = request.root.as_ref().ok_or_else(|| {
            PersonaliseError::Unsupported(
                "root files were given but the class names no root partition; \
                 add the root partition's label to the class"
                    .into(),
            )
        })?;
        let root = table.find_with(selector, Filesystem::Ext4)?.clone();
        if root.start == seed.start {
            return Err(PersonaliseError::Unsupported(format!(
                "the seed and root selectors both name partition {}; fix the class",
                root.number
            )));
        }
        // The root is edited first, while its bytes in the overlay are still
        // the golden image's, which the edit tools read directly.
        root_edits = rootfs::edit_root(
            &mut overlay,
            golden.raw_path(),
            &root,
            &request.root_files,
            image,
            Some(golden.root_scratch()),
        )?;
        root_partition = Some(root);
    }

    let slot = fat::inject_seed(
        &mut overlay,
        &seed,
        &request.seed_files,
        &request.slot,
        image,
    )?;
    overlay
        .prune_unchanged()
        .map_err(|source| PersonaliseError::Io {
            path: golden.raw_path().to_owned(),
            source,
        })?;

    // Every change must be inside the seed or root partition.
    let inside = |e: &Extent, p: &Partition| e.offset >= p.start && e.end() <= p.start + p.len;
    for e in overlay.dirty_extents() {
        let ok = inside(&e, &seed) || root_partition.as_ref().is_some_and(|r| inside(&e, r));
        if !ok {
            return Err(PersonaliseError::Unsupported(format!(
                "internal error: bytes {}..{} changed outside the seed and root partitions",
                e.offset,
                e.end()
            )));
        }
    }

    Ok(Personalised {
        image_size: golden.size(),
        overlay,
        slot,
        seed_partition: seed,
        root_partition,
        root_edits,
        golden: image.to_owned(),
    })
}

/// Writes the whole personalised card image to `out`, sparse (all-zero
/// blocks are skipped, not written), with the secrets slot zeroed.
pub fn write_image(personalised: &Personalised, out: &Path) -> Result<(), PersonaliseError> {
    const CHUNK: u64 = 1 << 20;
    const SPARSE: usize = 64 * 1024;
    let io_err = |source| PersonaliseError::Io {
        path: out.to_owned(),
        source,
    };
    let mut file = File::create(out).map_err(io_err)?;
    let size = personalised.image_size;
    let slot = personalised.slot;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut offset = 0;
    while offset < size {
        let n = CHUNK.min(size - offset) as usize;
        personalised
            .overlay
            .read_at(offset, &mut buf[..n])
            .map_err(|source| PersonaliseError::Io {
                path: personalised.golden.clone(),
                source,
            })?;
        let from = slot.offset.max(offset);
        let to = (slot.offset + slot.len).min(offset + n as u64);
        if from < to {
            buf[(from - offset) as usize..(to - offset) as usize].fill(0);
        }
        for piece in buf[..n].chunks(SPARSE) {
            if piece.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(piece.len() as i64))
                    .map_err(io_err)?;
            } else {
                file.write_all(piece).map_err(io_err)?;
            }
        }
        offset += n as u64;
    }
    file.set_len(size).map_err(io_err)?;
    file.flush().map_err(io_err)?;
    Ok(())
}
