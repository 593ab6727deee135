//! The chunk table: per-chunk SHA-256 of an image cut into fixed-size chunks.
//!
//! Two tables exist per node: one of the class base (the golden image) and one of the
//! *composed* node image (base + node patch, secrets slot zeroed). Both go into the
//! signed node config blob (`application/vnd.metis.node.config.v1+json`); the zstd
//! seek table's own checksums are not cryptographic, so this table is what the flasher
//! trusts. The JSON form is described in `docs/formats.md`.
//!
//! A [`ChunkTable`] always upholds its invariants (hash count matches the layout, the
//! zero list is sorted, in range, and every listed chunk's hash is the hash of zeros),
//! whether it was built or deserialised, so a reader may skip a chunk the table marks
//! zero without decoding it and still hand out verified bytes.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the chunk table JSON this code writes and the only one it reads.
pub const CHUNK_TABLE_VERSION: u32 = 1;

/// Default uncompressed chunk (and zstd frame) size: 4 MiB.
///
/// Large enough that per-frame overhead and the table stay small (a 32 GiB card has
/// 8192 chunks), small enough that a few chunks in flight fit in tens of MiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 4 << 20;

/// Smallest chunk size accepted (4 KiB, one page and a multiple of every sector size).
pub const MIN_CHUNK_SIZE: u32 = 4 << 10;

/// Largest chunk size accepted (16 MiB), which keeps compose memory bounded.
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;

/// Why a chunk table (or a chunk layout) is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkTableError {
    /// The chunk size is not a power of two between [`MIN_CHUNK_SIZE`] and [`MAX_CHUNK_SIZE`].
    #[error(
        "chunk size {0} is not a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
    )]
    ChunkSize(u64),
    /// The table's `version` field names a format this code does not know.
    #[error(
        "chunk table version {0} is not supported (this build reads version {CHUNK_TABLE_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// The number of hashes does not match `image_size` and `chunk_size`.
    #[error("chunk table has {found} hashes but an image of {image_size} bytes in chunks of {chunk_size} bytes has {expected}")]
    HashCount {
        /// Hashes present.
        found: usize,
        /// Hashes the layout needs.
        expected: usize,
        /// Image size in bytes.
        image_size: u64,
        /// Chunk size in bytes.
        chunk_size: u32,
    },
    /// A hash is not 64 hexadecimal digits.
    #[error("chunk {chunk}: hash {text:?} is not 64 hexadecimal digits")]
    BadHash {
        /// Chunk index.
        chunk: usize,
        /// The offending text (a hash is public, so it may be shown).
        text: String,
    },
    /// The zero-chunk list is not strictly increasing.
    #[error("zero-chunk list is not strictly increasing at chunk {0}")]
    ZeroListOrder(usize),
    /// The zero-chunk list names a chunk past the end of the image.
    #[error("zero-chunk list names chunk {chunk}, but the image has {count} chunks")]
    ZeroListRange {
        /// The listed chunk index.
        chunk: usize,
        /// Number of chunks in the image.
        count: usize,
    },
    /// A chunk is listed as all zeros but its hash is not the hash of zeros.
    #[error("chunk {chunk} at byte offset {offset} is listed as all zeros but its hash is not the SHA-256 of zeros")]
    ZeroHash {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
    },
    /// The image has more chunks than this platform can index.
    #[error("an image of {0} bytes has too many chunks to index on this platform")]
    TooManyChunks(u64),
}

/// How an image of `image_size` bytes is cut into chunks of `chunk_size` bytes.
///
/// Every chunk is `chunk_size` bytes except the last, which holds the remainder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    chunk_size: u32,
    image_size: u64,
    count: usize,
}

impl ChunkLayout {
    /// A layout for `image_size` bytes in chunks of `chunk_size` bytes.
    ///
    /// # Errors
    ///
    /// [`ChunkTableError::ChunkSize`] if `chunk_size` is not a power of two in
    /// [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]; [`ChunkTableError::TooManyChunks`] if
    /// the chunk count does not fit in `usize`.
    pub fn new(chunk_size: u32, image_size: u64) -> Result<Self, ChunkTableError> {
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        {
            return Err(ChunkTableError::ChunkSize(chunk_size.into()));
        }
        let count = usize::try_from(image_size.div_ceil(chunk_size.into()))
            .map_err(|_| ChunkTableError::TooManyChunks(image_size))?;
        Ok(Self {
            chunk_size,
            image_size,
            count,
        })
    }

    /// Chunk size in bytes (every chunk but the last).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Image size in bytes.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.count
    }

    /// Byte offset of chunk `index` in the image.
    pub fn chunk_offset(&self, index: usize) -> u64 {
        index as u64 * u64::from(self.chunk_size)
    }

    /// Length in bytes of chunk `index` (0 past the end).
    pub fn chunk_len(&self, index: usize) -> usize {
        let start = self.chunk_offset(index).min(self.image_size);
        let end = (start + u64::from(self.chunk_size)).min(self.image_size);
        // At most chunk_size, which is a u32.
        (end - start) as usize
    }

    /// Byte range of chunk `index` in the image.
    pub fn chunk_range(&self, index: usize) -> Range<u64> {
        let start = self.chunk_offset(index);
        start..start + self.chunk_len(index) as u64
    }

    /// Indexes of the chunks that overlap the byte range `range` (empty for an empty range).
    pub fn chunks_overlapping(&self, range: Range<u64>) -> Range<usize> {
        if range.start >= range.end || range.start >= self.image_size {
            return 0..0;
        }
        let size = u64::from(self.chunk_size);
        let first = (range.start / size) as usize;
        let last = ((range.end.min(self.image_size) - 1) / size) as usize;
        first..last + 1
    }
}

/// A SHA-256 digest of one chunk.
///
/// Its own type rather than [`crate::digest::Sha256Digest`]: the chunk table
/// writes it as bare hex (no `sha256:`), and the flasher hashes chunks on its
/// hot path straight into it, one hasher reset per chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The SHA-256 of `len` zero bytes.
    pub fn of_zeros(len: usize) -> Self {
        let block = [0u8; 64 << 10];
        let mut hasher = Sha256::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            hasher.update(&block[..n]);
            left -= n;
        }
        Self(hasher.finalize().into())
    }

    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({})", self.to_hex())
    }
}

impl fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Whether every byte of `bytes` is zero.
pub fn is_all_zero(bytes: &[u8]) -> bool {
    // OR-folding fixed blocks vectorises; an early-exit byte loop does not.
    bytes
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Per-chunk SHA-256 of an image, plus which chunks are all zeros.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ChunkTableJson", into = "ChunkTableJson")]
pub struct ChunkTable {
    layout: ChunkLayout,
    hashes: Vec<ChunkHash>,
    zero: Vec<bool>,
}

impl fmt::Debug for ChunkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkTable")
            .field("chunk_size", &self.layout.chunk_size)
            .field("image_size", &self.layout.image_size)
            .field("chunks", &self.layout.count)
            .field("zero_chunks", &self.zero.iter().filter(|z| **z).count())
            .finish()
    }
}

impl ChunkTable {
    /// A table from its parts, checking every invariant.
    ///
    /// # Errors
    ///
    /// Any [`ChunkTableError`] describing the first broken invariant.
    pub fn new(
        layout: ChunkLayout,
        hashes: Vec<ChunkHash>,
        zero_chunks: &[usize],
    ) -> Result<Self, ChunkTableError> {
        if hashes.len() != layout.chunk_count() {
            return Err(ChunkTableError::HashCount {
                found: hashes.len(),
                expected: layout.chunk_count(),
                image_size: layout.image_size(),
                chunk_size: layout.chunk_size(),
            });
        }
        let mut zero = vec![false; hashes.len()];
        let mut previous: Option<usize> = None;
        let mut zero_hashes = ZeroHashes::default();
        for &chunk in zero_chunks {
            if previous.is_some_and(|p| p >= chunk) {
                return Err(ChunkTableError::ZeroListOrder(chunk));
            }
            previous = Some(chunk);
            if chunk >= hashes.len() {
                return Err(ChunkTableError::ZeroListRange {
                    chunk,
                    count: hashes.len(),
                });
            }
            if hashes[chunk] != zero_hashes.get(layout.chunk_len(chunk)) {
                return Err(ChunkTableError::ZeroHash {
                    chunk,
                    offset: layout.chunk_offset(chunk),
                });
            }
            zero[chunk] = true;
        }
        Ok(Self {
            layout,
            hashes,
            zero,
        })
    }

    /// Hashes an image read from `image` to its end, in chunks of `chunk_size` bytes.
    ///
    /// Reads sequentially with one chunk in memory; meant for tools and tests (the
    /// builder gets the base table from [`write_base`](super::base::write_base)).
    ///
    /// # Errors
    ///
    /// The read error, or [`io::ErrorKind::InvalidInput`] wrapping a
    /// [`ChunkTableError`] for a bad chunk size.
    pub fn from_image(mut image: impl Read, chunk_size: u32) -> io::Result<Self> {
        // Validate the chunk size before allocating a buffer of that size.
        ChunkLayout::new(chunk_size, 0)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut builder = ChunkTableBuilder::new(chunk_size);
        let mut buf = vec![0u8; chunk_size as usize];
        loop {
            let n = read_full(&mut image, &mut buf)?;
            if n == 0 {
                break;
            }
            builder.push_chunk(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
        builder
            .finish()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// How the image is cut into chunks.
    pub fn layout(&self) -> ChunkLayout {
        self.layout
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.layout.chunk_size
    }

    /// Image size in bytes.
    pub fn image_size(&self) -> u64 {
        self.layout.image_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.layout.count
    }

    /// SHA-256 of chunk `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`chunk_count`](Self::chunk_count).
    pub fn hash(&self, index: usize) -> ChunkHash {
        self.hashes[index]
    }

    /// All chunk hashes in order.
    pub fn hashes(&self) -> &[ChunkHash] {
        &self.hashes
    }

    /// Whether chunk `index` is all zeros (false past the end).
    pub fn is_zero(&self, index: usize) -> bool {
        self.zero.get(index).copied().unwrap_or(false)
    }

    /// Indexes of the all-zero chunks, ascending.
    pub fn zero_chunks(&self) -> impl Iterator<Item = usize> + '_ {
        self.zero
            .iter()
            .enumerate()
            .filter_map(|(i, z)| z.then_some(i))
    }
}

/// Builds a [`ChunkTable`] one chunk at a time, in order.
#[derive(Debug)]
pub struct ChunkTableBuilder {
    chunk_size: u32,
    image_size: u64,
    hashes: Vec<ChunkHash>,
    zero_chunks: Vec<usize>,
    short_chunk_seen: bool,
}

impl ChunkTableBuilder {
    /// An empty builder for chunks of `chunk_size` bytes.
    pub fn new(chunk_size: u32) -> Self {
        Self {
            chunk_size,
            image_size: 0,
            hashes: Vec::new(),
            zero_chunks: Vec::new(),
            short_chunk_seen: false,
        }
    }

    /// Hashes the next chunk and records whether it is all zeros.
    ///
    /// # Panics
    ///
    /// If the chunk is longer than the chunk size or follows a shorter (last) chunk:
    /// that is a bug in the caller, not bad input.
    pub fn push_chunk(&mut self, chunk: &[u8]) {
        let zero = is_all_zero(chunk);
        self.push(chunk.len(), ChunkHash::of(chunk), zero);
    }

    /// Records the next chunk from its already computed hash.
    ///
    /// # Panics
    ///
    /// As [`push_chunk`](Self::push_chunk).
    pub fn push(&mut self, len: usize, hash: ChunkHash, is_zero: bool) {
        assert!(
            len <= self.chunk_size as usize && !self.short_chunk_seen,
            "chunk {} of {len} bytes does not fit a layout of {}-byte chunks",
            self.hashes.len(),
            self.chunk_size
        );
        self.short_chunk_seen = len < self.chunk_size as usize;
        if is_zero {
            self.zero_chunks.push(self.hashes.len());
        }
        self.hashes.push(hash);
        self.image_size += len as u64;
    }

    /// The finished table.
    ///
    /// # Errors
    ///
    /// A [`ChunkTableError`] if the chunk size is invalid or a chunk marked zero was not.
    pub fn finish(self) -> Result<ChunkTable, ChunkTableError> {
        let layout = ChunkLayout::new(self.chunk_size, self.image_size)?;
        ChunkTable::new(layout, self.hashes, &self.zero_chunks)
    }
}

/// SHA-256 of zeros by length; an image has at most two chunk lengths.
#[derive(Debug, Default)]
pub(crate) struct ZeroHashes(HashMap<usize, ChunkHash>);

impl ZeroHashes {
    pub(crate) fn get(&mut self, len: usize) -> ChunkHash {
        *self
            .0
            .entry(len)
            .or_insert_with(|| ChunkHash::of_zeros(len))
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The JSON shape of a chunk table (see `docs/formats.md`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkTableJson {
    version: u32,
    chunk_size: u32,
    image_size: u64,
    sha256: Vec<String>,
    zero_chunks: Vec<usize>,
}

impl From<ChunkTable> for ChunkTableJson {
    fn from(table: ChunkTable) -> Self {
        let zero_chunks = table.zero_chunks().collect();
        Self {
            version: CHUNK_TABLE_VERSION,
            chunk_size: table.layout.chunk_size,
            image_size: table.layout.image_size,
            sha256: table.hashes.iter().map(ChunkHash::to_hex).collect(),
            zero_chunks,
        }
    }
}

impl TryFrom<ChunkTableJson> for ChunkTable {
    type Error = ChunkTableError;

    fn try_from(json: ChunkTableJson) -> Result<Self, Self::Error> {
        if json.version != CHUNK_TABLE_VERSION {
            return Err(ChunkTableError::UnsupportedVersion(json.version));
        }
        let layout = ChunkLayout::new(json.chunk_size, json.image_size)?;
        let hashes = json
            .sha256
            .into_iter()
            .enumerate()
            .map(|(chunk, text)| {
                let mut hash = [0u8; 32];
                // Lower case only, so one table has one JSON spelling.
                if text.bytes().any(|b| b.is_ascii_uppercase())
                    || hex::decode_to_slice(&text, &mut hash).is_err()
                {
                    return Err(ChunkTableError::BadHash { chunk, text });
                }
                Ok(ChunkHash(hash))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ChunkTable::new(layout, hashes, &json.zero_chunks)
    }
}

/// Synthetic golden images for the image modules' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    /// Deterministic pseudo-random bytes (xorshift; no dev-dependency needed).
    pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// An image of `size` bytes mixing random data, text-like data and zero runs,
    /// some of them covering whole chunks of `chunk` bytes and some not aligned.
    pub(crate) fn synthetic_image(seed: u64, size: usize, chunk: usize) -> Vec<u8> {
        let mut image = noise(seed, size);
        // Compressible stretch: repeated text.
        let text = b"node titan-db class amd64-agents k3s agent ";
        for (i, b) in image.iter_mut().enumerate().skip(size / 5).take(size / 5) {
            *b = text[i % text.len()];
        }
        // Whole zero chunks: the 2nd and 3rd chunk, and the last full chunk.
        for c in [1usize, 2] {
            let start = (c * chunk).min(size);
            let end = ((c + 1) * chunk).min(size);
            image[start..end].fill(0);
        }
        if size >= 6 * chunk {
            let last_full = size / chunk - 1;
            image[last_full * chunk..(last_full + 1) * chunk].fill(0);
        }
        // An unaligned zero run.
        let start = size * 3 / 5;
        let end = (start + chunk / 2 + 123).min(size);
        image[start..end].fill(0);
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matrix() {
        // (chunk_size, image_size, expected count, expected last chunk length)
        let cases: &[(u32, u64, usize, usize)] = &[
            (4096, 0, 0, 0),
            (4096, 1, 1, 1),
            (4096, 4095, 1, 4095),
            (4096, 4096, 1, 4096),
            (4096, 4097, 2, 1),
            (65536, 3 * 65536 + 17, 4, 17),
            (4 << 20, 32 << 30, 8192, 4 << 20),
        ];
        for &(chunk_size, image_size, count, last) in cases {
            let layout = ChunkLayout::new(chunk_size, image_size).unwrap();
            assert_eq!(layout.chunk_count(), count, "{chunk_size} {image_size}");
            if count > 0 {
                assert_eq!(layout.chunk_len(count - 1), last);
                assert_eq!(layout.chunk_range(count - 1).end, image_size);
            }
            assert_eq!(layout.chunk_len(count), 0);
        }
    }

    #[test]
    fn layout_rejects_bad_chunk_sizes() {
        for size in [0, 1, 4095, 4097, 3 << 20, 32 << 20, u32::MAX] {
            assert!(
                matches!(
                    ChunkLayout::new(size, 1),
                    Err(ChunkTableError::ChunkSize(_))
                ),
                "{size}"
            );
        }
    }

    #[test]
    fn chunks_overlapping_matrix() {
        let layout = ChunkLayout::new(4096, 3 * 4096 + 100).unwrap();
        let cases: &[(Range<u64>, Range<usize>)] = &[
            (0..0, 0..0),
            (0..1, 0..1),
            (4095..4096, 0..1),
            (4095..4097, 0..2),
            (4096..8192, 1..2),
            (0..100_000, 0..4),
            (3 * 4096 + 99..3 * 4096 + 100, 3..4),
            (3 * 4096 + 100..3 * 4096 + 200, 0..0),
        ];
        for (range, want) in cases {
            assert_eq!(layout.chunks_overlapping(range.clone()), *want, "{range:?}");
        }
    }

    fn sample_image(size: usize) -> Vec<u8> {
        let mut image: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        // Zero the second chunk of 4096 bytes, if any.
        if size > 4096 {
            let end = size.min(8192);
            image[4096..end].fill(0);
        }
        image
    }

    #[test]
    fn json_round_trip_and_shape() {
        for size in [0usize, 1, 4096, 8192, 8193, 20_000] {
            let image = sample_image(size);
            let table = ChunkTable::from_image(&image[..], 4096).unwrap();
            assert_eq!(table.image_size(), size as u64);
            let json = serde_json::to_string(&table).unwrap();
            let back: ChunkTable = serde_json::from_str(&json).unwrap();
            assert_eq!(back, table);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["version"], 1);
            assert_eq!(value["chunk_size"], 4096);
            if size > 4096 {
                assert_eq!(value["zero_chunks"], serde_json::json!([1]));
                assert!(table.is_zero(1));
                assert_eq!(
                    value["sha256"][0],
                    hex::encode(Sha256::digest(&image[..4096]))
                );
            }
        }
    }

    #[test]
    fn json_rejects_broken_tables() {
        let image = sample_image(3 * 4096);
        let table = ChunkTable::from_image(&image[..], 4096).unwrap();
        let good: serde_json::Value = serde_json::to_value(&table).unwrap();
        let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            serde_json::from_value::<ChunkTable>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(mutate(&|v| v["version"] = 2.into()).contains("version 2"));
        assert!(mutate(&|v| v["chunk_size"] = 1000.into()).contains("chunk size 1000"));
        assert!(mutate(&|v| v["image_size"] = (5 * 4096).into()).contains("has 3 hashes"));
        assert!(mutate(&|v| v["sha256"][2] = "xyz".into()).contains("chunk 2"));
        let upper = good["sha256"][0].as_str().unwrap().to_uppercase();
        assert!(mutate(&|v| v["sha256"][0] = upper.clone().into()).contains("chunk 0"));
        assert!(mutate(&|v| v["zero_chunks"] = serde_json::json!([0])).contains("chunk 0"));
        assert!(mutate(&|v| v["zero_chunks"] = serde_json::json!([1, 1])).contains("increasing"));
        assert!(mutate(&|v| v["zero_chunks"] = serde_json::json!([7])).contains("chunk 7"));
        assert!(mutate(&|v| v["extra"] = 1.into()).contains("unknown field"));
    }

    #[test]
    fn truncated_json_fails_cleanly() {
        let table = ChunkTable::from_image(&sample_image(5 * 4096 + 1)[..], 4096).unwrap();
        let json = serde_json::to_string(&table).unwrap();
        for len in 0..json.len() {
            assert!(
                serde_json::from_str::<ChunkTable>(&json[..len]).is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn zero_detection_matrix() {
        for len in [0usize, 1, 15, 4095, 4096, 4097, 100_000] {
            let mut buf = vec![0u8; len];
            assert!(is_all_zero(&buf));
            for pos in [0, len / 2, len.saturating_sub(1)] {
                if len > 0 {
                    buf[pos] = 1;
                    assert!(!is_all_zero(&buf), "len {len} pos {pos}");
                    buf[pos] = 0;
                }
            }
            assert_eq!(ChunkHash::of_zeros(len), ChunkHash::of(&buf));
        }
    }
}
