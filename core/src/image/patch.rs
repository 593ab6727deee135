//! The node patch: the byte extents where a node's card differs from its class base.
//!
//! A patch is small (the injected seed, a few filesystem metadata blocks, the zeroed
//! secrets slot), so it is held in memory; [`MAX_PATCH_BYTES`] caps it. On the wire it
//! is one zstd frame around the `METISPAT` v1 layout (all integers little-endian):
//!
//! ```text
//! offset  size      field
//! 0       8         magic "METISPAT"
//! 8       4         version (1)
//! 12      4         flags (0; reserved)
//! 16      8         image size in bytes (the base's and the composed image's)
//! 24      8         extent count n
//! 32      16 * n    n pairs (offset u64, length u64)
//! 32+16n  sum(len)  the extents' bytes, concatenated in order
//! ```
//!
//! Extents are sorted by offset, non-empty, inside the image, and neither overlap nor
//! touch (touching extents are one extent), so a patch has exactly one encoding.
//! See `docs/formats.md` for the rule for evolving the format.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

use super::chunks::read_full;

/// The patch magic: the first 8 bytes of a decompressed patch.
pub const PATCH_MAGIC: [u8; 8] = *b"METISPAT";

/// The patch format version this code writes and the only one it reads.
pub const PATCH_VERSION: u32 = 1;

/// Upper bound on the bytes a patch carries (32 MiB).
///
/// A node patch is kilobytes; the cap keeps a hostile or broken patch (a zstd bomb)
/// from exhausting memory and keeps compose within its memory budget.
pub const MAX_PATCH_BYTES: u64 = 32 << 20;

/// Equal runs shorter than this between two changed runs are carried in the patch
/// rather than starting a new extent: an extent header costs 16 bytes.
pub const MERGE_GAP: u64 = 16;

const HEADER_LEN: usize = 32;
const EXTENT_ENTRY_LEN: usize = 16;
/// zstd level for the patch: it is tiny, so the strongest ordinary level costs nothing.
const PATCH_ZSTD_LEVEL: i32 = 19;

/// Why a patch could not be built, read or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Reading an image or the patch failed.
    #[error("reading {what} at byte offset {offset}")]
    Io {
        /// What was being read ("base image", "modified image", "patch").
        what: &'static str,
        /// Byte offset where the read started.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The patch is not a valid zstd frame (corrupt or truncated).
    #[error("patch is not a valid zstd stream (corrupt or truncated)")]
    Decompress(#[source] io::Error),
    /// The decompressed patch does not start with `METISPAT`.
    #[error("patch does not start with the METISPAT magic")]
    BadMagic,
    /// The patch's version is not one this code reads.
    #[error(
        "patch format version {0} is not supported (this build reads version {PATCH_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// Reserved flag bits are set.
    #[error("patch has reserved flags {0:#x} set")]
    ReservedFlags(u32),
    /// The decompressed patch ends before the data its header announces.
    #[error("patch is truncated: {needed} bytes announced, {found} present")]
    Truncated {
        /// Bytes the header announces.
        needed: u64,
        /// Bytes present.
        found: u64,
    },
    /// The decompressed patch has bytes after the last extent's data.
    #[error("patch has {0} bytes after its last extent")]
    TrailingBytes(u64),
    /// An extent is empty, outside the image, or not after the previous one.
    #[error("patch extent {extent} (byte offset {offset}, length {len}) is {problem}")]
    BadExtent {
        /// Index of the extent in the patch.
        extent: usize,
        /// Its byte offset in the image.
        offset: u64,
        /// Its length.
        len: u64,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The patch carries more than [`MAX_PATCH_BYTES`].
    #[error("patch carries {0} bytes, more than the {MAX_PATCH_BYTES}-byte limit")]
    TooLarge(u64),
    /// The two images of a diff are not the same size.
    #[error("the images differ in size: the base has {base} bytes, the modified image {modified}")]
    SizeMismatch {
        /// Size of the base image.
        base: u64,
        /// Size of the modified image.
        modified: u64,
    },
    /// A patch was built for an image of another size.
    #[error("patch is for an image of {patch} bytes, the base has {image}")]
    ImageSize {
        /// Image size the patch names.
        patch: u64,
        /// Image size of the base.
        image: u64,
    },
    /// Compressing the patch failed.
    #[error("compressing the patch")]
    Compress(#[source] io::Error),
}

/// One extent of a patch: the bytes that replace the image's at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent<'a> {
    /// Byte offset in the image.
    pub offset: u64,
    /// The replacement bytes.
    pub bytes: &'a [u8],
}

impl Extent<'_> {
    /// The byte range this extent covers.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.bytes.len() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExtentEntry {
    offset: u64,
    len: u64,
    /// Start of the extent's bytes in `Patch::bytes`.
    start: usize,
}

/// The extents where a node's image differs from its class base, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    image_size: u64,
    extents: Vec<ExtentEntry>,
    bytes: Vec<u8>,
}

impl Patch {
    /// A patch that changes nothing.
    pub fn empty(image_size: u64) -> Self {
        Self {
            image_size,
            extents: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// A patch from `(offset, bytes)` writes, applied in order (a later write wins where
    /// two overlap), sorted and coalesced.
    ///
    /// # Errors
    ///
    /// [`PatchError::BadExtent`] for a write past `image_size`,
    /// [`PatchError::TooLarge`] if the writes cover more than [`MAX_PATCH_BYTES`].
    pub fn from_extents(
        image_size: u64,
        extents: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<Self, PatchError> {
        let mut builder = PatchBuilder::new(image_size);
        for (offset, bytes) in extents {
            builder.write(offset, &bytes)?;
        }
        Ok(builder.finish())
    }

    /// The patch that turns `base` into `modified`, reading both streaming.
    ///
    /// Changed runs separated by fewer than [`MERGE_GAP`] equal bytes become one
    /// extent. Both images must have the same size.
    ///
    /// # Errors
    ///
    /// [`PatchError::Io`], [`PatchError::SizeMismatch`], or [`PatchError::TooLarge`].
    pub fn diff(mut base: impl Read, mut modified: impl Read) -> Result<Self, PatchError> {
        const BLOCK: usize = 1 << 20;
        let mut a = vec![0u8; BLOCK];
        let mut b = vec![0u8; BLOCK];
        let mut differ = Differ::default();
        let mut pos = 0u64;
        loop {
            let na = read_full(&mut base, &mut a).map_err(|source| PatchError::Io {
                what: "base image",
                offset: pos,
                source,
            })?;
            let nb = read_full(&mut modified, &mut b).map_err(|source| PatchError::Io {
                what: "modified image",
                offset: pos,
                source,
            })?;
            let n = na.min(nb);
            differ.feed(pos, &a[..n], &b[..n])?;
            pos += n as u64;
            if na != nb {
                // One image ended early; count the rest of the longer one for the message.
                let (mut rest, base_longer): (Box<dyn Read + '_>, bool) = if na > nb {
                    (Box::new(&mut base), true)
                } else {
                    (Box::new(&mut modified), false)
                };
                let longer = pos
                    + (na.max(nb) - n) as u64
                    + io::copy(&mut rest, &mut io::sink()).map_err(|source| PatchError::Io {
                        what: if base_longer {
                            "base image"
                        } else {
                            "modified image"
                        },
                        offset: pos,
                        source,
                    })?;
                let (base, modified) = if base_longer {
                    (longer, pos)
                } else {
                    (pos, longer)
                };
                return Err(PatchError::SizeMismatch { base, modified });
            }
            if n < BLOCK {
                break;
            }
        }
        Ok(differ.finish(pos))
    }

    /// Image size the patch applies to.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// Number of extents.
    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    /// Total bytes the extents carry.
    pub fn byte_count(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// The extents, ascending by offset.
    pub fn extents(&self) -> impl ExactSizeIterator<Item = Extent<'_>> + '_ {
        self.extents.iter().map(|e| self.extent(e))
    }

    fn extent(&self, e: &ExtentEntry) -> Extent<'_> {
        Extent {
            offset: e.offset,
            bytes: &self.bytes[e.start..e.start + e.len as usize],
        }
    }

    /// The extents that overlap the byte range `range`.
    pub fn extents_overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Extent<'_>> + '_ {
        let first = self
            .extents
            .partition_point(|e| e.offset + e.len <= range.start);
        self.extents[first..]
            .iter()
            .take_while(move |e| e.offset < range.end)
            .map(|e| self.extent(e))
    }

    /// Whether any extent overlaps the byte range `range`.
    pub fn touches(&self, range: Range<u64>) -> bool {
        self.extents_overlapping(range).next().is_some()
    }

    /// Overwrites `buf`, which holds the image bytes at `offset`, with the patch's bytes.
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let range = offset..offset + buf.len() as u64;
        for extent in self.extents_overlapping(range.clone()) {
            let r = extent.range();
            let start = r.start.max(range.start);
            let end = r.end.min(range.end);
            let src = &extent.bytes[(start - r.start) as usize..(end - r.start) as usize];
            buf[(start - offset) as usize..(end - offset) as usize].copy_from_slice(src);
        }
    }

    /// Drops the bytes that equal `base` (the raw class image), so a patch built from
    /// the injection engine's dirty extents is byte-for-byte the patch
    /// [`diff`](Self::diff) would give for the same images.
    ///
    /// # Errors
    ///
    /// [`PatchError::Io`] if reading `base` fails or it is shorter than the patch says.
    pub fn minimize(&self, mut base: impl Read + Seek) -> Result<Self, PatchError> {
        let mut differ = Differ::default();
        let mut old = Vec::new();
        let mut read_at = |offset: u64, len: usize, old: &mut Vec<u8>| {
            old.resize(len, 0);
            base.seek(SeekFrom::Start(offset))
                .and_then(|_| base.read_exact(old))
                .map_err(|source| PatchError::Io {
                    what: "base image",
                    offset,
                    source,
                })
        };
        for (i, e) in self.extents.iter().enumerate() {
            let new = &self.bytes[e.start..e.start + e.len as usize];
            read_at(e.offset, new.len(), &mut old)?;
            differ.feed(e.offset, &old, new)?;
            // Bytes up to the next extent equal the base. Feeding at most MERGE_GAP of
            // them merges or splits exactly as `diff` would: a longer gap always closes
            // the open extent, after which the skipped bytes do not matter.
            let end = e.offset + e.len;
            let next = self
                .extents
                .get(i + 1)
                .map_or(self.image_size, |n| n.offset);
            let gap = (next - end).min(MERGE_GAP);
            read_at(end, gap as usize, &mut old)?;
            differ.feed(end, &old, &old)?;
        }
        Ok(differ.finish(self.image_size))
    }

    /// The patch in its wire form: `METISPAT` v1, zstd-compressed.
    ///
    /// # Errors
    ///
    /// [`PatchError::Compress`] if libzstd fails.
    pub fn encode(&self) -> Result<Vec<u8>, PatchError> {
        let mut raw = Vec::with_capacity(
            HEADER_LEN + EXTENT_ENTRY_LEN * self.extents.len() + self.bytes.len(),
        );
        raw.extend_from_slice(&PATCH_MAGIC);
        raw.extend_from_slice(&PATCH_VERSION.to_le_bytes());
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&self.image_size.to_le_bytes());
        raw.extend_from_slice(&(self.extents.len() as u64).to_le_bytes());
        for e in &self.extents {
            raw.extend_from_slice(&e.offset.to_le_bytes());
            raw.extend_from_slice(&e.len.to_le_bytes());
        }
        raw.extend_from_slice(&self.bytes);
        let mut compressor =
            zstd::bulk::Compressor::new(PATCH_ZSTD_LEVEL).map_err(PatchError::Compress)?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(PatchError::Compress)?;
        compressor.compress(&raw).map_err(PatchError::Compress)
    }

    /// Reads a patch from its wire form, checking every rule of the format.
    ///
    /// # Errors
    ///
    /// The [`PatchError`] naming the first broken rule.
    pub fn decode(wire: &[u8]) -> Result<Self, PatchError> {
        Self::read_from(wire)
    }

    /// Reads a patch in wire form from `reader` (streaming decompression, capped at
    /// [`MAX_PATCH_BYTES`] plus the header and extent list).
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub fn read_from(reader: impl Read) -> Result<Self, PatchError> {
        let mut decoder =
            zstd::stream::read::Decoder::new(reader).map_err(PatchError::Decompress)?;
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut decoder, &mut header).map_err(PatchError::Decompress)?;
        if n < 8 || header[..8] != PATCH_MAGIC {
            return Err(if n < 8 && PATCH_MAGIC.starts_with(&header[..n]) {
                PatchError::Truncated {
                    needed: HEADER_LEN as u64,
                    found: n as u64,
                }
            } else {
                PatchError::BadMagic
            });
        }
        if n < HEADER_LEN {
            return Err(PatchError::Truncated {
                needed: HEADER_LEN as u64,
                found: n as u64,
            });
        }
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != PATCH_VERSION {
            return Err(PatchError::UnsupportedVersion(version));
        }
        let flags = u32_at(12);
        if flags != 0 {
            return Err(PatchError::ReservedFlags(flags));
        }
        let image_size = u64_at(16);
        let count = u64_at(24);
        // Every extent carries at least one byte, which bounds the count before we
        // allocate for it.
        if count > MAX_PATCH_BYTES {
            return Err(PatchError::TooLarge(count));
        }
        let mut list = vec![0u8; count as usize * EXTENT_ENTRY_LEN];
        let got = read_full(&mut decoder, &mut list).map_err(PatchError::Decompress)?;
        if got < list.len() {
            return Err(PatchError::Truncated {
                needed: (HEADER_LEN + list.len()) as u64,
                found: (HEADER_LEN + got) as u64,
            });
        }
        let mut extents = Vec::with_capacity(count as usize);
        let mut total: u64 = 0;
        let mut previous_end: Option<u64> = None;
        for (extent, entry) in list.chunks_exact(EXTENT_ENTRY_LEN).enumerate() {
            let offset = u64::from_le_bytes(entry[..8].try_into().unwrap());
            let len = u64::from_le_bytes(entry[8..].try_into().unwrap());
            let bad = |problem| PatchError::BadExtent {
                extent,
                offset,
                len,
                problem,
            };
            if len == 0 {
                return Err(bad("empty"));
            }
            if offset.checked_add(len).is_none_or(|end| end > image_size) {
                return Err(bad("past the end of the image"));
            }
            if previous_end.is_some_and(|end| offset <= end) {
                return Err(bad("not after the previous extent (patches are sorted, non-overlapping and coalesced)"));
            }
            previous_end = Some(offset + len);
            total = total.saturating_add(len);
            if total > MAX_PATCH_BYTES {
                return Err(PatchError::TooLarge(total));
            }
            extents.push(ExtentEntry {
                offset,
                len,
                start: (total - len) as usize,
            });
        }
        let mut bytes = vec![0u8; total as usize];
        let got = read_full(&mut decoder, &mut bytes).map_err(PatchError::Decompress)?;
        let announced = (HEADER_LEN + list.len()) as u64 + total;
        if got < bytes.len() {
            return Err(PatchError::Truncated {
                needed: announced,
                found: announced - total + got as u64,
            });
        }
        // Reading to the end also makes the decoder check the frame's content checksum
        // and notice a truncated frame.
        let trailing = io::copy(&mut decoder.take(MAX_PATCH_BYTES), &mut io::sink())
            .map_err(PatchError::Decompress)?;
        if trailing > 0 {
            return Err(PatchError::TrailingBytes(trailing));
        }
        Ok(Self {
            image_size,
            extents,
            bytes,
        })
    }
}

/// Collects writes into a [`Patch`]; a later write wins where two overlap.
#[derive(Debug)]
pub struct PatchBuilder {
    image_size: u64,
    /// Disjoint, non-touching runs keyed by start offset.
    runs: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl PatchBuilder {
    /// An empty builder for an image of `image_size` bytes.
    pub fn new(image_size: u64) -> Self {
        Self {
            image_size,
            runs: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Records that the image holds `bytes` at `offset` (an injection engine's dirty
    /// extent). Empty writes are ignored.
    ///
    /// # Errors
    ///
    /// [`PatchError::BadExtent`] for a write past the end of the image,
    /// [`PatchError::TooLarge`] once the patch would exceed [`MAX_PATCH_BYTES`].
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), PatchError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        let end = match offset.checked_add(len) {
            Some(end) if end <= self.image_size => end,
            _ => {
                return Err(PatchError::BadExtent {
                    extent: self.runs.len(),
                    offset,
                    len,
                    problem: "past the end of the image",
                })
            }
        };
        // Runs that overlap or touch [offset, end) merge with this write.
        let mut start = offset;
        let mut merged_end = end;
        let touching: Vec<u64> = self
            .runs
            .range(..=end)
            .rev()
            .take_while(|(s, run)| **s + run.len() as u64 >= offset)
            .map(|(s, _)| *s)
            .collect();
        let mut old_runs = Vec::with_capacity(touching.len());
        for s in touching {
            let run = self.runs.remove(&s).expect("key was just listed");
            self.bytes -= run.len() as u64;
            start = start.min(s);
            merged_end = merged_end.max(s + run.len() as u64);
            old_runs.push((s, run));
        }
        let mut merged = vec![0u8; (merged_end - start) as usize];
        for (s, run) in old_runs {
            let at = (s - start) as usize;
            merged[at..at + run.len()].copy_from_slice(&run);
        }
        let at = (offset - start) as usize;
        merged[at..at + bytes.len()].copy_from_slice(bytes);
        self.bytes += merged.len() as u64;
        self.runs.insert(start, merged);
        if self.bytes > MAX_PATCH_BYTES {
            return Err(PatchError::TooLarge(self.bytes));
        }
        Ok(())
    }

    /// The patch, sorted and coalesced.
    pub fn finish(self) -> Patch {
        let mut patch = Patch::empty(self.image_size);
        for (offset, run) in self.runs {
            patch.extents.push(ExtentEntry {
                offset,
                len: run.len() as u64,
                start: patch.bytes.len(),
            });
            patch.bytes.extend_from_slice(&run);
        }
        patch
    }
}

/// Turns a stream of (old, new) byte pairs into canonical extents.
#[derive(Debug, Default)]
struct Differ {
    patch_extents: Vec<ExtentEntry>,
    bytes: Vec<u8>,
    /// The open extent: its start offset (its bytes are `bytes[open_start..]`).
    open: Option<(u64, usize)>,
    /// Equal bytes seen since the open extent's last changed byte.
    gap: Vec<u8>,
}

impl Differ {
    fn feed(&mut self, pos: u64, old: &[u8], new: &[u8]) -> Result<(), PatchError> {
        debug_assert_eq!(old.len(), new.len());
        let mut i = 0;
        while i < old.len() {
            if self.open.is_none() {
                match first_difference(&old[i..], &new[i..]) {
                    None => return Ok(()),
                    Some(d) => i += d,
                }
                self.open = Some((pos + i as u64, self.bytes.len()));
                self.push_byte(new[i])?;
            } else if old[i] != new[i] {
                self.bytes.extend_from_slice(&self.gap);
                self.gap.clear();
                self.push_byte(new[i])?;
            } else {
                self.gap.push(new[i]);
                if self.gap.len() as u64 >= MERGE_GAP {
                    self.close();
                }
            }
            i += 1;
        }
        Ok(())
    }

    fn push_byte(&mut self, byte: u8) -> Result<(), PatchError> {
        self.bytes.push(byte);
        if self.bytes.len() as u64 > MAX_PATCH_BYTES {
            return Err(PatchError::TooLarge(self.bytes.len() as u64));
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some((offset, start)) = self.open.take() {
            self.patch_extents.push(ExtentEntry {
                offset,
                len: (self.bytes.len() - start) as u64,
                start,
            });
        }
        self.gap.clear();
    }

    fn finish(mut self, image_size: u64) -> Patch {
        self.close();
        Patch {
            image_size,
            extents: self.patch_extents,
            bytes: self.bytes,
        }
    }
}

/// Index of the first byte where `a` and `b` differ.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let mut at = 0;
    // Whole-block comparisons are memcmp; only a differing block is scanned bytewise.
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x != y {
            return x.iter().zip(y).position(|(p, q)| p != q).map(|d| at + d);
        }
        at += x.len();
    }
    None
}

#[cfg(test)]
mod tests;
