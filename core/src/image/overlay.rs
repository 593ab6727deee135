//! Copy-on-write block overlay over a read-only golden image.
//!
//! Reads fall through to the golden file; writes land in an in-memory map of
//! dirty 4 KiB blocks. A node therefore costs what it changes, not the size of
//! the card, and the node patch is exactly [`Overlay::dirty_extents`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Granularity of the overlay: a write dirties every 4 KiB block it touches.
///
/// 4 KiB matches ext4's block size and the page size, so a changed filesystem
/// block maps to one overlay block.
pub const OVERLAY_BLOCK: u64 = 4096;
const BLOCK: usize = OVERLAY_BLOCK as usize;

/// A byte range of the card image: `len` bytes starting at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    /// First byte, from the start of the image.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// `Read + Write + Seek` over a read-only base, keeping writes in memory.
///
/// The image cannot grow: a write past the end of the base is an error, as it
/// would be on a card of that size.
#[derive(Debug)]
pub struct Overlay<B = File> {
    base: B,
    len: u64,
    pos: u64,
    dirty: BTreeMap<u64, Box<[u8; BLOCK]>>,
}

impl Overlay<File> {
    /// An overlay over `base`, whose current length is the image size.
    pub fn new(base: File) -> io::Result<Self> {
        let len = base.metadata()?.len();
        Ok(Self::with_len(base, len))
    }

    /// Fills `buf` with the image's bytes at `offset`, through `&self`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / OVERLAY_BLOCK;
            let within = (at % OVERLAY_BLOCK) as usize;
            let n = (BLOCK - within).min(buf.len() - done);
            match self.dirty.get(&index) {
                Some(block) => buf[done..done + n].copy_from_slice(&block[within..within + n]),
                None => {
                    // One base read for the whole run of clean blocks ahead.
                    let next_dirty = self
                        .dirty
                        .range(index + 1..)
                        .next()
                        .map_or(u64::MAX, |(&i, _)| i * OVERLAY_BLOCK);
                    let n = ((next_dirty - at) as usize).min(buf.len() - done);
                    read_exact_at(&self.base, &mut buf[done..done + n], at)?;
                    done += n;
                    continue;
                }
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl<B: Read + Seek> Overlay<B> {
    /// An overlay over any seekable base of `len` bytes.
    pub fn with_len(base: B, len: u64) -> Self {
        Overlay {
            base,
            len,
            pos: 0,
            dirty: BTreeMap::new(),
        }
    }

    /// Size of the image in bytes (that of the base).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty image.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory for dirty blocks.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty.len() as u64 * OVERLAY_BLOCK
    }

    /// The changed ranges of the image: sorted, coalesced, clipped to its size.
    ///
    /// Block-granular (4 KiB) except for a last block cut by the image's end.
    pub fn dirty_extents(&self) -> Vec<Extent> {
        let mut extents: Vec<Extent> = Vec::new();
        for &index in self.dirty.keys() {
            let offset = index * OVERLAY_BLOCK;
            let len = OVERLAY_BLOCK.min(self.len - offset);
            match extents.last_mut() {
                Some(last) if last.end() == offset => last.len += len,
                _ => extents.push(Extent { offset, len }),
            }
        }
        extents
    }

    /// Drops dirty blocks whose bytes equal the base's, so that rewriting a
    /// sector with what it already held (a FAT clean flag set then cleared)
    /// is not reported as a change. Reads only the dirty blocks of the base.
    pub fn prune_unchanged(&mut self) -> io::Result<()> {
        let mut base_block = vec![0u8; BLOCK];
        let indices: Vec<u64> = self.dirty.keys().copied().collect();
        for index in indices {
            let n = self.read_base_block(index, &mut base_block)?;
            let block = &self.dirty[&index];
            if block[..n] == base_block[..n] {
                self.dirty.remove(&index);
            }
        }
        Ok(())
    }

    /// Reads the base's bytes of block `index` into `buf`; returns how many
    /// belong to the image (less than a block only at its end).
    fn read_base_block(&mut self, index: u64, buf: &mut [u8]) -> io::Result<usize> {
        let offset = index * OVERLAY_BLOCK;
        let n = OVERLAY_BLOCK.min(self.len - offset) as usize;
        self.base.seek(SeekFrom::Start(offset))?;
        self.base.read_exact(&mut buf[..n])?;
        buf[n..].fill(0);
        Ok(n)
    }

    /// Reads `buf.len()` bytes at `offset` from the base, bypassing the overlay.
    pub fn read_base_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.base.seek(SeekFrom::Start(offset))?;
        self.base.read_exact(buf)
    }
}

impl<B: Read + Seek> Read for Overlay<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.len - self.pos) as usize;
        let mut done = 0;
        while done < want {
            let at = self.pos + done as u64;
            let index = at / OVERLAY_BLOCK;
            let within = (at % OVERLAY_BLOCK) as usize;
            if let Some(block) = self.dirty.get(&index) {
                let n = (BLOCK - within).min(want - done);
                buf[done..done + n].copy_from_slice(&block[within..within + n]);
                done += n;
                continue;
            }
            // One base read for the whole run of clean blocks ahead.
            let next_dirty = self
                .dirty
                .range(index + 1..)
                .next()
                .map_or(u64::MAX, |(&i, _)| i * OVERLAY_BLOCK);
            let n = ((next_dirty - at) as usize).min(want - done);
            self.base.seek(SeekFrom::Start(at))?;
            self.base.read_exact(&mut buf[done..done + n])?;
            done += n;
        }
        self.pos += done as u64;
        Ok(done)
    }
}

impl<B: Read + Seek> Write for Overlay<B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write of {} bytes at {} goes past the end of the {}-byte image",
                    buf.len(),
                    self.pos,
                    self.len
                ),
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = self.pos + done as u64;
            let index = at / OVERLAY_BLOCK;
            let within = (at % OVERLAY_BLOCK) as usize;
            let n = (BLOCK - within).min(buf.len() - done);
            if !self.dirty.contains_key(&index) {
                let mut block = Box::new([0u8; BLOCK]);
                if n < BLOCK {
                    self.read_base_block(index, &mut block[..])?;
                }
                self.dirty.insert(index, block);
            }
            let block = self.dirty.get_mut(&index).expect("inserted above");
            block[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        self.pos += done as u64;
        Ok(done)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<B> Seek for Overlay<B> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = seek_within(self.pos, self.len, pos)?;
        Ok(self.pos)
    }
}

/// `Read + Write + Seek` limited to `[start, start + len)` of an inner stream,
/// with positions relative to `start`: what fatfs and the label probes see.
#[derive(Debug)]
pub struct PartitionView<'a, T> {
    inner: &'a mut T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a, T: Seek> PartitionView<'a, T> {
    /// A view of `len` bytes of `inner` starting at byte `start`.
    pub fn new(inner: &'a mut T, start: u64, len: u64) -> Self {
        PartitionView {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    /// Size of the view in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty view.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Read + Seek> Read for PartitionView<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Write + Seek> Write for PartitionView<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T> Seek for PartitionView<'_, T> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = seek_within(self.pos, self.len, pos)?;
        Ok(self.pos)
    }
}

fn seek_within(current: u64, len: u64, pos: SeekFrom) -> io::Result<u64> {
    let target = match pos {
        SeekFrom::Start(n) => Some(n),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => current.checked_add_signed(d),
    };
    target.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "seek to a negative or overflowing position",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn base(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// The overlay must behave exactly like writing into a copy of the base.
    #[test]
    fn matches_a_plain_copy_over_a_matrix_of_writes() {
        for len in [1usize, 4095, 4096, 4097, 3 * 4096 + 100] {
            for offset in [0usize, 1, 511, 4095, 4096, 5000] {
                for size in [1usize, 2, 4096, 4097, 9000] {
                    if offset + size > len {
                        continue;
                    }
                    let golden = base(len);
                    let mut copy = golden.clone();
                    let mut overlay = Overlay::with_len(Cursor::new(golden.clone()), len as u64);
                    let patch: Vec<u8> = (0..size).map(|i| (i as u8) ^ 0xA5).collect();
                    copy[offset..offset + size].copy_from_slice(&patch);
                    overlay.seek(SeekFrom::Start(offset as u64)).unwrap();
                    overlay.write_all(&patch).unwrap();

                    let mut all = Vec::new();
                    overlay.seek(SeekFrom::Start(0)).unwrap();
                    overlay.read_to_end(&mut all).unwrap();
                    assert_eq!(all, copy, "len {len} offset {offset} size {size}");

                    // Every changed byte is inside a dirty extent.
                    let extents = overlay.dirty_extents();
                    for (i, (a, b)) in golden.iter().zip(&copy).enumerate() {
                        if a != b {
                            assert!(extents
                                .iter()
                                .any(|e| e.offset <= i as u64 && (i as u64) < e.end()));
                        }
                    }
                    let last = extents.last().unwrap();
                    assert!(last.end() <= len as u64);
                }
            }
        }
    }

    #[test]
    fn extents_are_sorted_and_coalesced() {
        let mut overlay = Overlay::with_len(Cursor::new(vec![0u8; 10 * BLOCK]), 10 * OVERLAY_BLOCK);
        for block in [5u64, 1, 2, 3, 8] {
            overlay
                .seek(SeekFrom::Start(block * OVERLAY_BLOCK + 10))
                .unwrap();
            overlay.write_all(b"x").unwrap();
        }
        let extents = overlay.dirty_extents();
        assert_eq!(
            extents,
            vec![
                Extent {
                    offset: 4096,
                    len: 3 * 4096
                },
                Extent {
                    offset: 5 * 4096,
                    len: 4096
                },
                Extent {
                    offset: 8 * 4096,
                    len: 4096
                },
            ]
        );
    }

    #[test]
    fn rewriting_the_same_bytes_is_pruned() {
        let golden = base(3 * BLOCK);
        let mut overlay = Overlay::with_len(Cursor::new(golden.clone()), golden.len() as u64);
        overlay.seek(SeekFrom::Start(100)).unwrap();
        overlay.write_all(&golden[100..5000]).unwrap();
        overlay.seek(SeekFrom::Start(9000)).unwrap();
        overlay.write_all(b"changed").unwrap();
        assert_eq!(overlay.dirty_extents().len(), 1);
        assert_eq!(overlay.dirty_bytes(), 3 * OVERLAY_BLOCK);
        overlay.prune_unchanged().unwrap();
        assert_eq!(
            overlay.dirty_extents(),
            vec![Extent {
                offset: 8192,
                len: 4096
            }]
        );
    }

    #[test]
    fn writes_past_the_end_fail_and_reads_stop_there() {
        let mut overlay = Overlay::with_len(Cursor::new(vec![1u8; 100]), 100);
        overlay.seek(SeekFrom::Start(98)).unwrap();
        assert!(overlay.write_all(b"abc").is_err());
        let mut buf = [0u8; 10];
        overlay.seek(SeekFrom::Start(98)).unwrap();
        assert_eq!(overlay.read(&mut buf).unwrap(), 2);
        assert_eq!(overlay.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn partition_view_is_confined() {
        let mut overlay = Overlay::with_len(Cursor::new(vec![0u8; 3 * BLOCK]), 3 * OVERLAY_BLOCK);
        {
            let mut view = PartitionView::new(&mut overlay, 4096, 4096);
            view.write_all(&[9u8; 4096]).unwrap();
            assert!(view.write_all(b"x").is_err());
            view.seek(SeekFrom::Start(0)).unwrap();
            let mut back = Vec::new();
            view.read_to_end(&mut back).unwrap();
            assert_eq!(back, vec![9u8; 4096]);
        }
        assert_eq!(
            overlay.dirty_extents(),
            vec![Extent {
                offset: 4096,
                len: 4096
            }]
        );
    }
}
