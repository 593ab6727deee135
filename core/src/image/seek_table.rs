//! The seek table of the zstd seekable format (zstd's `contrib/seekable_format`):
//! the index after a class base's frames, written by
//! [`write_base`](super::base::write_base) and read by
//! [`BaseReader`](super::base::BaseReader).
//!
//! It is a skippable frame, so `zstd -d` passes over it. All integers are
//! little-endian; `n` is the frame count and `e` the entry size, 8, or 12 when
//! descriptor bit 7 is set:
//!
//! ```text
//! offset       size  field
//! 0            4     skippable-frame magic 0x184D2A5E
//! 4            4     frame size = e * n + 9 (the bytes after this field)
//! 8            e*n   per frame: compressed size (u32), uncompressed size (u32)
//!                    [, low 32 bits of the frame's XXH64 (u32), when e = 12]
//! 8 + e*n      4     frame count n          ┐
//! 12 + e*n     1     descriptor             │ the footer, found from the
//! 13 + e*n     4     seekable magic 0x8F92EAB1 ┘ end of the file
//! ```
//!
//! Descriptor bit 7: per-frame checksums present (Metis writes none); bits 2..6
//! are reserved and must be 0; bits 0..1 are unused. Frame `i` starts at the sum
//! of the compressed sizes of frames `0..i`, from byte 0 of the file.
//!
//! We read and write it here rather than through a seekable-format crate: the
//! reader must check the footer against the signed chunk layout before sizing
//! anything from it (so it parsed the footer itself already), the rest is a
//! loop over `n` pairs, and the one crate for it (zeekstd) turned on zstd's
//! legacy (pre-1.0 format) decoders, ~200 KiB of the flasher that no Metis
//! artifact needs. The tests read zeekstd's tables and have zeekstd read ours.

/// Bytes of the footer: frame count (u32), descriptor (u8), seekable magic (u32).
pub(crate) const FOOTER_LEN: u64 = 9;
/// Bytes of the skippable-frame header: magic (u32) and frame size (u32).
pub(crate) const SKIPPABLE_HEADER_LEN: u64 = 8;
/// The skippable-frame magic the format uses (`ZSTD_MAGIC_SKIPPABLE_START | 0xE`).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// The magic that ends a seekable file.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Most frames a table may list (the reference implementation's
/// `ZSTD_SEEKABLE_MAXFRAMES`).
pub(crate) const MAX_FRAMES: u32 = 0x0800_0000;
/// Descriptor bit 7: entries carry a checksum.
const CHECKSUM_FLAG: u8 = 0x80;
/// Descriptor bits 2..6, reserved.
const RESERVED_BITS: u8 = 0x7C;

/// The last [`FOOTER_LEN`] bytes of a seekable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// How many frames the table lists.
    pub frames: u32,
    /// Whether each entry carries a checksum (12-byte entries).
    checksums: bool,
}

impl Footer {
    /// Parses the footer; the reason is for [`BaseError::SeekTable`](super::base::BaseError::SeekTable).
    pub(crate) fn parse(bytes: &[u8; FOOTER_LEN as usize]) -> Result<Self, &'static str> {
        if le32(bytes, 5) != SEEKABLE_MAGIC {
            return Err("seekable magic number missing");
        }
        if bytes[4] & RESERVED_BITS != 0 {
            return Err("reserved seek table descriptor bits set");
        }
        Ok(Self {
            frames: le32(bytes, 0),
            checksums: bytes[4] & CHECKSUM_FLAG != 0,
        })
    }

    /// Bytes of the whole table, skippable-frame header to footer.
    pub(crate) fn table_len(&self) -> u64 {
        let entry_len: u64 = if self.checksums { 12 } else { 8 };
        SKIPPABLE_HEADER_LEN + u64::from(self.frames) * entry_len + FOOTER_LEN
    }

    /// The frames' (compressed, uncompressed) sizes, from the whole table
    /// (`table`: [`table_len`](Self::table_len) bytes ending with this footer).
    /// Per-frame checksums, if any, are not checked: the signed chunk tables are
    /// what is trusted.
    pub(crate) fn entries(&self, table: &[u8]) -> Result<Vec<(u32, u32)>, &'static str> {
        if table.len() as u64 != self.table_len() {
            return Err("seek table length does not match its frame count");
        }
        if le32(table, 0) != SKIPPABLE_MAGIC {
            return Err("seek table's skippable-frame magic missing");
        }
        if u64::from(le32(table, 4)) != self.table_len() - SKIPPABLE_HEADER_LEN {
            return Err("seek table's frame size does not match its frame count");
        }
        let entry_len = if self.checksums { 12 } else { 8 };
        let body = &table[SKIPPABLE_HEADER_LEN as usize..table.len() - FOOTER_LEN as usize];
        Ok(body
            .chunks_exact(entry_len)
            .map(|entry| (le32(entry, 0), le32(entry, 4)))
            .collect())
    }
}

/// A seek table cannot list more than [`MAX_FRAMES`] frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_FRAMES} frames")]
pub(crate) struct TooManyFrames;

/// Collects each frame's sizes as it is written, then encodes the table.
#[derive(Debug, Default)]
pub(crate) struct SeekTableWriter {
    entries: Vec<(u32, u32)>,
}

impl SeekTableWriter {
    /// Logs the next frame's compressed and uncompressed size; `Err` past
    /// [`MAX_FRAMES`].
    pub(crate) fn log_frame(
        &mut self,
        compressed: u32,
        uncompressed: u32,
    ) -> Result<(), TooManyFrames> {
        if self.entries.len() >= MAX_FRAMES as usize {
            return Err(TooManyFrames);
        }
        self.entries.push((compressed, uncompressed));
        Ok(())
    }

    /// The table, without per-frame checksums.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let frames = self.entries.len() as u32; // at most MAX_FRAMES
        let body_len = 8 * self.entries.len() + FOOTER_LEN as usize;
        let mut out = Vec::with_capacity(SKIPPABLE_HEADER_LEN as usize + body_len);
        out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        for (compressed, uncompressed) in &self.entries {
            out.extend_from_slice(&compressed.to_le_bytes());
            out.extend_from_slice(&uncompressed.to_le_bytes());
        }
        out.extend_from_slice(&frames.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        out
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read as _};

    fn footer_of(table: &[u8]) -> Footer {
        Footer::parse(
            table[table.len() - FOOTER_LEN as usize..]
                .try_into()
                .unwrap(),
        )
        .unwrap()
    }

    fn sizes(n: u32) -> Vec<(u32, u32)> {
        (0..n).map(|i| (100 + 7 * i, 4096 + i)).collect()
    }

    #[test]
    fn round_trip() {
        for n in [0, 1, 2, 1000] {
            let mut writer = SeekTableWriter::default();
            for &(c, d) in &sizes(n) {
                writer.log_frame(c, d).unwrap();
            }
            let table = writer.encode();
            let footer = footer_of(&table);
            assert_eq!(footer.frames, n);
            assert_eq!(footer.table_len(), table.len() as u64);
            assert_eq!(footer.entries(&table).unwrap(), sizes(n), "{n}");
        }
    }

    /// zeekstd (an independent implementation of the format) reads what we write.
    #[test]
    fn zeekstd_reads_ours() {
        for n in [0, 1, 3, 1000] {
            let mut writer = SeekTableWriter::default();
            for &(c, d) in &sizes(n) {
                writer.log_frame(c, d).unwrap();
            }
            let theirs =
                zeekstd::SeekTable::from_seekable(&mut Cursor::new(writer.encode())).unwrap();
            assert_eq!(theirs.num_frames(), n);
            let mut start = 0;
            for (i, &(c, d)) in sizes(n).iter().enumerate() {
                let i = i as u32;
                assert_eq!(theirs.frame_size_comp(i).unwrap(), u64::from(c));
                assert_eq!(theirs.frame_size_decomp(i).unwrap(), u64::from(d));
                assert_eq!(theirs.frame_start_comp(i).unwrap(), start);
                start += u64::from(c);
            }
        }
    }

    /// We read what zeekstd writes, with and without per-frame checksums, and
    /// write the same bytes (bases published before we wrote our own tables
    /// stay byte for byte what a rebuild gives).
    #[test]
    fn we_read_zeekstd_and_write_the_same() {
        for n in [0, 1, 3, 1000] {
            let mut theirs = zeekstd::SeekTable::new();
            let mut ours = SeekTableWriter::default();
            for &(c, d) in &sizes(n) {
                theirs.log_frame(c, d).unwrap();
                ours.log_frame(c, d).unwrap();
            }
            let mut table = Vec::new();
            theirs.into_serializer().read_to_end(&mut table).unwrap();
            let footer = footer_of(&table);
            assert_eq!(footer.entries(&table).unwrap(), sizes(n), "{n}");
            assert_eq!(ours.encode(), table, "{n}");
        }
        // With checksums (12-byte entries): what a table from zstd's own
        // seekable compressor looks like.
        let mut table = Vec::new();
        table.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        table.extend_from_slice(&(2 * 12 + 9u32).to_le_bytes());
        for (c, d, x) in [(10u32, 20u32, 0xdead_beef_u32), (30, 40, 1)] {
            for v in [c, d, x] {
                table.extend_from_slice(&v.to_le_bytes());
            }
        }
        table.extend_from_slice(&2u32.to_le_bytes());
        table.push(CHECKSUM_FLAG);
        table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        let footer = footer_of(&table);
        assert_eq!(footer.table_len(), table.len() as u64);
        assert_eq!(footer.entries(&table).unwrap(), [(10, 20), (30, 40)]);
    }

    #[test]
    fn malformed_tables_are_refused() {
        let mut writer = SeekTableWriter::default();
        for &(c, d) in &sizes(3) {
            writer.log_frame(c, d).unwrap();
        }
        let good = writer.encode();
        let end = good.len();
        // (byte, xor, what the error says)
        for (at, flip, expected) in [
            (end - 1, 0x01, "seekable magic"),
            (end - 5, 0x04, "reserved"),
            (end - 5, 0x40, "reserved"),
            (0, 0x01, "skippable-frame magic"),
            (4, 0x01, "frame size"),
            (end - 9, 0x01, "length"),
        ] {
            let mut table = good.clone();
            table[at] ^= flip;
            let footer: &[u8; 9] = table[end - 9..].try_into().unwrap();
            let err = Footer::parse(footer)
                .and_then(|f| f.entries(&table))
                .unwrap_err();
            assert!(err.contains(expected), "{at} ^ {flip:#x}: {err}");
        }
        // Unused descriptor bits 0..1 are not an error.
        let mut table = good.clone();
        table[end - 5] |= 0x03;
        assert_eq!(footer_of(&table).entries(&table).unwrap(), sizes(3));
    }
}
