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
mod tests;
