//! The class base: a golden image in the zstd seekable format.
//!
//! The image is cut into chunks of a fixed uncompressed size (default 4 MiB); each
//! chunk becomes one independent zstd frame (with its content size and content
//! checksum), and a seek table in a trailing skippable frame lists every frame's
//! compressed and uncompressed size. `zstd -d` skips the seek table and yields the raw
//! image; a seekable reader decodes any chunk on its own.
//!
//! We compress and decode the frames ourselves with libzstd in worker threads and
//! log each finished frame in the seek table (`seek_table.rs`, which draws its layout).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use zstd::zstd_safe;

use super::chunks::{
    is_all_zero, read_full, ChunkHash, ChunkLayout, ChunkTable, ChunkTableBuilder, ChunkTableError,
    ZeroHashes, DEFAULT_CHUNK_SIZE,
};
use super::pipeline::{self, Ordered};
use super::seek_table::{Footer, SeekTableWriter, FOOTER_LEN, SKIPPABLE_HEADER_LEN};

/// Default zstd level for the base (the `zstd` CLI's default).
pub const DEFAULT_LEVEL: i32 = 3;

/// Uncompressed bytes the compressor keeps in flight (read, queued, or being
/// compressed): a few chunks, never the image.
const IN_FLIGHT_BUDGET: usize = 32 << 20;

/// Why writing or reading a class base failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// The options are invalid (chunk size, thread count, or level).
    #[error("invalid base options: {0}")]
    Options(String),
    /// The chunk size or layout is invalid.
    #[error(transparent)]
    Layout(#[from] ChunkTableError),
    /// Reading the raw image failed.
    #[error("reading the image at byte offset {offset}")]
    ReadImage {
        /// Byte offset in the image.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the compressed base failed.
    #[error("writing the base at compressed byte offset {offset}")]
    Write {
        /// Byte offset in the compressed output.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// libzstd failed to compress a chunk.
    #[error("compressing chunk {chunk} at byte offset {offset}")]
    Compress {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The image has more chunks than the seekable format can list.
    #[error("the image has more chunks than the zstd seekable format allows")]
    TooManyChunks(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A compression worker thread panicked.
    #[error("a compression worker thread panicked")]
    WorkerPanicked,
    /// Reading the compressed base failed.
    #[error("reading the base at compressed byte offset {offset}")]
    ReadBase {
        /// Byte offset in the compressed base.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The base has no valid seek table at its end (not a seekable zstd file, or
    /// truncated or corrupt).
    #[error("the base has no valid zstd seek table at its end (truncated or corrupt?)")]
    SeekTable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The seek table lists another number of frames than the chunk table has chunks.
    #[error("the base's seek table lists {frames} frames, the chunk table has {chunks} chunks")]
    FrameCount {
        /// Frames in the seek table.
        frames: u32,
        /// Chunks in the chunk table.
        chunks: usize,
    },
    /// A frame's size in the seek table does not fit the chunk.
    #[error("chunk {chunk} at byte offset {offset}: the seek table says its frame is {found} (expected {expected})")]
    FrameSize {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// What the chunk layout allows.
        expected: String,
        /// What the seek table says.
        found: String,
    },
    /// The seek table's frame sizes do not add up to the file: the frame of `chunk`
    /// is not where the seek table puts it.
    #[error("chunk {chunk} at byte offset {offset}: no zstd frame of that chunk at compressed byte offset {compressed_offset} (seek table or frame corrupt)")]
    FrameMissing {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// Where the seek table puts the frame in the compressed base.
        compressed_offset: u64,
    },
    /// A frame failed to decode.
    #[error("chunk {chunk} at byte offset {offset}: zstd frame does not decode (corrupt)")]
    Decode {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A frame decoded to the wrong number of bytes.
    #[error("chunk {chunk} at byte offset {offset}: frame decoded to {found} bytes, expected {expected}")]
    DecodedSize {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk in the image.
        offset: u64,
        /// Bytes expected.
        expected: usize,
        /// Bytes decoded.
        found: usize,
    },
}

/// How to compress a class base.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BaseOptions {
    /// Uncompressed bytes per chunk (and zstd frame); a power of two between
    /// [`MIN_CHUNK_SIZE`](super::chunks::MIN_CHUNK_SIZE) and
    /// [`MAX_CHUNK_SIZE`](super::chunks::MAX_CHUNK_SIZE).
    pub chunk_size: u32,
    /// zstd compression level (1..=22).
    pub level: i32,
    /// Compression worker threads (at least 1). Output does not depend on it.
    pub threads: usize,
}

impl Default for BaseOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            level: DEFAULT_LEVEL,
            threads: default_threads(),
        }
    }
}

impl BaseOptions {
    /// These options with chunks of `chunk_size` bytes.
    pub fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// These options with zstd level `level`.
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// These options with `threads` compression workers.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// Worker threads to use by default: the machine's cores, at least 2, at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// What [`write_base`] produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BaseSummary {
    /// Per-chunk SHA-256 of the raw image and its zero chunks.
    pub table: ChunkTable,
    /// Bytes written (frames and seek table).
    pub compressed_size: u64,
}

/// Compresses the raw golden image read from `image` into a seekable zstd base written
/// to `out`, and hashes every chunk.
///
/// Chunks are compressed by `options.threads` workers, a few chunks in flight, and
/// written in order; the output depends only on the image, the chunk size and the
/// level, never on the thread count.
///
/// # Errors
///
/// [`BaseError`] naming the chunk and byte offset where reading, compressing or
/// writing failed.
pub fn write_base(
    mut image: impl Read,
    mut out: impl Write,
    options: &BaseOptions,
) -> Result<BaseSummary, BaseError> {
    ChunkLayout::new(options.chunk_size, 0)?;
    if options.threads == 0 {
        return Err(BaseError::Options("threads must be at least 1".into()));
    }
    let (min_level, max_level) = (zstd_safe::min_c_level(), zstd_safe::max_c_level());
    if !(min_level..=max_level).contains(&options.level) {
        return Err(BaseError::Options(format!(
            "zstd level {} is outside {min_level}..={max_level}",
            options.level
        )));
    }
    let chunk_size = options.chunk_size as usize;
    let in_flight = pipeline::in_flight(options.threads, chunk_size, IN_FLIGHT_BUDGET);
    let level = options.level;
    let mut workers = Ordered::start(
        options.threads.min(in_flight),
        in_flight,
        move || Compressor::new(level),
        |compressor: &mut io::Result<Compressor>, _, job: CompressJob| match compressor {
            Ok(compressor) => compressor.compress(job),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        },
    );
    let mut writer = FrameWriter {
        out: &mut out,
        written: 0,
        seek_table: SeekTableWriter::default(),
        table: ChunkTableBuilder::new(options.chunk_size),
        next: 0,
        chunk_size: options.chunk_size,
    };
    let mut pool: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut offset = 0u64;
    loop {
        while !workers.has_room() {
            if !writer.write_next(&mut workers, &mut pool)? {
                // Only if every worker ended while jobs were still owed.
                return Err(BaseError::WorkerPanicked);
            }
        }
        let (mut input, output) = pool.pop().unwrap_or_else(|| {
            (
                vec![0u8; chunk_size],
                Vec::with_capacity(zstd_safe::compress_bound(chunk_size)),
            )
        });
        input.resize(chunk_size, 0);
        let n = read_full(&mut image, &mut input)
            .map_err(|source| BaseError::ReadImage { offset, source })?;
        if n == 0 {
            break;
        }
        input.truncate(n);
        workers
            .send(CompressJob {
                input,
                output,
                full: n == chunk_size,
            })
            .map_err(|_| BaseError::WorkerPanicked)?;
        offset += n as u64;
        if n < chunk_size {
            break;
        }
    }
    workers.finish_sending();
    while writer.write_next(&mut workers, &mut pool)? {}
    writer.finish()
}

struct CompressJob {
    input: Vec<u8>,
    output: Vec<u8>,
    /// The chunk has the full chunk size (only the last one may be shorter).
    full: bool,
}

struct CompressedChunk {
    input: Vec<u8>,
    frame: Vec<u8>,
    hash: ChunkHash,
    is_zero: bool,
}

/// One worker's compressor, with what it keeps between chunks.
struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    zero_hashes: ZeroHashes,
    /// A full-size zero chunk always compresses to the same frame; kept.
    zero_frame: Option<Vec<u8>>,
}

impl Compressor {
    fn new(level: i32) -> io::Result<Self> {
        Ok(Self {
            zstd: new_compressor(level)?,
            zero_hashes: ZeroHashes::default(),
            zero_frame: None,
        })
    }

    fn compress(&mut self, job: CompressJob) -> io::Result<CompressedChunk> {
        let CompressJob {
            input,
            mut output,
            full,
        } = job;
        let is_zero = is_all_zero(&input);
        output.clear();
        match (&self.zero_frame, is_zero && full) {
            (Some(frame), true) => output.extend_from_slice(frame),
            _ => {
                self.zstd.compress_to_buffer(&input, &mut output)?;
                if is_zero && full {
                    self.zero_frame = Some(output.clone());
                }
            }
        }
        let hash = if is_zero {
            self.zero_hashes.get(input.len())
        } else {
            ChunkHash::of(&input)
        };
        Ok(CompressedChunk {
            input,
            frame: output,
            hash,
            is_zero,
        })
    }
}

fn new_compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    // A content checksum per frame lets `zstd -t` and any decoder catch a corrupt
    // frame without our table; the content size lets a reader check a frame's header.
    compressor.set_parameter(zstd_safe::CParameter::ChecksumFlag(true))?;
    compressor.set_parameter(zstd_safe::CParameter::ContentSizeFlag(true))?;
    Ok(compressor)
}

/// Writes finished frames in chunk order and keeps the tables.
struct FrameWriter<'w, W: Write> {
    out: &'w mut W,
    written: u64,
    seek_table: SeekTableWriter,
    table: ChunkTableBuilder,
    /// Index of the next chunk to write.
    next: usize,
    chunk_size: u32,
}

impl<W: Write> FrameWriter<'_, W> {
    /// Waits for the next chunk's frame and writes it (its buffers go back to
    /// `pool`); `false` once every chunk sent is written.
    fn write_next(
        &mut self,
        workers: &mut Ordered<CompressJob, io::Result<CompressedChunk>>,
        pool: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<bool, BaseError> {
        let Some(result) = workers.next() else {
            return Ok(false);
        };
        let index = self.next;
        let chunk = result
            .map_err(|_| BaseError::WorkerPanicked)?
            .map_err(|source| BaseError::Compress {
                chunk: index,
                offset: index as u64 * u64::from(self.chunk_size),
                source,
            })?;
        self.out
            .write_all(&chunk.frame)
            .map_err(|source| BaseError::Write {
                offset: self.written,
                source,
            })?;
        self.written += chunk.frame.len() as u64;
        // Frame sizes fit in u32: a chunk is at most 16 MiB.
        self.seek_table
            .log_frame(chunk.frame.len() as u32, chunk.input.len() as u32)
            .map_err(|e| BaseError::TooManyChunks(e.into()))?;
        self.table
            .push(chunk.input.len(), chunk.hash, chunk.is_zero);
        pool.push((chunk.input, chunk.frame));
        self.next += 1;
        Ok(true)
    }

    fn finish(self) -> Result<BaseSummary, BaseError> {
        let bytes = self.seek_table.encode();
        self.out
            .write_all(&bytes)
            .and_then(|()| self.out.flush())
            .map_err(|source| BaseError::Write {
                offset: self.written,
                source,
            })?;
        Ok(BaseSummary {
            table: self.table.finish()?,
            compressed_size: self.written + bytes.len() as u64,
        })
    }
}

/// Random access to the frames of a class base.
///
/// Opening checks the seek table against the chunk layout the signed chunk table gives:
/// the frame count, every frame's uncompressed size, and that the frames and the seek
/// table exactly fill the file.
#[derive(Debug)]
pub struct BaseReader<R> {
    source: R,
    layout: ChunkLayout,
    /// Compressed start offset of each frame, plus the end of the last one.
    frame_starts: Vec<u64>,
}

impl<R: Read + Seek> BaseReader<R> {
    /// Opens the base in `source`, expecting the chunk layout `layout`.
    ///
    /// # Errors
    ///
    /// [`BaseError::SeekTable`] if there is no valid seek table (truncated, not
    /// seekable zstd); [`BaseError::FrameCount`], [`BaseError::FrameSize`] or
    /// [`BaseError::FrameMissing`] (naming the chunk) if the seek table does not fit.
    pub fn open(mut source: R, layout: ChunkLayout) -> Result<Self, BaseError> {
        let file_len = source
            .seek(SeekFrom::End(0))
            .map_err(|source| BaseError::ReadBase { offset: 0, source })?;
        let no_table = |why: &str| BaseError::SeekTable(why.into());
        if file_len < SKIPPABLE_HEADER_LEN + FOOTER_LEN {
            return Err(no_table("file too short"));
        }
        // Check the footer against the signed layout before sizing anything from
        // it: the table is read whole, and its length is the footer's claim.
        let mut footer = [0u8; FOOTER_LEN as usize];
        read_exact_at(&mut source, file_len - FOOTER_LEN, &mut footer)?;
        let footer = Footer::parse(&footer).map_err(no_table)?;
        if footer.frames as usize != layout.chunk_count() {
            return Err(BaseError::FrameCount {
                frames: footer.frames,
                chunks: layout.chunk_count(),
            });
        }
        let table_len = footer.table_len();
        if table_len > file_len {
            return Err(no_table("seek table longer than the file"));
        }
        let mut table = vec![0u8; table_len as usize];
        read_exact_at(&mut source, file_len - table_len, &mut table)?;
        let entries = footer.entries(&table).map_err(no_table)?;
        let mut frame_starts = Vec::with_capacity(layout.chunk_count() + 1);
        let mut frames_end = 0u64;
        for (chunk, &(c_size, d_size)) in entries.iter().enumerate() {
            let len = layout.chunk_len(chunk);
            let bad = |expected: String, found: String| BaseError::FrameSize {
                chunk,
                offset: layout.chunk_offset(chunk),
                expected,
                found,
            };
            if d_size as usize != len {
                return Err(bad(
                    format!("{len} bytes uncompressed"),
                    format!("{d_size} bytes uncompressed"),
                ));
            }
            let bound = max_frame_len(len);
            if c_size == 0 || u64::from(c_size) > bound {
                return Err(bad(
                    format!("1..={bound} bytes compressed"),
                    format!("{c_size} bytes compressed"),
                ));
            }
            frame_starts.push(frames_end);
            frames_end += u64::from(c_size);
        }
        frame_starts.push(frames_end);
        let mut reader = Self {
            source,
            layout,
            frame_starts,
        };
        if frames_end.checked_add(table_len) != Some(file_len) {
            return Err(reader.locate_bad_frame());
        }
        Ok(reader)
    }

    /// The seek table does not add up: name the first chunk whose frame header is not
    /// where the seek table puts it (or the last chunk, if every header is).
    fn locate_bad_frame(&mut self) -> BaseError {
        let count = self.layout.chunk_count();
        let missing = |chunk: usize, at: u64| BaseError::FrameMissing {
            chunk,
            offset: self.layout.chunk_offset(chunk),
            compressed_offset: at,
        };
        for chunk in 0..count {
            let at = self.frame_starts[chunk];
            let mut header = [0u8; 18];
            let n = match self.source.seek(SeekFrom::Start(at)) {
                Ok(_) => read_full(&mut self.source, &mut header).unwrap_or(0),
                Err(_) => 0,
            };
            let ok = matches!(
                zstd_safe::get_frame_content_size(&header[..n]),
                Ok(Some(size)) if size == self.layout.chunk_len(chunk) as u64
            );
            if !ok {
                return missing(chunk, at);
            }
        }
        let last = count.saturating_sub(1);
        missing(last, self.frame_starts.get(last).copied().unwrap_or(0))
    }

    /// The chunk layout.
    pub fn layout(&self) -> ChunkLayout {
        self.layout
    }

    /// Where the frame of chunk `index` lies in the compressed base.
    ///
    /// # Panics
    ///
    /// If `index` is not below the chunk count.
    pub fn frame_range(&self, index: usize) -> Range<u64> {
        self.frame_starts[index]..self.frame_starts[index + 1]
    }

    /// Reads the compressed frame of chunk `index` into `frame`.
    ///
    /// # Errors
    ///
    /// [`BaseError::ReadBase`] if the read fails or the file is shorter than the
    /// seek table says.
    ///
    /// # Panics
    ///
    /// If `index` is not below the chunk count.
    pub fn read_frame(&mut self, index: usize, frame: &mut Vec<u8>) -> Result<(), BaseError> {
        let range = self.frame_range(index);
        // Bounded by max_frame_len at open.
        frame.resize((range.end - range.start) as usize, 0);
        read_exact_at(&mut self.source, range.start, frame)
    }

    /// Reads and decodes chunk `index`, *without* verifying its hash.
    ///
    /// # Errors
    ///
    /// [`BaseError::ReadBase`], [`BaseError::Decode`] or [`BaseError::DecodedSize`],
    /// naming the chunk.
    pub fn read_chunk_unverified(&mut self, index: usize) -> Result<Vec<u8>, BaseError> {
        let mut frame = Vec::new();
        self.read_frame(index, &mut frame)?;
        let mut out = Vec::new();
        let mut decoder = new_decompressor().map_err(|source| BaseError::Decode {
            chunk: index,
            offset: self.layout.chunk_offset(index),
            source,
        })?;
        decode_frame(&mut decoder, self.layout, index, &frame, &mut out)?;
        Ok(out)
    }

    /// The underlying source.
    pub fn into_inner(self) -> R {
        self.source
    }
}

/// Largest compressed frame a chunk of `len` bytes can legitimately have.
fn max_frame_len(len: usize) -> u64 {
    // compress_bound covers the blocks; add room for a frame header and checksum.
    zstd_safe::compress_bound(len) as u64 + 32
}

fn read_exact_at(
    source: &mut (impl Read + Seek),
    offset: u64,
    buf: &mut [u8],
) -> Result<(), BaseError> {
    source
        .seek(SeekFrom::Start(offset))
        .and_then(|_| source.read_exact(buf))
        .map_err(|source| BaseError::ReadBase { offset, source })
}

pub(crate) fn new_decompressor() -> io::Result<zstd::bulk::Decompressor<'static>> {
    zstd::bulk::Decompressor::new()
}

/// Decodes the frame of chunk `index` into `out` (cleared first; its old contents
/// and capacity are reused, never zero-filled).
pub(crate) fn decode_frame(
    decoder: &mut zstd::bulk::Decompressor<'_>,
    layout: ChunkLayout,
    index: usize,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BaseError> {
    let offset = layout.chunk_offset(index);
    let expected = layout.chunk_len(index);
    out.clear();
    // zstd writes into the spare capacity (an over-long frame fails to decode, or
    // shows as a size mismatch in a larger recycled buffer).
    out.reserve_exact(expected);
    decoder
        .decompress_to_buffer(frame, out)
        .map_err(|source| BaseError::Decode {
            chunk: index,
            offset,
            source,
        })?;
    if out.len() != expected {
        return Err(BaseError::DecodedSize {
            chunk: index,
            offset,
            expected,
            found: out.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
