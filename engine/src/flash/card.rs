//! The write stage proper: compare a spare card, wipe, write the chunks that
//! need it, read them back (the module docs of [`super`] draw the whole flow).

use std::io::{self, Read, Seek};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metis_core::image::chunks::{ChunkHash, ChunkLayout};
use metis_core::image::compose::{Chunk, Composer};
use zeroize::Zeroize;

use super::marker::{self, CardMarker, Recognition};
use super::verify::{self, ReadBackError};
use super::writer::{WriteState, Writer};
use super::{
    size_text, wipe, wipe_ranges, CardHeld, CardLabel, ChunkCounts, FlashError, WriteMode,
};
use crate::aligned::ALIGN;
use crate::cancel::CancelToken;
use crate::events::{Events, Phase};
use crate::medium::Medium;

/// How [`write_card`] writes, besides the composer.
pub(super) struct Spec<'a> {
    pub(super) node: &'a str,
    pub(super) card: Option<&'a CardLabel>,
    pub(super) compare: bool,
    pub(super) slot_range: Option<Range<u64>>,
    pub(super) mode: WriteMode,
    pub(super) block_size: usize,
}

/// What [`write_card`] measured and found, for the summary.
#[derive(Default)]
pub(super) struct Report {
    pub(super) card_held: Option<CardHeld>,
    pub(super) chunks: ChunkCounts,
    pub(super) compare_seconds: f64,
    pub(super) write_seconds: f64,
    pub(super) verify_seconds: f64,
    pub(super) write_bytes: u64,
}

/// Compares (a spare card), wipes, writes and reads back; see the module docs.
pub(super) fn write_card<R: Read + Seek + Send + 'static>(
    mut composer: Composer<R>,
    medium: &Arc<dyn Medium>,
    spec: &Spec<'_>,
    events: &Events,
    cancel: &CancelToken,
    state: &Arc<WriteState>,
    report: &mut Report,
) -> Result<(), FlashError> {
    let table = composer.table().clone();
    let layout = table.layout();
    let image_size = table.image_size();
    let count = layout.chunk_count();
    let path = medium.path().to_path_buf();
    let io_err = |op: &'static str| {
        let path = path.clone();
        move |source| FlashError::Io { op, path, source }
    };
    report.chunks.total = count;

    // What each chunk must read back as: the signed table's hash, except where the
    // slot's secrets are written over the zeroed slot the table hashes.
    let mut expected: Vec<ChunkHash> = table.hashes().to_vec();
    let slot_chunks = spec
        .slot_range
        .clone()
        .map_or(0..0, |slot| layout.chunks_overlapping(slot));
    for index in slot_chunks {
        let mut chunk = composer.read_chunk(index).map_err(FlashError::Compose)?;
        expected[index] = ChunkHash::of(&chunk.data);
        wipe_chunk(&mut chunk);
    }
    // A disk's first chunk is verified before the wipe below changes anything, so
    // an artifact broken from its start leaves the card as it was.
    let marker = if medium.is_disk() && count > 0 {
        let mut head = composer.read_chunk(0).map_err(FlashError::Compose)?;
        let marker = spec.card.map(|card| {
            CardMarker::new(
                &card.class,
                spec.node,
                card.revision,
                image_size,
                &head.data,
            )
        });
        wipe_chunk(&mut head);
        marker
    } else {
        None
    };

    // A spare card: read it all, note what differs. Nothing is written until the
    // comparison is complete, so an interruption here leaves the card as it was.
    let mut rewrite: Option<Vec<bool>> = None;
    if let (Some(marker), true) = (&marker, spec.compare) {
        match marker::recognise(&**medium, image_size, &marker.class) {
            Ok(Recognition::SameClass(held)) => {
                events.info(format!(
                    "the card holds {} (revision {}) of class {}: comparing it with {} chunk by chunk",
                    held.node, held.revision, held.class, spec.node
                ));
                report.card_held = Some(CardHeld {
                    node: held.node,
                    revision: held.revision,
                    class: held.class,
                });
                let differing = compare(medium, layout, &expected, spec, events, cancel, report)?;
                if differing.is_empty() {
                    events.info(format!(
                        "{}: the card already holds every chunk of the image; nothing to write",
                        spec.node
                    ));
                    report.chunks.skipped = count;
                    return Ok(());
                }
                let mut set = vec![false; count];
                for index in differing {
                    set[index] = true;
                }
                // The wipe below zeroes these areas: their chunks are rewritten too.
                for range in wipe_ranges(medium.size(), image_size, medium.is_direct()) {
                    let range = range.start.min(image_size)..range.end.min(image_size);
                    for index in layout.chunks_overlapping(range) {
                        set[index] = true;
                    }
                }
                rewrite = Some(set);
            }
            Ok(Recognition::Other(why)) => {
                events.info(format!("writing every chunk: {why}"));
            }
            Err(e) => events.info(format!(
                "writing every chunk: the card's Metis marker could not be read ({e})"
            )),
        }
    }
    if cancel.is_cancelled() {
        return Err(FlashError::Interrupted);
    }
    let wanted = |index: usize| rewrite.as_ref().is_none_or(|set| set[index]);
    let chunk_list: Vec<usize> = (0..count).filter(|i| wanted(*i)).collect();
    let write_total: u64 = chunk_list.iter().map(|i| layout.chunk_len(*i) as u64).sum();
    report.chunks.rewritten = chunk_list.len();
    report.chunks.skipped =
        report.chunks.compared - report.chunks.rewritten.min(report.chunks.compared);
    report.write_bytes = write_total;

    // A disk boots as nothing until the last write: its partition table goes first.
    if medium.is_disk() {
        state.touched.store(true, Ordering::SeqCst);
        wipe(&**medium, image_size).map_err(io_err("wiping the partition table of"))?;
        if let Some(marker) = &marker {
            marker::write(&**medium, marker).map_err(io_err("writing the card marker to"))?;
        }
    }

    let meter = events.phase(Phase::Write, write_total);
    let mut writer = Writer::start(
        Arc::clone(medium),
        image_size,
        spec.block_size,
        Arc::clone(state),
    );
    let holds_secrets = |chunk: &Chunk| {
        spec.slot_range.as_ref().is_some_and(|s| {
            s.start < chunk.offset + chunk.data.len() as u64 && chunk.offset < s.end
        })
    };
    let push = |writer: &mut Writer, chunk: &Chunk| -> Result<(), FlashError> {
        let len = chunk.data.len();
        let pushed = if spec.mode == WriteMode::Sparse && chunk.is_zero && len.is_multiple_of(ALIGN)
        {
            writer.push_zeros(chunk.offset, len as u64)
        } else if chunk.is_zero {
            writer.push_zero_bytes(chunk.offset, len as u64)
        } else {
            writer.push(chunk.offset, &chunk.data)
        };
        pushed.map_err(io_err("writing"))?;
        meter.set(state.done.load(Ordering::Relaxed), Some(chunk.index));
        Ok(())
    };
    if rewrite.is_some() && chunk_list.len() * 4 <= count {
        // A few chunks differ: decode just those, here, rather than the whole base
        // on the workers (CPU the card's I/O would hide, but CPU all the same).
        for &index in &chunk_list {
            if cancel.is_cancelled() {
                return Err(FlashError::Interrupted);
            }
            let mut chunk = composer.read_chunk(index).map_err(FlashError::Compose)?;
            push(&mut writer, &chunk)?;
            if holds_secrets(&chunk) {
                wipe_chunk(&mut chunk);
            }
        }
    } else {
        let mut chunks = composer.chunks();
        while let Some(item) = chunks.next() {
            if cancel.is_cancelled() {
                return Err(FlashError::Interrupted);
            }
            let mut chunk = item.map_err(FlashError::Compose)?;
            if wanted(chunk.index) {
                push(&mut writer, &chunk)?;
            }
            // Its buffer goes back to the pool: wipe any decrypted secrets first.
            if holds_secrets(&chunk) {
                wipe_chunk(&mut chunk);
            }
            chunks.recycle(chunk);
        }
    }
    if cancel.is_cancelled() {
        return Err(FlashError::Interrupted);
    }
    writer.finish().map_err(io_err("writing and flushing"))?;
    meter.set(write_total, None);
    report.write_seconds = meter.finish();
    if cancel.is_cancelled() {
        return Err(FlashError::Interrupted);
    }

    let meter = events.phase(Phase::ReadBack, write_total);
    let done = AtomicU64::new(0);
    let tick = || {
        meter.set(done.load(Ordering::Relaxed), None);
        cancel.is_cancelled()
    };
    verify::read_back(
        Arc::clone(medium),
        layout,
        &expected,
        &chunk_list,
        spec.block_size,
        &done,
        &tick,
    )
    .map_err(|e| read_error(e, &path))?;
    report.verify_seconds = meter.finish();
    Ok(())
}

/// Reads every chunk of the card and returns those that differ from `expected`.
fn compare(
    medium: &Arc<dyn Medium>,
    layout: ChunkLayout,
    expected: &[ChunkHash],
    spec: &Spec<'_>,
    events: &Events,
    cancel: &CancelToken,
    report: &mut Report,
) -> Result<Vec<usize>, FlashError> {
    let count = layout.chunk_count();
    let meter = events.phase(Phase::Compare, layout.image_size());
    let done = AtomicU64::new(0);
    let tick = || {
        meter.set(done.load(Ordering::Relaxed), None);
        cancel.is_cancelled()
    };
    let all: Vec<usize> = (0..count).collect();
    let mut differing = Vec::new();
    verify::hash_chunks(
        Arc::clone(medium),
        layout,
        &all,
        spec.block_size,
        &done,
        &tick,
        &mut |index, hash| {
            if hash != expected[index] {
                differing.push(index);
            }
            Ok(())
        },
    )
    .map_err(|e| read_error(e, medium.path()))?;
    report.compare_seconds = meter.finish();
    report.chunks.compared = count;
    report.chunks.differing = differing.len();
    let bytes: u64 = differing.iter().map(|i| layout.chunk_len(*i) as u64).sum();
    events.info(format!(
        "{}: {} of {count} chunks differ ({})",
        spec.node,
        differing.len(),
        size_text(bytes)
    ));
    Ok(differing)
}

/// Zeroes a chunk's buffer if it owns one (it may hold decrypted secrets).
fn wipe_chunk(chunk: &mut Chunk) {
    if let std::borrow::Cow::Owned(bytes) = &mut chunk.data {
        bytes.zeroize();
    }
}

fn read_error(e: ReadBackError, path: &Path) -> FlashError {
    let path = path.to_path_buf();
    match e {
        ReadBackError::Io { offset, source } => FlashError::Io {
            op: "reading back",
            path,
            source: io::Error::new(source.kind(), format!("at byte {offset}: {source}")),
        },
        ReadBackError::Short { offset } => FlashError::Io {
            op: "reading back",
            path,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the medium ends at byte {offset}, before the image does"),
            ),
        },
        ReadBackError::Mismatch { chunk, offset } => FlashError::ReadBack {
            device: path,
            chunk,
            offset,
        },
        ReadBackError::Interrupted => FlashError::Interrupted,
    }
}
