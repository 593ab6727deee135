//! The read-back stage: after the flush, read every chunk of the image back from the
//! medium, bypassing the page cache, and compare its SHA-256 with what was written.
//!
//! ```text
//! reader thread: aligned direct reads of a block ──► bounded queue ──► hash per chunk,
//!                                                                       compare
//! ```
//!
//! Reading through the page cache would hand back the bytes the kernel still holds,
//! not what the card stored, and a counterfeit card that wraps writes around would
//! pass; the medium's direct reads are what make this check mean something.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use metis_core::image::chunks::{ChunkHash, ChunkLayout};
use sha2::{Digest, Sha256};

use crate::aligned::{round_up, AlignedBuf};
use crate::medium::Medium;

/// What the read-back found wrong.
#[derive(Debug)]
pub enum ReadBackError {
    /// Reading the medium failed at `offset`.
    Io {
        /// Byte offset of the failed read.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The medium ended before the image did.
    Short {
        /// Byte offset where the medium ended.
        offset: u64,
    },
    /// A chunk read back with another hash than was written.
    Mismatch {
        /// Chunk index.
        chunk: usize,
        /// Byte offset of the chunk (the first bad offset found).
        offset: u64,
    },
    /// Stopped on request.
    Interrupted,
}

/// Reads the image's `chunks` (ascending indices into `layout`) back from
/// `medium` and checks each against `expected[chunk]`. `done` counts bytes
/// checked; `stop` is polled between blocks.
pub fn read_back(
    medium: Arc<dyn Medium>,
    layout: ChunkLayout,
    expected: &[ChunkHash],
    chunks: &[usize],
    block_size: usize,
    done: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> Result<(), ReadBackError> {
    hash_chunks(
        medium,
        layout,
        chunks,
        block_size,
        done,
        stop,
        &mut |chunk, hash| {
            if hash == expected[chunk] {
                Ok(())
            } else {
                Err(ReadBackError::Mismatch {
                    chunk,
                    offset: layout.chunk_offset(chunk),
                })
            }
        },
    )
}

/// Reads the `chunks` (ascending indices into `layout`) from `medium` with direct
/// reads, a thread ahead of the hashing, and hands each chunk's SHA-256 to
/// `each` in order; the first error `each` returns stops the scan. `done` counts
/// bytes read; `stop` is polled between blocks.
pub fn hash_chunks(
    medium: Arc<dyn Medium>,
    layout: ChunkLayout,
    chunks: &[usize],
    block_size: usize,
    done: &AtomicU64,
    stop: &dyn Fn() -> bool,
    each: &mut dyn FnMut(usize, ChunkHash) -> Result<(), ReadBackError>,
) -> Result<(), ReadBackError> {
    // The pieces to read: each chunk in blocks of at most `block_size`.
    let pieces: Vec<(usize, u64, usize)> = chunks
        .iter()
        .flat_map(|&chunk| {
            let range = layout.chunk_range(chunk);
            (range.start..range.end)
                .step_by(block_size)
                .map(move |at| (chunk, at, (range.end - at).min(block_size as u64) as usize))
        })
        .collect();
    // Enough blocks in flight that the reader keeps reading while the hasher waits
    // for a CPU, and the other way round.
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<AlignedBuf>>(3);
    let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..4 {
        let _ = free_tx.send(AlignedBuf::new(block_size));
    }
    let reader = {
        let medium = Arc::clone(&medium);
        let pieces = pieces.clone();
        std::thread::spawn(move || {
            for (_, offset, want) in pieces {
                let Ok(mut block) = free_rx.recv() else {
                    return;
                };
                // Direct reads need an aligned length; read the padding too and ignore it.
                let len = round_up(want as u64) as usize;
                let result = medium
                    .read_at(&mut block.whole_mut()[..len], offset)
                    .map(|n| {
                        block.set_len(n.min(want));
                        block
                    });
                let failed = result.is_err();
                if full_tx.send(result).is_err() || failed {
                    return;
                }
            }
        })
    };
    let result = (|| {
        // By hand, not through `metis_core::digest::HashingReader`: blocks arrive
        // from the reader thread, not from a `Read`, and one hasher is reset at
        // each chunk's end to give the chunk table's per-chunk hashes.
        let mut hasher = Sha256::new();
        for (i, &(chunk, offset, want)) in pieces.iter().enumerate() {
            if stop() {
                return Err(ReadBackError::Interrupted);
            }
            let block = match full_rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(source)) => return Err(ReadBackError::Io { offset, source }),
                Err(_) => return Err(ReadBackError::Short { offset }),
            };
            if block.len() < want {
                return Err(ReadBackError::Short {
                    offset: offset + block.len() as u64,
                });
            }
            hasher.update(block.filled());
            done.fetch_add(want as u64, Ordering::Relaxed);
            let _ = free_tx.send(block);
            let last_of_chunk = pieces.get(i + 1).is_none_or(|next| next.0 != chunk);
            if last_of_chunk {
                each(chunk, ChunkHash(hasher.finalize_reset().into()))?;
            }
        }
        Ok(())
    })();
    drop(full_rx);
    drop(free_tx);
    let _ = reader.join();
    result
}
