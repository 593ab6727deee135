//! The counterfeit-card probe, before the first write.
//!
//! Fake-capacity cards claim more than they hold and wrap writes around (or drop
//! them) past their real size; the damage shows only when the filesystem fills.
//! Before writing anything, we save 16 blocks spread over the claimed capacity,
//! write a unique marker into each, flush, read them all back bypassing the page
//! cache, and put the saved blocks back. A marker that reads back as another marker
//! (wrap-around) or as anything else means the card does not hold what it claims.
//!
//! The read-back after the full write checks the image's range again; this probe
//! covers the capacity beyond it and answers in a second, before the long write.

use std::io;

use rand_core::{OsRng, RngCore};

use super::aligned::{round_down, AlignedBuf, ALIGN};
use super::medium::Medium;

/// Number of probe points spread over the capacity.
pub const PROBES: u64 = 16;

/// What the probe found.
#[derive(Debug)]
pub enum ProbeError {
    /// The card does not keep what is written where it claims to.
    Counterfeit {
        /// Capacity the card claims.
        claimed: u64,
        /// First probe offset whose marker did not read back.
        offset: u64,
        /// Where that marker's bytes came from instead, if it was another marker.
        aliased_with: Option<u64>,
    },
    /// Reading or writing a probe block failed.
    Io(io::Error),
}

fn marker(nonce: &[u8; 16], index: u64, offset: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(ALIGN);
    m.extend_from_slice(b"METIS-CAPACITY-PROBE");
    m.extend_from_slice(nonce);
    m.extend_from_slice(&index.to_le_bytes());
    m.extend_from_slice(&offset.to_le_bytes());
    // Fill the rest so a card that keeps only a block's first bytes is caught too.
    let mut x = (u64::from_le_bytes(nonce[..8].try_into().expect("8 bytes")) ^ offset) | 1;
    while m.len() < ALIGN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.extend_from_slice(&x.to_le_bytes());
    }
    m.truncate(ALIGN);
    m
}

/// The probe offsets for a medium of `size` bytes: aligned, distinct, the last
/// block included.
pub fn probe_offsets(size: u64) -> Vec<u64> {
    let mut offsets: Vec<u64> = (0..PROBES)
        .map(|i| round_down(size / PROBES * i + size / PROBES / 2))
        .chain(std::iter::once(round_down(
            size.saturating_sub(ALIGN as u64),
        )))
        .filter(|o| o + ALIGN as u64 <= size)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// Probes `medium`; leaves its bytes as they were (unless the card is fake).
pub fn probe(medium: &dyn Medium) -> Result<(), ProbeError> {
    let claimed = medium.size();
    let offsets = probe_offsets(claimed);
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let mut block = AlignedBuf::new(ALIGN);
    let mut saved = Vec::with_capacity(offsets.len());
    for &offset in &offsets {
        medium
            .read_at(block.whole_mut(), offset)
            .map_err(ProbeError::Io)?;
        saved.push(block.whole().to_vec());
    }
    let restore = |saved: &[Vec<u8>]| -> io::Result<()> {
        let mut b = AlignedBuf::new(ALIGN);
        // Reverse order: on a wrapping card the first-written alias holds its bytes.
        for (offset, bytes) in offsets.iter().zip(saved).rev() {
            b.clear();
            b.extend(bytes);
            medium.write_at(b.filled(), *offset)?;
        }
        medium.sync()
    };
    let markers: Vec<Vec<u8>> = offsets
        .iter()
        .enumerate()
        .map(|(i, &o)| marker(&nonce, i as u64, o))
        .collect();
    let written = (|| -> io::Result<()> {
        for (offset, m) in offsets.iter().zip(&markers) {
            block.clear();
            block.extend(m);
            medium.write_at(block.filled(), *offset)?;
        }
        medium.sync()
    })();
    if let Err(e) = written {
        let _ = restore(&saved);
        return Err(ProbeError::Io(e));
    }
    let mut bad = None;
    for (offset, m) in offsets.iter().zip(&markers) {
        if let Err(e) = medium.read_at(block.whole_mut(), *offset) {
            let _ = restore(&saved);
            return Err(ProbeError::Io(e));
        }
        if block.whole() != &m[..] {
            let aliased_with = markers
                .iter()
                .position(|other| block.whole() == &other[..])
                .map(|j| offsets[j]);
            bad = Some((*offset, aliased_with));
            break;
        }
    }
    restore(&saved).map_err(ProbeError::Io)?;
    match bad {
        None => Ok(()),
        Some((offset, aliased_with)) => Err(ProbeError::Counterfeit {
            claimed,
            offset,
            aliased_with,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_spread_aligned_and_inside() {
        for size in [1u64 << 20, 3 << 30, (64 << 30) + 512, 8192] {
            let o = probe_offsets(size);
            assert!(o.len() >= 2 && o.len() <= PROBES as usize + 1, "{size}");
            assert!(o.iter().all(|x| x % ALIGN as u64 == 0 && x + 4096 <= size));
            assert_eq!(*o.last().unwrap(), round_down(size - 4096));
        }
        // A card claiming 4x its real size aliases probe points onto each other.
        let claimed = 4u64 << 30;
        let real = claimed / 4;
        let o = probe_offsets(claimed);
        let wrapped: std::collections::BTreeSet<u64> = o.iter().map(|x| x % real).collect();
        assert!(wrapped.len() < o.len());
    }
}
