//! Partition tables (MBR and GPT) and the filesystem labels of their
//! partitions: how the seed and root partitions of a card are found.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Sector size of card images. Both tables are read with 512-byte sectors;
/// SD cards and the images made for them use nothing else.
pub const SECTOR: u64 = 512;

/// Errors reading a partition table or finding a partition in it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// Reading the image failed.
    #[error("cannot read the partition table of {image}: {source}")]
    Read {
        /// The raw image.
        image: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Neither an MBR nor a GPT.
    #[error(
        "{image} has no MBR or GPT partition table ({detail}); \
         a golden image must be a whole-card image, not a single filesystem"
    )]
    NoTable {
        /// The raw image.
        image: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The GPT could not be parsed.
    #[error("the GPT of {image} is damaged: {detail}")]
    Gpt {
        /// The raw image.
        image: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A partition reaches past the end of the image.
    #[error(
        "partition {number} of {image} ends at byte {end}, but the image has only {size} bytes: \
         the image is truncated; download it again"
    )]
    OutOfBounds {
        /// The raw image.
        image: PathBuf,
        /// Partition number (1-based).
        number: u32,
        /// One past its last byte.
        end: u64,
        /// Image size.
        size: u64,
    },
    /// No partition matches.
    #[error("no partition with {wanted} in {image}; found: {found}. Fix the class's partition label or use the right golden image")]
    NotFound {
        /// The raw image.
        image: PathBuf,
        /// What was looked for.
        wanted: PartitionSelector,
        /// Every partition found, with filesystem and labels.
        found: String,
    },
    /// More than one partition matches.
    #[error("{wanted} is ambiguous in {image}: partitions {found} all match; give the class a GPT partition name or relabel the golden image")]
    Ambiguous {
        /// The raw image.
        image: PathBuf,
        /// What was looked for.
        wanted: PartitionSelector,
        /// The matching partitions.
        found: String,
    },
    /// The partition holds another filesystem than expected.
    #[error("partition {number} ({wanted}) of {image} holds {actual}, not {expected}; fix the class's seed filesystem")]
    WrongFilesystem {
        /// The raw image.
        image: PathBuf,
        /// What was looked for.
        wanted: PartitionSelector,
        /// Partition number.
        number: u32,
        /// Filesystem the class expects.
        expected: Filesystem,
        /// What the partition holds.
        actual: String,
    },
}

pub use crate::layout::PartitionSelector;

/// A filesystem recognised in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Filesystem {
    /// FAT12/16/32 (`vfat`).
    Vfat,
    /// ext2/3/4.
    Ext4,
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filesystem::Vfat => "vfat",
            Filesystem::Ext4 => "ext4",
        })
    }
}

/// Which kind of partition table a card has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableKind {
    /// DOS/MBR, with logical partitions in an extended one.
    Mbr,
    /// GUID partition table.
    Gpt,
}

/// One partition of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number as the kernel would name it (1-based; MBR logical from 5).
    pub number: u32,
    /// First byte on the card.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// GPT partition name, if a GPT.
    pub gpt_name: Option<String>,
    /// Filesystem found in it, if recognised.
    pub filesystem: Option<Filesystem>,
    /// Filesystem label, if any.
    pub label: Option<String>,
}

impl Partition {
    fn matches(&self, selector: &PartitionSelector) -> bool {
        match selector {
            PartitionSelector::GptName(name) => self.gpt_name.as_deref() == Some(name.as_str()),
            PartitionSelector::Label(wanted) => match (&self.label, self.filesystem) {
                (Some(label), Some(Filesystem::Vfat)) => label.eq_ignore_ascii_case(wanted),
                (Some(label), _) => label == wanted,
                (None, _) => false,
            },
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.number)?;
        match self.filesystem {
            Some(fs) => write!(f, "{fs}")?,
            None => f.write_str("unknown filesystem")?,
        }
        match &self.label {
            Some(l) => write!(f, ", label {l:?}")?,
            None => f.write_str(", no label")?,
        }
        if let Some(n) = &self.gpt_name {
            write!(f, ", GPT name {n:?}")?;
        }
        f.write_str(")")
    }
}

/// The partitions of a card image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// MBR or GPT.
    pub kind: TableKind,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
    image: PathBuf,
}

impl PartitionTable {
    /// Reads the table of `disk` (`size` bytes; `image` names it in errors)
    /// and probes each partition's filesystem and label.
    pub fn read<R: Read + Seek>(
        disk: &mut R,
        size: u64,
        image: &Path,
    ) -> Result<Self, PartitionError> {
        let read_err = |source| PartitionError::Read {
            image: image.to_owned(),
            source,
        };
        let mut mbr = [0u8; 512];
        disk.seek(SeekFrom::Start(0)).map_err(read_err)?;
        disk.read_exact(&mut mbr)
            .map_err(|e| PartitionError::NoTable {
                image: image.to_owned(),
                detail: format!("cannot read its first sector: {e}"),
            })?;
        if mbr[510..512] != [0x55, 0xAA] {
            return Err(PartitionError::NoTable {
                image: image.to_owned(),
                detail: "no boot signature in the first sector".into(),
            });
        }
        let protective = (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE);
        let (kind, mut partitions) = if protective {
            (TableKind::Gpt, read_gpt(disk, image)?)
        } else {
            (TableKind::Mbr, read_mbr(disk, image)?)
        };
        for p in &mut partitions {
            let end = p.start + p.len;
            if end > size {
                return Err(PartitionError::OutOfBounds {
                    image: image.to_owned(),
                    number: p.number,
                    end,
                    size,
                });
            }
            let (filesystem, label) = probe(disk, p.start, p.len).map_err(read_err)?;
            p.filesystem = filesystem;
            p.label = label;
        }
        Ok(PartitionTable {
            kind,
            partitions,
            image: image.to_owned(),
        })
    }

    /// The one partition `selector` names.
    pub fn find(&self, selector: &PartitionSelector) -> Result<&Partition, PartitionError> {
        let matching: Vec<&Partition> = self
            .partitions
            .iter()
            .filter(|p| p.matches(selector))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(PartitionError::NotFound {
                image: self.image.clone(),
                wanted: selector.clone(),
                found: list(self.partitions.iter()),
            }),
            many => Err(PartitionError::Ambiguous {
                image: self.image.clone(),
                wanted: selector.clone(),
                found: list(many.iter().copied()),
            }),
        }
    }

    /// As [`PartitionTable::find`], and checks the partition holds `filesystem`.
    pub fn find_with(
        &self,
        selector: &PartitionSelector,
        filesystem: Filesystem,
    ) -> Result<&Partition, PartitionError> {
        let p = self.find(selector)?;
        if p.filesystem != Some(filesystem) {
            return Err(PartitionError::WrongFilesystem {
                image: self.image.clone(),
                wanted: selector.clone(),
                number: p.number,
                expected: filesystem,
                actual: p
                    .filesystem
                    .map_or("an unknown filesystem".into(), |f| f.to_string()),
            });
        }
        Ok(p)
    }
}

fn list<'a>(partitions: impl Iterator<Item = &'a Partition>) -> String {
    let all: Vec<String> = partitions.map(|p| p.to_string()).collect();
    if all.is_empty() {
        "no partitions".into()
    } else {
        all.join(", ")
    }
}

fn read_mbr<R: Read + Seek>(disk: &mut R, image: &Path) -> Result<Vec<Partition>, PartitionError> {
    disk.seek(SeekFrom::Start(0))
        .map_err(|source| PartitionError::Read {
            image: image.to_owned(),
            source,
        })?;
    let mbr = mbrman::MBR::read_from(disk, SECTOR as u32).map_err(|e| PartitionError::NoTable {
        image: image.to_owned(),
        detail: format!("MBR: {e}"),
    })?;
    Ok(mbr
        .iter()
        .filter(|(_, e)| e.is_used() && !e.is_extended() && e.sectors > 0)
        .map(|(i, e)| Partition {
            number: i as u32,
            start: u64::from(e.starting_lba) * SECTOR,
            len: u64::from(e.sectors) * SECTOR,
            gpt_name: None,
            filesystem: None,
            label: None,
        })
        .collect())
}

fn read_gpt<R: Read + Seek>(disk: &mut R, image: &Path) -> Result<Vec<Partition>, PartitionError> {
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(ReadOnly(disk))
        .map_err(|e| PartitionError::Gpt {
            image: image.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(gpt
        .partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(&number, p)| Partition {
            number,
            start: p.first_lba * SECTOR,
            len: (p.last_lba + 1 - p.first_lba) * SECTOR,
            gpt_name: Some(p.name.clone()),
            filesystem: None,
            label: None,
        })
        .collect())
}

/// Lets the gpt crate, which wants a writable device, read a read-only one.
struct ReadOnly<'a, R>(&'a mut R);

impl<R> fmt::Debug for ReadOnly<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadOnly")
    }
}

impl<R: Read> Read for ReadOnly<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Seek> Seek for ReadOnly<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl<R> Write for ReadOnly<'_, R> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the golden image is read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Recognises FAT and ext2/3/4 at `start` and reads their labels.
pub fn probe<R: Read + Seek>(
    disk: &mut R,
    start: u64,
    len: u64,
) -> io::Result<(Option<Filesystem>, Option<String>)> {
    let mut head = [0u8; 2048];
    if len < head.len() as u64 {
        return Ok((None, None));
    }
    disk.seek(SeekFrom::Start(start))?;
    disk.read_exact(&mut head)?;

    let ext = &head[1024..];
    if ext[0x38..0x3A] == [0x53, 0xEF] {
        let label = trim_label(&ext[0x78..0x88], 0);
        return Ok((Some(Filesystem::Ext4), label));
    }
    if let Some(bpb) = FatBpb::parse(&head[..512]) {
        let root_label = bpb.root_dir_label(disk, start)?;
        let boot_label = trim_label(&head[bpb.label_offset..bpb.label_offset + 11], b' ');
        let label = root_label.or(boot_label).filter(|l| l != "NO NAME");
        return Ok((Some(Filesystem::Vfat), label));
    }
    Ok((None, None))
}

fn trim_label(raw: &[u8], pad: u8) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let raw = &raw[..end];
    let end = raw
        .iter()
        .rposition(|&b| b != pad && b != 0)
        .map_or(0, |p| p + 1);
    if end == 0 {
        None
    } else {
        Some(String::from_utf8_lossy(&raw[..end]).into_owned())
    }
}

/// The BIOS parameter block fields the label probe and the secrets slot need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FatBpb {
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved_sectors: u64,
    pub fats: u64,
    pub root_entries: u64,
    pub fat_sectors: u64,
    pub total_sectors: u64,
    /// First cluster of the root directory (FAT32 only).
    pub root_cluster: u32,
    pub fat32: bool,
    label_offset: usize,
}

impl FatBpb {
    /// Parses a FAT boot sector; `None` if it is not one.
    pub fn parse(boot: &[u8]) -> Option<Self> {
        if boot.len() < 512 || boot[510..512] != [0x55, 0xAA] {
            return None;
        }
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([boot[o], boot[o + 1]]));
        let u32_at =
            |o: usize| u32::from_le_bytes([boot[o], boot[o + 1], boot[o + 2], boot[o + 3]]);
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved_sectors = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let total16 = u16_at(19);
        let fat16_size = u16_at(22);
        let total32 = u64::from(u32_at(32));
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
            || !sectors_per_cluster.is_power_of_two()
            || reserved_sectors == 0
            || fats == 0
        {
            return None;
        }
        let fat32 = fat16_size == 0;
        let (fat_sectors, label_offset, type_offset) = if fat32 {
            (u64::from(u32_at(36)), 0x47, 0x52)
        } else {
            (fat16_size, 0x2B, 0x36)
        };
        if !boot[type_offset..type_offset + 3].eq(b"FAT") || fat_sectors == 0 {
            return None;
        }
        Some(FatBpb {
            bytes_per_sector,
            sectors_per_cluster,
            reserved_sectors,
            fats,
            root_entries,
            fat_sectors,
            total_sectors: if total16 != 0 { total16 } else { total32 },
            root_cluster: if fat32 { u32_at(44) } else { 0 },
            fat32,
            label_offset,
        })
    }

    pub fn cluster_size(&self) -> u64 {
        self.bytes_per_sector * self.sectors_per_cluster
    }

    /// Offset of the first FAT from the start of the partition.
    pub fn fat_offset(&self) -> u64 {
        self.reserved_sectors * self.bytes_per_sector
    }

    /// Offset of the fixed root directory (FAT12/16).
    pub fn root_dir_offset(&self) -> u64 {
        (self.reserved_sectors + self.fats * self.fat_sectors) * self.bytes_per_sector
    }

    /// Offset of cluster 2, the start of the data region.
    pub fn data_offset(&self) -> u64 {
        self.root_dir_offset()
            + (self.root_entries * 32).div_ceil(self.bytes_per_sector) * self.bytes_per_sector
    }

    /// Offset of `cluster` from the start of the partition.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset() + u64::from(cluster - 2) * self.cluster_size()
    }

    /// The root directory's volume-label entry: what blkid and cloud-init see.
    fn root_dir_label<R: Read + Seek>(
        &self,
        disk: &mut R,
        start: u64,
    ) -> io::Result<Option<String>> {
        // The label entry is near the start of the root directory: the first
        // 64 KiB of it (FAT32: of its first cluster) is where every mkfs puts it.
        let (offset, len) = if self.fat32 {
            if self.root_cluster < 2 {
                return Ok(None);
            }
            (self.cluster_offset(self.root_cluster), self.cluster_size())
        } else {
            (self.root_dir_offset(), self.root_entries * 32)
        };
        let mut dir = vec![0u8; len.min(64 * 1024) as usize];
        disk.seek(SeekFrom::Start(start + offset))?;
        disk.read_exact(&mut dir)?;
        for entry in dir.chunks_exact(32) {
            match entry[0] {
                0x00 => break,
                0xE5 => continue,
                _ => {}
            }
            let attr = entry[11];
            if attr & 0x08 != 0 && attr & 0x0F != 0x0F {
                return Ok(trim_label(&entry[..11], b' '));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed() {
        assert_eq!(trim_label(b"CIDATA     ", b' '), Some("CIDATA".into()));
        assert_eq!(trim_label(b"           ", b' '), None);
        assert_eq!(
            trim_label(b"writable\0\0\0\0\0\0\0\0", 0),
            Some("writable".into())
        );
        assert_eq!(trim_label(&[0u8; 16], 0), None);
    }

    #[test]
    fn fat_labels_match_case_insensitively_ext4_exactly() {
        let fat = Partition {
            number: 1,
            start: 0,
            len: 0,
            gpt_name: None,
            filesystem: Some(Filesystem::Vfat),
            label: Some("CIDATA".into()),
        };
        let ext = Partition {
            filesystem: Some(Filesystem::Ext4),
            label: Some("rootfs".into()),
            ..fat.clone()
        };
        assert!(fat.matches(&PartitionSelector::Label("cidata".into())));
        assert!(ext.matches(&PartitionSelector::Label("rootfs".into())));
        assert!(!ext.matches(&PartitionSelector::Label("ROOTFS".into())));
        assert!(!fat.matches(&PartitionSelector::GptName("CIDATA".into())));
    }

    #[test]
    fn a_disk_without_a_table_is_refused() {
        let mut disk = io::Cursor::new(vec![0u8; 4096]);
        let err = PartitionTable::read(&mut disk, 4096, Path::new("x.img")).unwrap_err();
        assert!(matches!(err, PartitionError::NoTable { .. }), "{err}");
        assert!(err.to_string().contains("x.img"));
    }
}
