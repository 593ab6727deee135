//! Compose: rebuild a node's card from the class base and the node patch, verifying
//! every chunk against the signed composed chunk table before handing it on.
//!
//! ```text
//! base frames ──► reader thread ──► workers: decode, patch, SHA-256 ──► in order ──► Chunk
//!                 (one credit per          (parallel)                  (reorder)    + slot
//!                  chunk in flight)
//! ```
//!
//! At most a few chunks are in flight (see [`ComposeOptions`]), so memory stays in the
//! tens of MiB whatever the image size. Secrets-slot bytes supplied at flash time are
//! written over the verified chunk: the composed table hashes the zeroed slot.
//!
//! The whole path, builder then flasher:
//!
//! ```
//! use std::io::{Cursor, Read};
//! use metis_core::image::base::{write_base, BaseOptions};
//! use metis_core::image::compose::{compose_table, ComposeOptions, Composer};
//! use metis_core::image::patch::Patch;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Builder, once per class: the golden image becomes the seekable base.
//! let golden = vec![7u8; 300_000];
//! let mut base = Vec::new();
//! let options = BaseOptions::default().with_chunk_size(64 << 10);
//! let base_table = write_base(&golden[..], &mut base, &options)?.table;
//!
//! // Builder, per node: the injected extents (the secrets slot at 1000..1016 zeroed)
//! // and the composed table that goes into the signed config.
//! let patch = Patch::from_extents(300_000, [(100, b"titan-db".to_vec()), (1000, vec![0; 16])])?;
//! let table = compose_table(Cursor::new(&base), &base_table, &patch)?;
//! let patch_layer = patch.encode()?;
//!
//! // Flasher: verify every chunk, then fill the slot with the decrypted secrets.
//! let patch = Patch::decode(&patch_layer)?;
//! let mut card = Vec::new();
//! Composer::new(Cursor::new(base), table, patch, ComposeOptions::default())?
//!     .with_slot(1000, b"k3s-token-secret".to_vec())?
//!     .into_reader()
//!     .read_to_end(&mut card)?;
//! assert_eq!(&card[100..108], b"titan-db");
//! assert_eq!(&card[1000..1016], b"k3s-token-secret");
//! assert_eq!(card.len(), golden.len());
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Seek};
use std::sync::{Arc, Mutex};

use zstd::bulk::Decompressor;

use super::base::{decode_frame, default_threads, new_decompressor, BaseError, BaseReader};
use super::chunks::{is_all_zero, ChunkHash, ChunkLayout, ChunkTable, ZeroHashes, MAX_CHUNK_SIZE};
use super::patch::{Patch, PatchError};
use super::pipeline::{self, Feeder, Ordered, Stopped};

/// The bytes of every all-zero chunk handed out without decoding. Allocated on
/// first use with calloc (`vec![0; n]`), so untouched pages cost no resident
/// memory — and unlike a zero-filled `static` array, nothing lands in the
/// binary's read-only data (a 16 MiB static made the flasher 16 MiB larger).
fn zeros() -> &'static [u8] {
    static ZEROS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZEROS.get_or_init(|| vec![0; MAX_CHUNK_SIZE as usize])
}

/// Decoded bytes compose keeps in flight, besides the chunk the caller holds: with 4 MiB
/// chunks, 6 chunks (plus at most as many compressed frames).
const IN_FLIGHT_BUDGET: usize = 24 << 20;

/// Why composing a card failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// Reading or decoding the base failed (the error names the chunk).
    #[error(transparent)]
    Base(#[from] BaseError),
    /// The patch does not fit the image.
    #[error(transparent)]
    Patch(#[from] PatchError),
    /// A chunk's SHA-256 is not the one in the chunk table.
    #[error("chunk {chunk} at byte offset {offset}: SHA-256 is {actual}, the chunk table says {expected} (base or patch corrupt, or not the ones the table was made for)")]
    HashMismatch {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// Hash in the chunk table.
        expected: ChunkHash,
        /// Hash of the bytes composed.
        actual: ChunkHash,
    },
    /// The secrets slot does not lie inside the image.
    #[error("secrets slot at byte offset {offset} ({len} bytes) does not fit in the {image_size}-byte image")]
    SlotOutOfRange {
        /// Slot offset.
        offset: u64,
        /// Slot length.
        len: u64,
        /// Image size.
        image_size: u64,
    },
    /// A chunk index past the end of the image was requested.
    #[error("chunk {chunk} requested, but the image has {count} chunks")]
    ChunkOutOfRange {
        /// Requested chunk.
        chunk: usize,
        /// Chunks in the image.
        count: usize,
    },
    /// A decode worker could not start or panicked.
    #[error("a decode worker failed: {0}")]
    Worker(String),
}

/// How to compose.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ComposeOptions {
    /// Decode worker threads (at least 1).
    pub threads: usize,
    /// Hand out chunks the composed table marks all-zero (and no patch extent touches)
    /// without reading or decoding their frames. Their bytes are still exactly what the
    /// signed table hashes; turn this off to check every frame of the base.
    pub skip_zero_chunks: bool,
}

impl Default for ComposeOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            skip_zero_chunks: true,
        }
    }
}

impl ComposeOptions {
    /// These options with `threads` decode workers.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// These options with zero-chunk skipping on or off.
    pub fn with_skip_zero_chunks(mut self, skip: bool) -> Self {
        self.skip_zero_chunks = skip;
        self
    }
}

/// One verified chunk of the card image.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Chunk index.
    pub index: usize,
    /// Byte offset in the image.
    pub offset: u64,
    /// The chunk's bytes (secrets slot filled in, if one was given). A chunk handed
    /// out without decoding borrows a shared static buffer of zeros.
    pub data: Cow<'static, [u8]>,
    /// Whether `data` is all zeros (a flasher may skip writing it on a discarded card).
    pub is_zero: bool,
}

impl fmt::Debug for Chunk {
    // The data may hold secrets-slot bytes; never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("index", &self.index)
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .field("is_zero", &self.is_zero)
            .finish()
    }
}

/// Secrets bytes written over the image at flash time, after verification.
struct Slot {
    offset: u64,
    /// Wiped when dropped.
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

/// Everything a worker needs to turn a frame into a verified chunk.
struct Plan {
    table: ChunkTable,
    patch: Patch,
    slot: Option<Slot>,
    skip_zero_chunks: bool,
    /// SHA-256 of zeros for the full and the last chunk length.
    zero_hashes: [(usize, ChunkHash); 2],
}

impl Plan {
    fn new(table: ChunkTable, patch: Patch, skip_zero_chunks: bool) -> Result<Self, ComposeError> {
        if patch.image_size() != table.image_size() {
            return Err(PatchError::ImageSize {
                patch: patch.image_size(),
                image: table.image_size(),
            }
            .into());
        }
        let layout = table.layout();
        let mut zeros = ZeroHashes::default();
        let full = layout.chunk_size() as usize;
        let last = layout.chunk_len(layout.chunk_count().saturating_sub(1));
        Ok(Self {
            zero_hashes: [(full, zeros.get(full)), (last, zeros.get(last))],
            table,
            patch,
            slot: None,
            skip_zero_chunks,
        })
    }

    fn layout(&self) -> ChunkLayout {
        self.table.layout()
    }

    /// Whether chunk `index` can be handed out without its frame.
    fn skips(&self, index: usize) -> bool {
        self.skip_zero_chunks
            && self.table.is_zero(index)
            && !self.patch.touches(self.layout().chunk_range(index))
    }

    fn zero_hash(&self, len: usize) -> ChunkHash {
        match self.zero_hashes.iter().find(|(l, _)| *l == len) {
            Some((_, hash)) => *hash,
            None => ChunkHash::of_zeros(len),
        }
    }

    /// Decodes into `buffer` (unless skipped), patches, verifies, then fills the slot.
    fn build_chunk(
        &self,
        index: usize,
        frame: Option<&[u8]>,
        decoder: &mut zstd::bulk::Decompressor<'_>,
        buffer: impl FnOnce() -> Vec<u8>,
    ) -> Result<Chunk, ComposeError> {
        let layout = self.layout();
        let range = layout.chunk_range(index);
        let len = layout.chunk_len(index);
        let (mut data, actual) = match frame {
            None => (Cow::Borrowed(&zeros()[..len]), self.zero_hash(len)),
            Some(frame) => {
                let mut data = buffer();
                decode_frame(decoder, layout, index, frame, &mut data)?;
                self.patch.apply(range.start, &mut data);
                let hash = ChunkHash::of(&data);
                (Cow::Owned(data), hash)
            }
        };
        let expected = self.table.hash(index);
        if actual != expected {
            return Err(ComposeError::HashMismatch {
                chunk: index,
                offset: range.start,
                expected,
                actual,
            });
        }
        let mut is_zero = self.table.is_zero(index);
        if let Some(slot) = &self.slot {
            let slot_end = slot.offset + slot.bytes.len() as u64;
            let start = slot.offset.max(range.start);
            let end = slot_end.min(range.end);
            if start < end {
                let dst = &mut data.to_mut()
                    [(start - range.start) as usize..(end - range.start) as usize];
                dst.copy_from_slice(
                    &slot.bytes[(start - slot.offset) as usize..(end - slot.offset) as usize],
                );
                is_zero = is_zero && is_all_zero(dst);
            }
        }
        Ok(Chunk {
            index,
            offset: range.start,
            data,
            is_zero,
        })
    }
}

/// Composes a node's card from a class base (`R`, seekable zstd) and a node patch,
/// checked against the composed chunk table.
pub struct Composer<R> {
    base: BaseReader<R>,
    plan: Plan,
    threads: usize,
    decoder: Option<zstd::bulk::Decompressor<'static>>,
    frame: Vec<u8>,
}

impl<R> fmt::Debug for Composer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composer")
            .field("table", &self.plan.table)
            .field("patch_extents", &self.plan.patch.extent_count())
            .field(
                "slot",
                &self.plan.slot.as_ref().map(|s| (s.offset, s.bytes.len())),
            )
            .field("threads", &self.threads)
            .finish()
    }
}

impl<R: Read + Seek> Composer<R> {
    /// Opens the base in `base` against `table` (the composed chunk table from the
    /// signed config) and `patch`.
    ///
    /// # Errors
    ///
    /// [`ComposeError::Base`] if the base's seek table is missing or does not fit the
    /// table's layout (naming the chunk); [`ComposeError::Patch`] if the patch is for an
    /// image of another size; [`ComposeError::Worker`] for zero threads.
    pub fn new(
        base: R,
        table: ChunkTable,
        patch: Patch,
        options: ComposeOptions,
    ) -> Result<Self, ComposeError> {
        if options.threads == 0 {
            return Err(ComposeError::Worker("threads must be at least 1".into()));
        }
        let base = BaseReader::open(base, table.layout())?;
        Ok(Self {
            base,
            plan: Plan::new(table, patch, options.skip_zero_chunks)?,
            threads: options.threads,
            decoder: None,
            frame: Vec::new(),
        })
    }

    /// Fills the secrets slot: `bytes` overwrite the image at `offset` in every chunk
    /// handed out, *after* that chunk was verified (the table hashes the zeroed slot).
    ///
    /// # Errors
    ///
    /// [`ComposeError::SlotOutOfRange`] if the slot does not lie inside the image.
    pub fn with_slot(
        mut self,
        offset: u64,
        bytes: impl Into<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Result<Self, ComposeError> {
        let bytes = bytes.into();
        let len = bytes.len() as u64;
        let image_size = self.plan.table.image_size();
        let slot = Slot { offset, bytes };
        if offset.checked_add(len).is_none_or(|end| end > image_size) {
            return Err(ComposeError::SlotOutOfRange {
                offset,
                len,
                image_size,
            });
        }
        self.plan.slot = Some(slot);
        Ok(self)
    }

    /// The composed chunk table.
    pub fn table(&self) -> &ChunkTable {
        &self.plan.table
    }

    /// Reads, verifies and returns chunk `index` (random access, on this thread).
    ///
    /// # Errors
    ///
    /// [`ComposeError::ChunkOutOfRange`], or the error naming the chunk whose frame
    /// could not be read or decoded or whose hash does not match.
    pub fn read_chunk(&mut self, index: usize) -> Result<Chunk, ComposeError> {
        let count = self.plan.table.chunk_count();
        if index >= count {
            return Err(ComposeError::ChunkOutOfRange {
                chunk: index,
                count,
            });
        }
        let decoder = match &mut self.decoder {
            Some(d) => d,
            slot @ None => {
                slot.insert(new_decompressor().map_err(|e| ComposeError::Worker(e.to_string()))?)
            }
        };
        let frame = if self.plan.skips(index) {
            None
        } else {
            self.base.read_frame(index, &mut self.frame)?;
            Some(&self.frame[..])
        };
        self.plan.build_chunk(index, frame, decoder, Vec::new)
    }
}

impl<R: Read + Seek + Send + 'static> Composer<R> {
    /// Every chunk in order, decoded by worker threads and verified before it is
    /// yielded. The iterator ends after the first error.
    pub fn chunks(self) -> Chunks {
        Chunks::start(self)
    }

    /// The composed card as one byte stream. A chunk that fails verification turns
    /// into an [`io::ErrorKind::InvalidData`] error wrapping the [`ComposeError`]
    /// (reachable with `get_ref`/`into_inner` on the `io::Error`), and every later read
    /// fails too, so a failure never looks like the end of the image.
    pub fn into_reader(self) -> ComposeReader {
        ComposeReader {
            chunks: self.chunks(),
            current: None,
            pos: 0,
            failed: false,
        }
    }
}

/// Buffers handed back for reuse, so steady-state compose does not allocate (and
/// fault in) a fresh chunk-sized buffer per chunk.
#[derive(Debug)]
struct Pool {
    buffers: Mutex<Vec<Vec<u8>>>,
    cap: usize,
}

impl Pool {
    fn new(cap: usize) -> Self {
        Self {
            buffers: Mutex::new(Vec::with_capacity(cap)),
            cap,
        }
    }

    fn take(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_default()
    }

    fn give(&self, buffer: Vec<u8>) {
        if let Ok(mut buffers) = self.buffers.lock() {
            if buffers.len() < self.cap {
                buffers.push(buffer);
            }
        }
    }
}

/// A chunk's compressed frame as the reader thread read it (`None`: the plan
/// skips the chunk), or why it could not.
type DecodeJob = Result<Option<Vec<u8>>, BaseError>;

/// The chunks of a composed card in order; see [`Composer::chunks`].
pub struct Chunks {
    chunk_buffers: Arc<Pool>,
    /// The reader thread reads frames in order; decode workers decode and
    /// verify them.
    workers: Ordered<DecodeJob, Result<Chunk, ComposeError>>,
    next: usize,
    count: usize,
    done: bool,
}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("next", &self.next)
            .field("count", &self.count)
            .finish()
    }
}

impl Chunks {
    fn start<R: Read + Seek + Send + 'static>(composer: Composer<R>) -> Self {
        let Composer {
            mut base,
            plan,
            threads,
            ..
        } = composer;
        let count = plan.table.chunk_count();
        let chunk_size = plan.layout().chunk_size() as usize;
        let in_flight = pipeline::in_flight(threads, chunk_size, IN_FLIGHT_BUDGET);
        let plan = Arc::new(plan);
        let chunk_buffers = Arc::new(Pool::new(in_flight));
        let frame_buffers = Arc::new(Pool::new(in_flight));

        let decode = {
            let (plan, chunk_buffers, frame_buffers) = (
                Arc::clone(&plan),
                Arc::clone(&chunk_buffers),
                Arc::clone(&frame_buffers),
            );
            move |decoder: &mut io::Result<Decompressor<'static>>, index, job: DecodeJob| {
                let decoder = decoder
                    .as_mut()
                    .map_err(|e| ComposeError::Worker(e.to_string()))?;
                let frame = job?;
                let chunk =
                    plan.build_chunk(index, frame.as_deref(), decoder, || chunk_buffers.take());
                if let Some(frame) = frame {
                    frame_buffers.give(frame);
                }
                chunk
            }
        };
        // One frame read per chunk of room, in order; a read error goes down
        // the pipeline as that chunk's result, and ends the reading.
        let read_frames = move |mut feeder: Feeder<DecodeJob>| {
            for index in 0..count {
                if feeder.wait_for_room().is_err() {
                    return; // consumer gone
                }
                let job = if plan.skips(index) {
                    Ok(None)
                } else {
                    let mut frame = frame_buffers.take();
                    base.read_frame(index, &mut frame).map(|()| Some(frame))
                };
                let failed = job.is_err();
                if feeder.send(job).is_err() || failed {
                    return;
                }
            }
        };
        let workers = Ordered::start_with_producer(
            threads.min(in_flight),
            in_flight,
            new_decompressor,
            decode,
            read_frames,
        );
        Self {
            chunk_buffers,
            workers,
            next: 0,
            count,
            done: false,
        }
    }

    /// Number of chunks the image has.
    pub fn chunk_count(&self) -> usize {
        self.count
    }

    /// Hands a chunk's buffer back for reuse once the caller is done with it
    /// (optional; saves an allocation and page faults per chunk).
    pub fn recycle(&self, chunk: Chunk) {
        if let Cow::Owned(buffer) = chunk.data {
            self.chunk_buffers.give(buffer);
        }
    }
}

impl Iterator for Chunks {
    type Item = Result<Chunk, ComposeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.count {
            return None;
        }
        let result = match self.workers.next() {
            Some(Ok(result)) => result,
            Some(Err(Stopped::Panicked)) => Err(ComposeError::Worker(format!(
                "a thread panicked before chunk {}",
                self.next
            ))),
            Some(Err(Stopped::Lost)) | None => Err(ComposeError::Worker(format!(
                "decode threads stopped before chunk {}",
                self.next
            ))),
        };
        match &result {
            Ok(_) => self.next += 1,
            Err(_) => self.done = true,
        }
        Some(result)
    }
}

/// A composed card as a byte stream; see [`Composer::into_reader`].
#[derive(Debug)]
pub struct ComposeReader {
    chunks: Chunks,
    current: Option<Chunk>,
    pos: usize,
    failed: bool,
}

impl Read for ComposeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("composing the image failed earlier"));
        }
        while self.pos == self.current.as_ref().map_or(0, |c| c.data.len()) {
            match self.chunks.next() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    if let Some(done) = self.current.replace(chunk) {
                        self.chunks.recycle(done);
                    }
                    self.pos = 0;
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        let current = &self.current.as_ref().expect("set by the loop above").data;
        let n = buf.len().min(current.len() - self.pos);
        buf[..n].copy_from_slice(&current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The composed chunk table for a node: the base table with every chunk the patch
/// touches decoded from `base`, checked against `base_table`, patched and re-hashed.
///
/// Only touched chunks are read, so this costs a few chunks however large the image.
/// The patch must already leave the secrets slot zeroed.
///
/// # Errors
///
/// [`ComposeError::Base`] or [`ComposeError::HashMismatch`] naming the base chunk that
/// is corrupt; [`ComposeError::Patch`] if the patch is for another image size.
pub fn compose_table(
    base: impl Read + Seek,
    base_table: &ChunkTable,
    patch: &Patch,
) -> Result<ChunkTable, ComposeError> {
    if patch.image_size() != base_table.image_size() {
        return Err(PatchError::ImageSize {
            patch: patch.image_size(),
            image: base_table.image_size(),
        }
        .into());
    }
    let layout = base_table.layout();
    let mut reader = BaseReader::open(base, layout)?;
    let mut hashes = base_table.hashes().to_vec();
    let mut zero: Vec<bool> = (0..layout.chunk_count())
        .map(|i| base_table.is_zero(i))
        .collect();
    let mut previous: Option<usize> = None;
    for extent in patch.extents() {
        for index in layout.chunks_overlapping(extent.range()) {
            if previous.is_some_and(|p| p >= index) {
                continue; // done with an earlier extent
            }
            previous = Some(index);
            let mut data = reader.read_chunk_unverified(index)?;
            let actual = ChunkHash::of(&data);
            if actual != base_table.hash(index) {
                return Err(ComposeError::HashMismatch {
                    chunk: index,
                    offset: layout.chunk_offset(index),
                    expected: base_table.hash(index),
                    actual,
                });
            }
            patch.apply(layout.chunk_offset(index), &mut data);
            hashes[index] = ChunkHash::of(&data);
            zero[index] = is_all_zero(&data);
        }
    }
    let zero_chunks: Vec<usize> = zero
        .iter()
        .enumerate()
        .filter_map(|(i, z)| z.then_some(i))
        .collect();
    Ok(ChunkTable::new(layout, hashes, &zero_chunks)
        .expect("hashes and zero flags computed together"))
}

#[cfg(test)]
mod tests {
    use super::super::base::{write_base, BaseOptions};
    use super::super::chunks::fixtures::{noise, synthetic_image};
    use super::*;
    use std::io::Cursor;

    /// A base, a node image made from it, and everything compose needs.
    struct Fixture {
        image: Vec<u8>,
        modified: Vec<u8>,
        base: Vec<u8>,
        base_table: ChunkTable,
        table: ChunkTable,
        patch: Patch,
    }

    fn base_options(chunk_size: u32) -> BaseOptions {
        BaseOptions {
            chunk_size,
            threads: 2,
            ..BaseOptions::default()
        }
    }

    /// `edits` are (offset, len) ranges of the image overwritten with noise (or zeros
    /// when `len` is even), clamped to the image.
    fn fixture(size: usize, chunk_size: u32, edits: &[(usize, usize)]) -> Fixture {
        let image = synthetic_image(size as u64 + 11, size, chunk_size as usize);
        let mut modified = image.clone();
        for (k, &(offset, len)) in edits.iter().enumerate() {
            if size == 0 {
                break;
            }
            let offset = offset.min(size - 1);
            let len = len.clamp(1, size - offset);
            let bytes = if len % 2 == 0 {
                vec![0; len]
            } else {
                noise(k as u64, len)
            };
            modified[offset..offset + len].copy_from_slice(&bytes);
        }
        let mut base = Vec::new();
        let summary = write_base(&image[..], &mut base, &base_options(chunk_size)).unwrap();
        let patch = Patch::diff(&image[..], &modified[..]).unwrap();
        let table = compose_table(Cursor::new(&base), &summary.table, &patch).unwrap();
        Fixture {
            image,
            modified,
            base,
            base_table: summary.table,
            table,
            patch,
        }
    }

    fn composer(f: &Fixture, threads: usize, skip_zero_chunks: bool) -> Composer<Cursor<Vec<u8>>> {
        let options = ComposeOptions {
            threads,
            skip_zero_chunks,
        };
        Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            f.patch.clone(),
            options,
        )
        .unwrap()
    }

    fn compose_all(f: &Fixture, threads: usize, skip: bool) -> Result<Vec<u8>, ComposeError> {
        let options = ComposeOptions {
            threads,
            skip_zero_chunks: skip,
        };
        let composer = Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            f.patch.clone(),
            options,
        )?;
        let mut out = Vec::new();
        for chunk in composer.chunks() {
            out.extend_from_slice(&chunk?.data);
        }
        Ok(out)
    }

    /// (image size, chunk size, edits as (offset, len)).
    type Case = (usize, u32, Vec<(usize, usize)>);

    fn matrix() -> Vec<Case> {
        let k64 = 64 << 10;
        vec![
            (0, 4096, vec![]),
            (1, 4096, vec![(0, 1)]),
            (4095, 4096, vec![]),
            (4096 * 3 + 7, 4096, vec![(4096, 4096), (4096 * 3 + 6, 1)]),
            (
                k64 as usize * 5,
                k64,
                vec![(100, 3), (k64 as usize - 2, 5), (k64 as usize * 2 + 9, 1)],
            ),
            (
                k64 as usize * 9 + 4321,
                k64,
                vec![(k64 as usize * 8 + 1, 300_000)],
            ),
            (
                (1 << 20) * 3 + 17,
                1 << 20,
                vec![(1 << 20, 2), (3 << 20, 1)],
            ),
            ((4 << 20) * 2 + 1, 4 << 20, vec![(123_457, 4097)]),
        ]
    }

    #[test]
    fn compose_round_trip_matrix() {
        for (size, chunk_size, edits) in matrix() {
            let f = fixture(size, chunk_size, &edits);
            assert_eq!(
                f.table,
                ChunkTable::from_image(&f.modified[..], chunk_size).unwrap()
            );
            for threads in [1, 3] {
                for skip in [true, false] {
                    let out = compose_all(&f, threads, skip).unwrap();
                    assert!(
                        out == f.modified,
                        "size {size} chunk {chunk_size} threads {threads} skip {skip}"
                    );
                }
            }
            // Read adapter, in odd-sized reads.
            let mut reader = composer(&f, 2, true).into_reader();
            let mut out = Vec::new();
            let mut buf = vec![0u8; 3001];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert!(out == f.modified, "reader: size {size} chunk {chunk_size}");
            // Random access, last chunk first.
            let mut c = composer(&f, 1, true);
            for i in (0..f.table.chunk_count()).rev() {
                let chunk = c.read_chunk(i).unwrap();
                let r = f.table.layout().chunk_range(i);
                assert_eq!(chunk.offset, r.start);
                assert!(
                    *chunk.data == f.modified[r.start as usize..r.end as usize],
                    "chunk {i}"
                );
                assert_eq!(chunk.is_zero, is_all_zero(&chunk.data), "chunk {i}");
            }
            let count = f.table.chunk_count();
            assert!(matches!(
                c.read_chunk(count),
                Err(ComposeError::ChunkOutOfRange { .. })
            ));
        }
    }

    #[test]
    fn empty_patch_verifies_the_base() {
        let f = fixture(9 * 4096 + 5, 4096, &[]);
        assert!(f.patch.is_empty());
        assert_eq!(f.table, f.base_table);
        assert!(compose_all(&f, 2, false).unwrap() == f.image);
    }

    #[test]
    fn slot_bytes_land_after_verification() {
        let chunk = 4096usize;
        let f = fixture(10 * chunk + 100, chunk as u32, &[(3 * chunk - 10, 40)]);
        // Slots inside a chunk, across a boundary, over a zero chunk, at the very end.
        for (offset, len) in [
            (100, 10),
            (2 * chunk - 5, 20),
            (chunk, chunk),
            (10 * chunk + 90, 10),
        ] {
            let secret = noise(offset as u64, len);
            let c = composer(&f, 2, true)
                .with_slot(offset as u64, secret.clone())
                .unwrap();
            let mut want = f.modified.clone();
            want[offset..offset + len].copy_from_slice(&secret);
            let chunks: Vec<Chunk> = c.chunks().collect::<Result<_, _>>().unwrap();
            let out: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
            assert!(out == want, "slot at {offset}");
            for c in &chunks {
                assert_eq!(c.is_zero, is_all_zero(&c.data), "chunk {}", c.index);
            }
            let mut c = composer(&f, 1, true)
                .with_slot(offset as u64, secret.clone())
                .unwrap();
            let i = offset / chunk;
            assert!(c.read_chunk(i).unwrap().data[offset - i * chunk..]
                .starts_with(&secret[..(chunk - offset % chunk).min(len)]));
        }
        let size = f.table.image_size();
        for (offset, len) in [(size, 1), (size - 1, 2), (u64::MAX, 1)] {
            let err = composer(&f, 1, true)
                .with_slot(offset, vec![1; len])
                .unwrap_err();
            assert!(matches!(err, ComposeError::SlotOutOfRange { .. }), "{err}");
        }
        // The slot never shows up in debug output.
        let c = composer(&f, 1, true)
            .with_slot(0, b"hunter2".to_vec())
            .unwrap();
        assert!(!format!("{c:?}").contains("104, 117"));
    }

    /// Composes every chunk with `read_chunk` on this thread (no thread start-up per
    /// call, so a test can afford one compose per flipped byte).
    fn compose_sync(f: &Fixture, skip: bool) -> Result<Vec<u8>, ComposeError> {
        let options = ComposeOptions {
            threads: 1,
            skip_zero_chunks: skip,
        };
        let mut c = Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            f.patch.clone(),
            options,
        )?;
        let mut out = Vec::new();
        for i in 0..f.table.chunk_count() {
            out.extend_from_slice(&c.read_chunk(i)?.data);
        }
        Ok(out)
    }

    #[test]
    fn every_flipped_base_byte_is_detected_and_named() {
        let chunk = 4096usize;
        let f = fixture(6 * chunk + 333, chunk as u32, &[(5000, 3)]);
        let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
        let frames: Vec<_> = (0..f.table.chunk_count())
            .map(|i| reader.frame_range(i))
            .collect();
        let mut harmless = 0;
        let flips = (0..f.base.len()).flat_map(|at| [(at, 0x01u8), (at, 0x10), (at, 0x80)]);
        for (n, (at, bit)) in flips.enumerate() {
            let bad = f.clone_with_base(|b| b[at] ^= bit);
            let owner = frames.iter().position(|r| r.contains(&(at as u64)));
            let mut results = vec![compose_sync(&bad, false)];
            if n % 17 == 0 {
                results.push(compose_all(&bad, 2, false)); // the threaded path agrees
            }
            for result in results {
                let err = match result {
                    // A few bits of a zstd frame do not change what it decodes to (the
                    // header's "unused" bit, for one). Such a flip cannot be seen in the
                    // content, cannot harm the card, and is caught by the layer's OCI
                    // digest; anything that changes a byte of output must fail.
                    Ok(out) => {
                        assert!(
                            out == f.modified,
                            "flip {bit:#x} at {at} (chunk {owner:?}) changed the output undetected"
                        );
                        harmless += 1;
                        continue;
                    }
                    Err(e) => e,
                };
                match owner {
                    Some(i) => {
                        let named = match &err {
                            ComposeError::HashMismatch { chunk, .. }
                            | ComposeError::Base(BaseError::Decode { chunk, .. })
                            | ComposeError::Base(BaseError::DecodedSize { chunk, .. })
                            | ComposeError::Base(BaseError::FrameMissing { chunk, .. }) => {
                                Some(*chunk)
                            }
                            _ => None,
                        };
                        assert_eq!(named, Some(i), "flip {bit:#x} at {at}: {err}");
                        assert!(
                            err.to_string()
                                .starts_with(&format!("chunk {i} at byte offset {}", i * chunk)),
                            "{err}"
                        );
                    }
                    None => assert!(
                        matches!(
                            err,
                            ComposeError::Base(
                                BaseError::SeekTable(_)
                                    | BaseError::FrameCount { .. }
                                    | BaseError::FrameSize { .. }
                                    | BaseError::FrameMissing { .. }
                            )
                        ),
                        "flip {bit:#x} at {at} in the seek table: {err}"
                    ),
                }
            }
            // With zero chunks skipped, a flip in a zero chunk's frame is never read;
            // the output must still be right or the compose must fail.
            if let Ok(out) = compose_sync(&bad, true) {
                assert!(
                    out == f.modified,
                    "flip {bit:#x} at {at} changed the output undetected"
                );
            }
        }
        eprintln!("{harmless} harmless flips of {}", 3 * f.base.len());
        assert!(
            harmless * 100 < f.base.len() * 3,
            "{harmless} harmless flips of {}",
            3 * f.base.len()
        );
    }

    impl Fixture {
        fn clone_with_base(&self, change: impl Fn(&mut Vec<u8>)) -> Fixture {
            let mut base = self.base.clone();
            change(&mut base);
            Fixture {
                image: self.image.clone(),
                modified: self.modified.clone(),
                base,
                base_table: self.base_table.clone(),
                table: self.table.clone(),
                patch: self.patch.clone(),
            }
        }
    }

    #[test]
    fn seek_table_entry_flips_name_the_chunk() {
        let chunk = 4096usize;
        let f = fixture(6 * chunk + 333, chunk as u32, &[]);
        let table_start = f.base.len() - (8 + 7 * 8 + 9);
        // c_size of frame 2 (entries start after the 8-byte skippable header).
        let at = table_start + 8 + 2 * 8;
        let bad = f.clone_with_base(|b| b[at] ^= 0x01);
        let err = compose_all(&bad, 2, false).unwrap_err();
        assert!(
            matches!(
                err,
                ComposeError::Base(BaseError::FrameMissing { chunk: 3, .. })
            ),
            "{err}"
        );
        // d_size of frame 4.
        let at = table_start + 8 + 4 * 8 + 4;
        let bad = f.clone_with_base(|b| b[at] ^= 0x01);
        let err = compose_all(&bad, 2, false).unwrap_err();
        assert!(
            matches!(
                err,
                ComposeError::Base(BaseError::FrameSize {
                    chunk: 4,
                    offset: 16384,
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn flipped_table_hash_names_the_chunk() {
        let chunk = 4096usize;
        let f = fixture(5 * chunk, chunk as u32, &[(10, 1)]);
        for i in 0..f.table.chunk_count() {
            if f.table.is_zero(i) {
                continue; // a zero chunk's hash is checked when the table is built
            }
            let mut hashes = f.table.hashes().to_vec();
            hashes[i].0[7] ^= 1;
            let zeros: Vec<usize> = f.table.zero_chunks().collect();
            let table = ChunkTable::new(f.table.layout(), hashes, &zeros).unwrap();
            let c = Composer::new(
                Cursor::new(f.base.clone()),
                table,
                f.patch.clone(),
                ComposeOptions::default(),
            )
            .unwrap();
            let mut chunks = c.chunks();
            for j in 0..i {
                assert_eq!(chunks.next().unwrap().unwrap().index, j);
            }
            let err = chunks.next().unwrap().unwrap_err();
            assert!(
                matches!(err, ComposeError::HashMismatch { chunk, offset, .. } if chunk == i && offset == (i * 4096) as u64),
                "{err}"
            );
            assert!(chunks.next().is_none(), "iteration ends after an error");
        }
    }

    #[test]
    fn changed_patch_is_detected() {
        let chunk = 4096usize;
        let f = fixture(8 * chunk, chunk as u32, &[(100, 5), (5 * chunk, 33)]);
        let wire = f.patch.encode().unwrap();
        let mut checked = 0;
        for at in 0..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 0x04;
            let Ok(patch) = Patch::decode(&bad) else {
                continue;
            };
            if patch == f.patch {
                continue; // decodes to the same extents: harmless (see patch tests)
            }
            checked += 1;
            let result = Composer::new(
                Cursor::new(f.base.clone()),
                f.table.clone(),
                patch,
                ComposeOptions::default(),
            )
            .and_then(|c| {
                c.chunks()
                    .map(|c| c.map(|c| c.data))
                    .collect::<Result<Vec<_>, _>>()
            });
            assert!(result.is_err(), "flip at {at} went through");
        }
        // A patch with different content must also be caught; build one directly.
        let mut other = f
            .patch
            .extents()
            .map(|e| (e.offset, e.bytes.to_vec()))
            .collect::<Vec<_>>();
        other[0].1[0] ^= 1;
        let patch = Patch::from_extents(f.table.image_size(), other).unwrap();
        let err = Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            patch,
            ComposeOptions::default(),
        )
        .unwrap()
        .chunks()
        .find_map(Result::err)
        .unwrap();
        assert!(
            matches!(
                err,
                ComposeError::HashMismatch {
                    chunk: 0,
                    offset: 0,
                    ..
                }
            ),
            "{err} ({checked} decodable flips)"
        );
        // A patch for another image size is refused up front.
        let err = Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            Patch::empty(1),
            ComposeOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ComposeError::Patch(PatchError::ImageSize { .. })),
            "{err}"
        );
    }

    #[test]
    fn truncated_base_fails_cleanly() {
        let chunk = 4096usize;
        let f = fixture(4 * chunk + 1, chunk as u32, &[(1, 1)]);
        for len in 0..f.base.len() {
            let bad = f.clone_with_base(|b| b.truncate(len));
            let opened = Composer::new(
                Cursor::new(bad.base.clone()),
                f.table.clone(),
                f.patch.clone(),
                ComposeOptions::default(),
            );
            assert!(opened.is_err(), "base truncated to {len} opened");
        }
    }

    #[test]
    fn zero_chunks_are_not_decoded_when_skipping() {
        let chunk = 4096usize;
        let f = fixture(8 * chunk, chunk as u32, &[]);
        assert!(f.table.is_zero(1) && f.table.is_zero(2));
        // Garble chunk 1's frame: skipping never reads it, so compose still succeeds.
        let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
        let r = reader.frame_range(1);
        let bad = f.clone_with_base(|b| b[r.start as usize + 5..r.end as usize].fill(0xAA));
        let chunks: Vec<Chunk> = composer(&bad, 2, true)
            .chunks()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(chunks[1].is_zero && chunks[2].is_zero && !chunks[0].is_zero);
        assert!(
            matches!(chunks[1].data, Cow::Borrowed(_)),
            "zero chunk was decoded"
        );
        assert!(chunks
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .eq(f.modified.iter().copied()));
        // Without skipping it is caught, naming chunk 1.
        let err = compose_all(&bad, 2, false).unwrap_err();
        assert!(
            err.to_string().starts_with("chunk 1 at byte offset 4096"),
            "{err}"
        );
        // A patch extent on a zero chunk forces a decode, which then fails.
        let mut modified = f.image.clone();
        modified[chunk + 10] = 7;
        let patch = Patch::diff(&f.image[..], &modified[..]).unwrap();
        let table = compose_table(Cursor::new(&f.base), &f.base_table, &patch).unwrap();
        assert!(!table.is_zero(1));
        let c = Composer::new(
            Cursor::new(bad.base.clone()),
            table,
            patch,
            ComposeOptions::default(),
        )
        .unwrap();
        assert!(c.chunks().any(|r| r.is_err()));
    }

    #[test]
    fn dropping_the_iterator_early_stops_the_threads() {
        let f = fixture(64 * 4096, 4096, &[]);
        for take in [0, 1, 5] {
            let mut chunks = composer(&f, 3, false).chunks();
            for _ in 0..take {
                chunks.next().unwrap().unwrap();
            }
            drop(chunks); // joins reader and workers; a hang here fails the test run
        }
    }

    #[test]
    fn reader_keeps_failing_after_an_error() {
        let chunk = 4096usize;
        let f = fixture(4 * chunk, chunk as u32, &[]);
        let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
        let r = reader.frame_range(0);
        let bad = f.clone_with_base(|b| b[r.end as usize - 2] ^= 0xff);
        let mut reader = composer(&bad, 2, false).into_reader();
        let mut buf = vec![0u8; 100];
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err
            .get_ref()
            .unwrap()
            .downcast_ref::<ComposeError>()
            .is_some());
        assert!(reader.read(&mut buf).is_err());
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
    }

    #[test]
    fn compose_table_detects_a_corrupt_base_chunk() {
        let chunk = 4096usize;
        let f = fixture(6 * chunk, chunk as u32, &[(3 * chunk + 1, 1)]);
        let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
        let r = reader.frame_range(3);
        let bad = f.clone_with_base(|b| b[(r.start + r.end) as usize / 2] ^= 0x20);
        let err = compose_table(Cursor::new(&bad.base), &f.base_table, &f.patch).unwrap_err();
        assert!(
            err.to_string().starts_with("chunk 3 at byte offset 12288"),
            "{err}"
        );
    }
}
