//! Seed injection into the FAT seed partition, and the secrets slot.
//!
//! Files are written with the `fatfs` crate through a [`PartitionView`] of the
//! overlay, with a fixed clock so the result is reproducible. The secrets slot
//! is a zero-filled file whose clusters are contiguous, so the flasher can fill
//! it by writing one byte range of the card, without a FAT driver: fatfs
//! allocates it, and if the golden image's free space made that allocation
//! fragmented, the slot is moved here to the first contiguous free run by
//! editing the FAT and its directory entry directly.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};
use thiserror::Error;

use super::overlay::PartitionView;
use super::partition::{FatBpb, Partition};

/// Default size of the secrets slot: room for SSH host keys, the k3s token,
/// the node password and registry credentials, sealed.
pub const DEFAULT_SLOT_SIZE: u64 = 64 * 1024;

/// Default name of the secrets slot file, in the seed's root directory.
pub const DEFAULT_SLOT_NAME: &str = "metis-secrets.bin";

/// Errors writing the seed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FatError {
    /// fatfs refused the partition.
    #[error("partition {number} of {image} is not a FAT filesystem that can be written: {source}")]
    Open {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The underlying error.
        source: io::Error,
    },
    /// A seed path is not one this module writes.
    #[error("seed path {path:?} is not allowed: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Writing a seed file failed (typically: the partition is full).
    #[error("cannot write {path} into the seed partition {number} of {image}: {source}{hint}")]
    Write {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The seed file.
        path: String,
        /// The underlying error.
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// No contiguous free run is large enough for the secrets slot.
    #[error(
        "no {clusters} contiguous free clusters for the {size}-byte secrets slot in partition \
         {number} of {image}: the seed partition is full or fragmented; \
         use a golden image with more free space in it or a smaller slot"
    )]
    NoRoomForSlot {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// Slot size in bytes.
        size: u64,
        /// Clusters needed.
        clusters: u64,
    },
    /// The FAT does not look like what fatfs just wrote.
    #[error("the FAT of partition {number} of {image} is inconsistent: {detail}; run fsck.vfat on the golden image")]
    Inconsistent {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// What was found.
        detail: String,
    },
    /// Reading or writing the overlay failed.
    #[error("I/O error on the seed partition {number} of {image}: {source}")]
    Io {
        /// The raw image.
        image: PathBuf,
        /// Partition number.
        number: u32,
        /// The underlying error.
        source: io::Error,
    },
}

/// The secrets slot to allocate in the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// File name in the seed's root directory.
    pub name: String,
    /// Size in bytes (> 0).
    pub size: u64,
}

impl Default for SlotSpec {
    fn default() -> Self {
        SlotSpec {
            name: DEFAULT_SLOT_NAME.into(),
            size: DEFAULT_SLOT_SIZE,
        }
    }
}

/// Where the secrets slot is on the card: the flasher writes exactly these bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretsSlot {
    /// First byte of the slot's data, from the start of the card.
    pub offset: u64,
    /// Its length: the slot file's size.
    pub len: u64,
}

/// The clock fatfs sees: 2020-01-01 00:00:00, so that every build of the same
/// seed gives the same directory entries.
#[derive(Debug)]
struct FixedTime;

const FIXED_DATE: Date = Date {
    year: 2020,
    month: 1,
    day: 1,
};

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        FIXED_DATE
    }
    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: FIXED_DATE,
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// Splits and checks a seed path: one file name, or `dir/name`.
fn seed_path(path: &str) -> Result<(Option<&str>, &str), FatError> {
    let bad = |reason| FatError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\\') {
        return Err(bad("use '/' to separate directories"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(bad("empty, '.' or '..' components are not allowed"));
        }
        if part
            .chars()
            .any(|c| c.is_control() || "<>:\"|?*".contains(c))
        {
            return Err(bad("FAT names cannot hold control characters or <>:\"|?*"));
        }
        if part.len() > 255 {
            return Err(bad("FAT names are at most 255 characters"));
        }
    }
    match parts.as_slice() {
        [name] => Ok((None, name)),
        [dir, name] => Ok((Some(dir), name)),
        _ => Err(bad("at most one directory level is supported")),
    }
}

/// Writes `files` into the FAT partition `seed` of `card` (replacing files of
/// the same name, keeping all others) and allocates the secrets slot.
///
/// `image` names the card in errors.
pub fn inject_seed<T: Read + Write + Seek>(
    card: &mut T,
    seed: &Partition,
    files: &BTreeMap<String, Vec<u8>>,
    slot: &SlotSpec,
    image: &Path,
) -> Result<SecretsSlot, FatError> {
    let number = seed.number;
    let io_err = |source| FatError::Io {
        image: image.to_owned(),
        number,
        source,
    };
    let (slot_dir, _) = seed_path(&slot.name)?;
    if slot_dir.is_some() {
        return Err(FatError::BadPath {
            path: slot.name.clone(),
            reason: "the secrets slot lives in the seed's root directory",
        });
    }
    if slot.size == 0 || slot.size > u64::from(u32::MAX) {
        return Err(FatError::BadPath {
            path: slot.name.clone(),
            reason: "the secrets slot size must be between 1 byte and 4 GiB",
        });
    }
    for path in files.keys() {
        seed_path(path)?;
        if path.eq_ignore_ascii_case(&slot.name) {
            return Err(FatError::BadPath {
                path: path.clone(),
                reason: "this name is the secrets slot's",
            });
        }
    }

    // Directories fatfs created, whose "." and ".." entries need fixing.
    let mut new_dirs: Vec<[u8; 11]> = Vec::new();
    let short_name = {
        let fs = open_seed_fs(card, seed, image)?;
        let root = fs.root_dir();
        let write_err = |path: &str, source: io::Error| FatError::Write {
            image: image.to_owned(),
            number,
            path: path.to_owned(),
            hint: if source.to_string().contains("No space") {
                "; the seed partition is full: use a golden image with a larger seed partition"
            } else {
                ""
            },
            source,
        };
        // The old slot goes first, so its clusters are free for the new one.
        match root.remove(&slot.name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(&slot.name, e)),
        }
        for (path, bytes) in files {
            let (dir, name) = seed_path(path)?;
            let parent = match dir {
                Some(dir) => {
                    let existed = root
                        .iter()
                        .filter_map(Result::ok)
                        .any(|e| e.file_name().eq_ignore_ascii_case(dir));
                    let created = root.create_dir(dir).map_err(|e| write_err(path, e))?;
                    if !existed {
                        let entry = root
                            .iter()
                            .filter_map(Result::ok)
                            .find(|e| e.is_dir() && e.file_name().eq_ignore_ascii_case(dir))
                            .ok_or_else(|| FatError::Inconsistent {
                                image: image.to_owned(),
                                number,
                                detail: format!(
                                    "directory {dir} is missing right after it was made"
                                ),
                            })?;
                        new_dirs.push(raw_short_name(entry.short_file_name_as_bytes()));
                    }
                    created
                }
                None => root.clone(),
            };
            if parent
                .iter()
                .filter_map(Result::ok)
                .any(|e| e.is_dir() && e.file_name().eq_ignore_ascii_case(name))
            {
                return Err(FatError::BadPath {
                    path: path.clone(),
                    reason: "the golden image has a directory of that name",
                });
            }
            let mut file = parent.create_file(name).map_err(|e| write_err(path, e))?;
            file.truncate().map_err(|e| write_err(path, e))?;
            file.write_all(bytes).map_err(|e| write_err(path, e))?;
            file.flush().map_err(|e| write_err(path, e))?;
        }
        {
            let mut file = root
                .create_file(&slot.name)
                .map_err(|e| write_err(&slot.name, e))?;
            file.truncate().map_err(|e| write_err(&slot.name, e))?;
            let zeros = vec![0u8; 64 * 1024];
            let mut left = slot.size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])
                    .map_err(|e| write_err(&slot.name, e))?;
                left -= n as u64;
            }
            file.flush().map_err(|e| write_err(&slot.name, e))?;
        }
        let entry = root
            .iter()
            .filter_map(Result::ok)
            .find(|e| e.is_file() && e.file_name().eq_ignore_ascii_case(&slot.name))
            .ok_or_else(|| FatError::Inconsistent {
                image: image.to_owned(),
                number,
                detail: format!("{} is missing right after it was written", slot.name),
            })?;
        let short = raw_short_name(entry.short_file_name_as_bytes());
        drop(root);
        fs.unmount().map_err(io_err)?;
        short
    };

    let mut view = PartitionView::new(&mut *card, seed.start, seed.len);
    let mut volume =
        Volume::load(&mut view)
            .map_err(io_err)?
            .ok_or_else(|| FatError::Inconsistent {
                image: image.to_owned(),
                number,
                detail: "boot sector unreadable after writing".into(),
            })?;
    let inconsistent = |detail: String| FatError::Inconsistent {
        image: image.to_owned(),
        number,
        detail,
    };
    for dir in &new_dirs {
        let at = volume
            .find_root_entry(&mut view, dir, true)
            .map_err(io_err)?
            .ok_or_else(|| inconsistent("a new directory has no entry".into()))?;
        volume.fix_dot_entries(&mut view, at).map_err(io_err)?;
    }
    let entry_at = volume
        .find_root_entry(&mut view, &short_name, false)
        .map_err(io_err)?
        .ok_or_else(|| inconsistent(format!("no directory entry for {}", slot.name)))?;
    let clusters_needed = slot.size.div_ceil(volume.bpb.cluster_size());
    let mut first = volume
        .entry_first_cluster(&mut view, entry_at)
        .map_err(io_err)?;
    let chain = volume.chain(first).map_err(inconsistent)?;
    if chain.len() as u64 != clusters_needed {
        return Err(inconsistent(format!(
            "{} has {} clusters, expected {clusters_needed}",
            slot.name,
            chain.len()
        )));
    }
    let contiguous = chain.windows(2).all(|w| w[1] == w[0] + 1);
    if !contiguous {
        first = volume
            .relocate(&mut view, &chain, entry_at)
            .map_err(io_err)?
            .ok_or(FatError::NoRoomForSlot {
                image: image.to_owned(),
                number,
                size: slot.size,
                clusters: clusters_needed,
            })?;
    }
    Ok(SecretsSlot {
        offset: seed.start + volume.bpb.cluster_offset(first),
        len: slot.size,
    })
}

/// "METIS-~1.BIN" → the 11 bytes of a directory entry's name field.
fn raw_short_name(formatted: &[u8]) -> [u8; 11] {
    let mut raw = [b' '; 11];
    let (name, ext) = match formatted.iter().position(|&b| b == b'.') {
        Some(dot) if dot > 0 => (&formatted[..dot], &formatted[dot + 1..]),
        _ => (formatted, &[][..]),
    };
    for (d, s) in raw[..8].iter_mut().zip(name) {
        *d = *s;
    }
    for (d, s) in raw[8..].iter_mut().zip(ext) {
        *d = *s;
    }
    if raw[0] == 0xE5 {
        raw[0] = 0x05;
    }
    raw
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

/// The first FAT of a volume, in memory, with the geometry to use it.
struct Volume {
    bpb: FatBpb,
    kind: FatKind,
    /// Highest valid cluster number + 1.
    end_cluster: u32,
    table: Vec<u8>,
}

impl Volume {
    fn load<V: Read + Seek>(view: &mut V) -> io::Result<Option<Self>> {
        let mut boot = [0u8; 512];
        view.seek(SeekFrom::Start(0))?;
        view.read_exact(&mut boot)?;
        let Some(bpb) = FatBpb::parse(&boot) else {
            return Ok(None);
        };
        let data_sectors = bpb
            .total_sectors
            .saturating_sub(bpb.data_offset() / bpb.bytes_per_sector);
        let clusters = data_sectors / bpb.sectors_per_cluster;
        let kind = if bpb.fat32 {
            FatKind::Fat32
        } else if clusters < 4085 {
            FatKind::Fat12
        } else {
            FatKind::Fat16
        };
        let mut table = vec![0u8; (bpb.fat_sectors * bpb.bytes_per_sector) as usize];
        view.seek(SeekFrom::Start(bpb.fat_offset()))?;
        view.read_exact(&mut table)?;
        Ok(Some(Volume {
            bpb,
            kind,
            end_cluster: (clusters + 2) as u32,
            table,
        }))
    }

    fn get(&self, n: u32) -> u32 {
        let n = n as usize;
        let t = &self.table;
        match self.kind {
            FatKind::Fat12 => {
                let o = n + n / 2;
                let v = u16::from_le_bytes([t[o], t[o + 1]]);
                u32::from(if n & 1 == 1 { v >> 4 } else { v & 0x0FFF })
            }
            FatKind::Fat16 => u32::from(u16::from_le_bytes([t[2 * n], t[2 * n + 1]])),
            FatKind::Fat32 => {
                u32::from_le_bytes([t[4 * n], t[4 * n + 1], t[4 * n + 2], t[4 * n + 3]])
                    & 0x0FFF_FFFF
            }
        }
    }

    fn set(&mut self, n: u32, value: u32) {
        let n = n as usize;
        let t = &mut self.table;
        match self.kind {
            FatKind::Fat12 => {
                let o = n + n / 2;
                let old = u16::from_le_bytes([t[o], t[o + 1]]);
                let v = value as u16 & 0x0FFF;
                let new = if n & 1 == 1 {
                    (old & 0x000F) | (v << 4)
                } else {
                    (old & 0xF000) | v
                };
                t[o..o + 2].copy_from_slice(&new.to_le_bytes());
            }
            FatKind::Fat16 => t[2 * n..2 * n + 2].copy_from_slice(&(value as u16).to_le_bytes()),
            FatKind::Fat32 => {
                let old = u32::from_le_bytes([t[4 * n], t[4 * n + 1], t[4 * n + 2], t[4 * n + 3]]);
                let new = (old & 0xF000_0000) | (value & 0x0FFF_FFFF);
                t[4 * n..4 * n + 4].copy_from_slice(&new.to_le_bytes());
            }
        }
    }

    fn end_of_chain(&self) -> u32 {
        match self.kind {
            FatKind::Fat12 => 0x0FFF,
            FatKind::Fat16 => 0xFFFF,
            FatKind::Fat32 => 0x0FFF_FFFF,
        }
    }

    fn is_end(&self, v: u32) -> bool {
        v >= self.end_of_chain() & !7
    }

    /// The clusters of the chain starting at `first`.
    fn chain(&self, first: u32) -> Result<Vec<u32>, String> {
        let mut chain = Vec::new();
        let mut n = first;
        loop {
            if n < 2 || n >= self.end_cluster {
                return Err(format!("cluster chain reaches invalid cluster {n}"));
            }
            if chain.len() as u32 >= self.end_cluster {
                return Err("cluster chain loops".into());
            }
            chain.push(n);
            let next = self.get(n);
            if self.is_end(next) {
                return Ok(chain);
            }
            n = next;
        }
    }

    /// Byte offsets (in the partition) of the root directory's regions.
    fn root_dir_regions(&self) -> Result<Vec<(u64, u64)>, io::Error> {
        if self.kind == FatKind::Fat32 {
            let chain = self
                .chain(self.bpb.root_cluster)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(chain
                .into_iter()
                .map(|c| (self.bpb.cluster_offset(c), self.bpb.cluster_size()))
                .collect())
        } else {
            Ok(vec![(
                self.bpb.root_dir_offset(),
                self.bpb.root_entries * 32,
            )])
        }
    }

    /// Offset (in the partition) of the root directory entry named `short`.
    fn find_root_entry<V: Read + Seek>(
        &self,
        view: &mut V,
        short: &[u8; 11],
        want_dir: bool,
    ) -> io::Result<Option<u64>> {
        for (offset, len) in self.root_dir_regions()? {
            let mut dir = vec![0u8; len as usize];
            view.seek(SeekFrom::Start(offset))?;
            view.read_exact(&mut dir)?;
            for (i, entry) in dir.chunks_exact(32).enumerate() {
                if entry[0] == 0 {
                    return Ok(None);
                }
                let attr = entry[11];
                let is_dir = attr & 0x10 != 0;
                if entry[0] == 0xE5 || attr & 0x0F == 0x0F || attr & 0x08 != 0 || is_dir != want_dir
                {
                    continue;
                }
                if entry[..11] == short[..] {
                    return Ok(Some(offset + i as u64 * 32));
                }
            }
        }
        Ok(None)
    }

    fn entry_first_cluster<V: Read + Seek>(&self, view: &mut V, at: u64) -> io::Result<u32> {
        let mut entry = [0u8; 32];
        view.seek(SeekFrom::Start(at))?;
        view.read_exact(&mut entry)?;
        let hi = u32::from(u16::from_le_bytes([entry[20], entry[21]]));
        let lo = u32::from(u16::from_le_bytes([entry[26], entry[27]]));
        Ok(if self.kind == FatKind::Fat32 {
            (hi << 16) | lo
        } else {
            lo
        })
    }

    /// fatfs 0.3 writes a long-name entry before the "." and ".." entries of
    /// a directory it creates, and points ".." of a FAT32 root child at the
    /// root cluster; fsck.vfat rejects both. Rewrites the directory `entry_at`
    /// names (a child of the root) without those long names and with ".."
    /// pointing at cluster 0, as the FAT specification wants.
    fn fix_dot_entries<V: Read + Write + Seek>(
        &self,
        view: &mut V,
        entry_at: u64,
    ) -> io::Result<()> {
        let first = self.entry_first_cluster(view, entry_at)?;
        let chain = self
            .chain(first)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let cluster = self.bpb.cluster_size() as usize;
        let mut dir = vec![0u8; chain.len() * cluster];
        for (i, &c) in chain.iter().enumerate() {
            view.seek(SeekFrom::Start(self.bpb.cluster_offset(c)))?;
            view.read_exact(&mut dir[i * cluster..(i + 1) * cluster])?;
        }
        let mut kept: Vec<[u8; 32]> = Vec::new();
        let mut pending: Vec<[u8; 32]> = Vec::new();
        for raw in dir.chunks_exact(32) {
            let mut entry: [u8; 32] = raw.try_into().expect("32 bytes");
            if entry[0] == 0 {
                break;
            }
            if entry[0] != 0xE5 && entry[11] & 0x3F == 0x0F {
                pending.push(entry);
                continue;
            }
            let dot = entry[..11] == *b".          ";
            let dotdot = entry[..11] == *b"..         ";
            if dot || dotdot {
                pending.clear();
                if dotdot {
                    entry[20..22].fill(0);
                    entry[26..28].fill(0);
                }
            } else {
                kept.append(&mut pending);
            }
            kept.push(entry);
        }
        kept.append(&mut pending);
        let mut fixed = vec![0u8; dir.len()];
        for (slot, entry) in fixed.chunks_exact_mut(32).zip(&kept) {
            slot.copy_from_slice(entry);
        }
        if fixed != dir {
            for (i, &c) in chain.iter().enumerate() {
                view.seek(SeekFrom::Start(self.bpb.cluster_offset(c)))?;
                view.write_all(&fixed[i * cluster..(i + 1) * cluster])?;
            }
        }
        Ok(())
    }

    /// Moves the fragmented slot `chain` to the first run of free clusters
    /// long enough; returns its new first cluster, or `None` if there is no
    /// such run. The slot's old clusters count as free for the search.
    fn relocate<V: Read + Write + Seek>(
        &mut self,
        view: &mut V,
        chain: &[u32],
        entry_at: u64,
    ) -> io::Result<Option<u32>> {
        let before = self.table.clone();
        for &c in chain {
            self.set(c, 0);
        }
        let need = chain.len() as u32;
        let mut run_start = 2;
        let mut run_len = 0;
        let mut found = None;
        for n in 2..self.end_cluster {
            if self.get(n) == 0 {
                if run_len == 0 {
                    run_start = n;
                }
                run_len += 1;
                if run_len == need {
                    found = Some(run_start);
                    break;
                }
            } else {
                run_len = 0;
            }
        }
        let Some(first) = found else {
            self.table = before;
            return Ok(None);
        };
        for i in 0..need {
            let n = first + i;
            let next = if i + 1 == need {
                self.end_of_chain()
            } else {
                n + 1
            };
            self.set(n, next);
        }
        // The slot is zero-filled: clear its new clusters before the FAT
        // points at them.
        let zeros = vec![0u8; self.bpb.cluster_size() as usize];
        for i in 0..need {
            view.seek(SeekFrom::Start(self.bpb.cluster_offset(first + i)))?;
            view.write_all(&zeros)?;
        }
        // Write back only the FAT sectors that changed, in every FAT copy.
        let sector = self.bpb.bytes_per_sector as usize;
        let fat_len = self.table.len() as u64;
        for (i, (new, old)) in self
            .table
            .chunks(sector)
            .zip(before.chunks(sector))
            .enumerate()
        {
            if new != old {
                for copy in 0..self.bpb.fats {
                    let at = self.bpb.fat_offset() + copy * fat_len + (i * sector) as u64;
                    view.seek(SeekFrom::Start(at))?;
                    view.write_all(new)?;
                }
            }
        }
        let mut entry = [0u8; 32];
        view.seek(SeekFrom::Start(entry_at))?;
        view.read_exact(&mut entry)?;
        entry[20..22].copy_from_slice(&((first >> 16) as u16).to_le_bytes());
        entry[26..28].copy_from_slice(&(first as u16).to_le_bytes());
        if self.kind != FatKind::Fat32 {
            entry[20..22].fill(0);
        }
        view.seek(SeekFrom::Start(entry_at))?;
        view.write_all(&entry)?;
        Ok(Some(first))
    }
}

/// The FAT filesystem of partition `seed` of `card`, with the fixed clock that
/// keeps writes reproducible. `image` names the card in errors.
fn open_seed_fs<'a, T: Read + Write + Seek>(
    card: &'a mut T,
    seed: &Partition,
    image: &Path,
) -> Result<FileSystem<PartitionView<'a, T>>, FatError> {
    let view = PartitionView::new(card, seed.start, seed.len);
    let options = FsOptions::new()
        .time_provider(&FIXED_TIME)
        .update_accessed_date(false);
    FileSystem::new(view, options).map_err(|source| FatError::Open {
        image: image.to_owned(),
        number: seed.number,
        source,
    })
}

/// Reads one file of the FAT partition `seed` of `card` (for edits of a file
/// the golden image ships, such as Armbian's `armbianEnv.txt`). `Ok(None)` when
/// the file does not exist.
pub fn read_seed_file<T: Read + Write + Seek>(
    card: &mut T,
    seed: &Partition,
    path: &str,
    image: &Path,
) -> Result<Option<Vec<u8>>, FatError> {
    let number = seed.number;
    let fs = open_seed_fs(card, seed, image)?;
    let mut file = match fs.root_dir().open_file(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FatError::Io {
                image: image.to_owned(),
                number,
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| FatError::Io {
            image: image.to_owned(),
            number,
            source,
        })?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests;
