//! What debugfs wrote, from its undo file, folded back into the overlay:
//! only the blocks that differ from the golden image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{Ctx, RootEdits, RootfsError};
use crate::image::overlay::{Overlay, OVERLAY_BLOCK};
use crate::image::partition::Partition;

/// Byte ranges (in the filesystem) that debugfs wrote, from its undo file
/// (e2fsprogs' `E2UNDO02` format: a header, then key blocks each followed by
/// the old contents of the ranges its keys name).
pub(super) fn undo_extents(path: &Path) -> Result<Vec<(u64, u64)>, RootfsError> {
    let bad = |detail: String| RootfsError::Undo {
        path: path.to_owned(),
        detail,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        // debugfs creates no undo file when it wrote nothing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut header = [0u8; 512];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("header: {e}")))?;
    if &header[..8] != b"E2UNDO02" {
        return Err(bad("not an E2UNDO02 file".into()));
    }
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let num_keys = u64_at(&header, 8);
    let key_offset = u64_at(&header, 24);
    let block_size = u64::from(u32_at(&header, 32));
    let fs_block_size = u64::from(u32_at(&header, 36));
    if !(1024..=1 << 20).contains(&block_size) || fs_block_size == 0 {
        return Err(bad(format!(
            "block sizes {block_size}/{fs_block_size} out of range"
        )));
    }
    let keys_per_block = block_size / 16 - 1;
    let mut extents = Vec::new();
    let mut key_block = vec![0u8; block_size as usize];
    let mut at = key_offset;
    let mut left = num_keys;
    while left > 0 {
        file.seek(SeekFrom::Start(at * block_size))
            .and_then(|_| file.read_exact(&mut key_block))
            .map_err(|e| bad(format!("key block {at}: {e}")))?;
        if u32_at(&key_block, 0) != 0xCADE_CADE {
            return Err(bad(format!("key block {at} has no magic")));
        }
        at += 1;
        for k in 0..keys_per_block.min(left) {
            let o = 16 + 16 * k as usize;
            let fsblk = u64_at(&key_block, o);
            let size = u64::from(u32_at(&key_block, o + 12));
            extents.push((fsblk * fs_block_size, size));
            at += size.div_ceil(block_size);
        }
        left -= keys_per_block.min(left);
    }
    Ok(extents)
}

pub(super) fn fold_back(
    ctx: &Ctx<'_>,
    overlay: &mut Overlay,
    meta: &Path,
    root: &Partition,
    written: &[(u64, u64)],
) -> Result<RootEdits, RootfsError> {
    // Exactly the ranges debugfs wrote, and nothing around them: around them
    // the metadata copy holds holes where the golden image holds file data
    // (ext4 blocks can be 1 KiB, smaller than an overlay block). The primary
    // superblock is always checked.
    let mut ranges: Vec<(u64, u64)> = written
        .iter()
        .map(|&(offset, len)| (offset, offset + len))
        .chain(std::iter::once((1024, 2048)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (from, to) in ranges {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    let blocks_written = written.iter().map(|&(_, len)| len).sum::<u64>() / 1024;

    let mut meta = File::open(meta).map_err(|e| ctx.io(e))?;
    let mut edited = vec![0u8; OVERLAY_BLOCK as usize];
    let mut golden = vec![0u8; OVERLAY_BLOCK as usize];
    let mut changed = 0;
    for (from, to) in merged {
        let to = to.min(root.len);
        let mut offset = from;
        while offset < to {
            // Pieces end on overlay block boundaries of the card.
            let card = root.start + offset;
            let n = (OVERLAY_BLOCK - card % OVERLAY_BLOCK).min(to - offset) as usize;
            meta.seek(SeekFrom::Start(offset)).map_err(|e| ctx.io(e))?;
            let got = read_full(&mut meta, &mut edited[..n]).map_err(|e| ctx.io(e))?;
            // Past the end of the metadata copy (a partition larger than its
            // filesystem) nothing was written.
            edited[got..n].fill(0);
            overlay
                .seek(SeekFrom::Start(card))
                .and_then(|_| overlay.read_exact(&mut golden[..n]))
                .map_err(|e| ctx.io(e))?;
            if edited[..n] != golden[..n] {
                overlay
                    .seek(SeekFrom::Start(card))
                    .and_then(|_| overlay.write_all(&edited[..n]))
                    .map_err(|e| ctx.io(e))?;
                changed += 1;
            }
            offset += n as u64;
        }
    }
    Ok(RootEdits {
        kib_written: blocks_written,
        pieces_changed: changed,
    })
}

pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
