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

use super::aligned::{round_up, AlignedBuf};
use super::medium::Medium;

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

/// Reads the image's `layout` back from `medium` and checks each chunk against
/// `expected(chunk)`. `done` counts bytes checked; `stop` is polled between blocks.
pub fn read_back(
    medium: Arc<dyn Medium>,
    layout: ChunkLayout,
    expected: &[ChunkHash],
    block_size: usize,
    done: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> Result<(), ReadBackError> {
    let image_size = layout.image_size();
    // Enough blocks in flight that the reader keeps reading while the hasher waits
    // for a CPU, and the other way round.
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(u64, AlignedBuf)>>(3);
    let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..4 {
        let _ = free_tx.send(AlignedBuf::new(block_size));
    }
    let reader = {
        let medium = Arc::clone(&medium);
        std::thread::spawn(move || {
            let mut offset = 0u64;
            while offset < image_size {
                let Ok(mut block) = free_rx.recv() else {
                    return;
                };
                let want = (image_size - offset).min(block.capacity() as u64);
                // Direct reads need an aligned length; read the padding too and ignore it.
                let len = round_up(want) as usize;
                let result = medium
                    .read_at(&mut block.whole_mut()[..len], offset)
                    .map(|n| {
                        block.set_len(n.min(want as usize));
                        (offset, block)
                    });
                let failed = result.is_err();
                if full_tx.send(result).is_err() || failed {
                    return;
                }
                offset += want;
            }
        })
    };
    let result = (|| {
        let mut chunk = 0usize;
        let mut hasher = Sha256::new();
        let mut in_chunk = 0usize;
        let mut offset = 0u64;
        while offset < image_size {
            if stop() {
                return Err(ReadBackError::Interrupted);
            }
            let (at, block) = match full_rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(source)) => return Err(ReadBackError::Io { offset, source }),
                Err(_) => return Err(ReadBackError::Short { offset }),
            };
            debug_assert_eq!(at, offset);
            let want = (image_size - offset).min(block_size as u64) as usize;
            if block.len() < want {
                return Err(ReadBackError::Short {
                    offset: offset + block.len() as u64,
                });
            }
            let mut bytes = block.filled();
            while !bytes.is_empty() {
                let chunk_len = layout.chunk_len(chunk);
                let n = (chunk_len - in_chunk).min(bytes.len());
                hasher.update(&bytes[..n]);
                in_chunk += n;
                bytes = &bytes[n..];
                if in_chunk == chunk_len {
                    let hash = ChunkHash(hasher.finalize_reset().into());
                    if hash != expected[chunk] {
                        return Err(ReadBackError::Mismatch {
                            chunk,
                            offset: layout.chunk_offset(chunk),
                        });
                    }
                    chunk += 1;
                    in_chunk = 0;
                }
            }
            offset += want as u64;
            done.fetch_add(want as u64, Ordering::Relaxed);
            let _ = free_tx.send(block);
        }
        Ok(())
    })();
    drop(full_rx);
    drop(free_tx);
    let _ = reader.join();
    result
}
