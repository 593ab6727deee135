//! The counterfeit-card probe, before the first write.
//!
//! Fake-capacity cards claim more than they hold and wrap writes around (or drop
//! them) past their real size; the damage shows only when the filesystem fills,
//! typically on the node's first boot, when it grows the root onto memory the card
//! does not have. Before writing anything, we save a set of 4 KiB blocks, write a
//! unique marker into each, flush once, read them all back bypassing the page
//! cache, and put the saved blocks back. A marker that reads back as another
//! marker (wrap-around) or as anything else (dropped writes) means the card does
//! not hold what it claims.
//!
//! # Which blocks
//!
//! A card that drops writes past its real size is caught by any probe past that
//! size: the last block of the claimed capacity and [`SPREAD`] blocks spread over
//! it. A card that wraps writes modulo its real size `R` keeps every block it is
//! given, only at the wrong place; it is caught only when two probes land on the
//! same physical block, i.e. when two probe offsets are congruent modulo `R`. A
//! handful of spread probes does not do that for most `R` (a 1.1 GiB claim over
//! 256 MiB of flash passed with 16), so the probe also places blocks at whole-MiB
//! offsets chosen baby-step/giant-step, whose pairwise differences cover every
//! whole number of MiB up to the claimed capacity:
//!
//! Let `N` be the largest whole number of MiB with a block at `N` MiB inside the
//! claimed capacity (`N MiB + 4 KiB <= claimed`) and `m = ⌈√N⌉`. The whole-MiB
//! offsets, in MiB, are
//!
//! * baby steps `0, 1, …, m − 1`,
//! * giant steps `m, 2m, …, ⌊N/m⌋·m`,
//! * and `N`,
//!
//! about `2√N` blocks: 64 for a 1 GiB claim, 363 for 32 GiB, 725 for 128 GiB (plus
//! the spread ones), a few seconds of 4 KiB I/O on a card.
//!
//! **Claim.** Every `d` with `1 <= d <= N` is the difference `y − x` of two of these
//! offsets. **Proof.** Let `a = ⌈d/m⌉ >= 1`, so `(a − 1)·m < d <= a·m`. If
//! `a·m <= N`, then `y = a·m` is a giant step and `x = a·m − d` lies in
//! `[0, m − 1]`, a baby step. Otherwise `N < a·m`, so `0 <= N − d < a·m − (a − 1)·m
//! = m`: `y = N` and `x = N − d` is a baby step. ∎
//!
//! **Consequence.** For a card whose real size is `R = k` MiB with `1 <= k <= N`
//! (every whole-MiB size short of the claim: all `k < claimed / 1 MiB`, and
//! `k = ⌊claimed / 1 MiB⌋` too when a 4 KiB block fits past it), take
//! `d = k`: the blocks at `x` MiB and `(x + k)` MiB are congruent modulo `R`, and
//! since `x` MiB mod `R` is a whole MiB below `R`, both land entirely on the same
//! physical block. Markers are written in ascending offset order, so the one at
//! `(x + k)` MiB overwrites the one at `x` MiB, which reads back as it: the probe
//! reports [`ProbeError::Counterfeit`] with `aliased_with` set. The unit tests check
//! the claim for every `k` over a range of claimed sizes.
//!
//! **Real sizes that are not whole MiB.** Two whole-MiB offsets alias modulo `R`
//! exactly when their difference is a multiple of `R / gcd(R, 1 MiB)` MiB, so such
//! a card is caught when `R / gcd(R, 1 MiB) <= N`: 256 MiB + 512 KiB (513) on any
//! claim past 513 MiB, but 256 MiB + 4 KiB (65537) only on claims past 64 GiB +
//! 1 MiB. Below that, only a chance alias with a spread probe or the last block
//! catches it, and the read-back after the write only if the image itself reaches
//! past `R`.
//! Flash dies come in whole MiB (mostly powers of two), so a fake's real size
//! normally is whole MiB; firmware that hides an odd number of KiB would fall in
//! this gap. Probing every 4 KiB period instead would take 16 times the blocks.
//! Nor is a real size within the claim's last 4 KiB caught (no whole block fits
//! past it).
//!
//! # Cost
//!
//! Per block: one read to save it, one write of the marker, one read back and one
//! write to restore it, all 4 KiB; markers are written in ascending offset order and
//! flushed once, the saved blocks restored in reverse order (so on a wrapping card
//! the first-written alias ends up holding the original bytes) and flushed once. The
//! read-back after the full write checks the image's range again; this probe covers
//! the capacity beyond it and answers in seconds, before the long write.

use std::io;

use rand_core::{OsRng, RngCore};

use crate::aligned::{round_down, AlignedBuf, ALIGN};
use crate::medium::Medium;

/// Number of blocks spread evenly over the capacity (for cards that drop writes).
pub const SPREAD: u64 = 16;

/// The unit of the wrap-around periods the probe is sure to catch.
pub const MIB: u64 = 1 << 20;

const BLOCK: u64 = ALIGN as u64;
const MAGIC: &[u8; 20] = b"METIS-CAPACITY-PROBE";

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

/// Fills `out` (one block) with the marker for probe `index` at `offset`.
fn marker(nonce: &[u8; 16], index: u64, offset: u64, out: &mut [u8]) {
    let header = MAGIC.len() + nonce.len() + 16;
    out[..MAGIC.len()].copy_from_slice(MAGIC);
    out[MAGIC.len()..MAGIC.len() + 16].copy_from_slice(nonce);
    out[MAGIC.len() + 16..header - 8].copy_from_slice(&index.to_le_bytes());
    out[header - 8..header].copy_from_slice(&offset.to_le_bytes());
    // Fill the rest so a card that keeps only a block's first bytes is caught too.
    let mut x = (u64::from_le_bytes(nonce[..8].try_into().expect("8 bytes")) ^ offset) | 1;
    for word in out[header..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
}

/// Which probe's marker `block` is, if it is exactly one of ours.
fn marker_index(nonce: &[u8; 16], block: &[u8], offsets: &[u64]) -> Option<usize> {
    let at = MAGIC.len() + 16;
    if &block[..MAGIC.len()] != MAGIC || block[MAGIC.len()..at] != nonce[..] {
        return None;
    }
    let index = u64::from_le_bytes(block[at..at + 8].try_into().ok()?);
    let offset = u64::from_le_bytes(block[at + 8..at + 16].try_into().ok()?);
    let i = usize::try_from(index).ok()?;
    if offsets.get(i) != Some(&offset) {
        return None;
    }
    let mut expected = vec![0u8; ALIGN];
    marker(nonce, index, offset, &mut expected);
    (block == &expected[..]).then_some(i)
}

/// The whole-MiB probe offsets (in MiB) for a largest whole MiB `n`: baby steps
/// `0..m`, giant steps `m, 2m, …` up to `n`, and `n` (see the module doc).
fn whole_mib_steps(n: u64) -> impl Iterator<Item = u64> {
    let m = n.isqrt().max(1);
    let m = if m * m < n { m + 1 } else { m };
    (0..m.min(n + 1))
        .chain((1..=n / m).map(move |a| a * m))
        .chain(std::iter::once(n))
}

/// The probe offsets for a medium of `size` bytes, ascending and distinct, each
/// with a whole block inside: the whole-MiB baby and giant steps, [`SPREAD`]
/// blocks spread over the capacity and the last block.
pub fn probe_offsets(size: u64) -> Vec<u64> {
    if size < BLOCK {
        return Vec::new();
    }
    let last_mib = (size - BLOCK) / MIB;
    let mut offsets: Vec<u64> = whole_mib_steps(last_mib)
        .map(|o| o * MIB)
        .chain((0..SPREAD).map(|i| round_down(size / SPREAD * i + size / SPREAD / 2)))
        .chain(std::iter::once(round_down(size - BLOCK)))
        .filter(|o| o + BLOCK <= size)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

fn read_block(medium: &dyn Medium, block: &mut [u8], offset: u64) -> io::Result<()> {
    let n = medium.read_at(block, offset)?;
    if n < block.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("short read of {n} bytes at byte {offset}, inside the capacity"),
        ));
    }
    Ok(())
}

/// Probes `medium`; leaves its bytes as they were (unless the card is fake).
pub fn probe(medium: &dyn Medium) -> Result<(), ProbeError> {
    let claimed = medium.size();
    let offsets = probe_offsets(claimed);
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    // One aligned buffer for every saved block, written back straight from it; it
    // may hold a previous card's secrets, and an AlignedBuf is zeroed on drop.
    let mut saved = AlignedBuf::new(offsets.len() * ALIGN);
    for (&offset, block) in offsets
        .iter()
        .zip(saved.whole_mut().chunks_exact_mut(ALIGN))
    {
        read_block(medium, block, offset).map_err(ProbeError::Io)?;
    }
    let restore = || -> io::Result<()> {
        // Reverse order: on a wrapping card the first-written alias holds its bytes.
        for (i, &offset) in offsets.iter().enumerate().rev() {
            medium.write_at(&saved.whole()[i * ALIGN..(i + 1) * ALIGN], offset)?;
        }
        medium.sync()
    };

    let mut block = AlignedBuf::new(ALIGN);
    let written = (|| -> io::Result<()> {
        for (i, &offset) in offsets.iter().enumerate() {
            marker(&nonce, i as u64, offset, block.whole_mut());
            medium.write_at(block.whole(), offset)?;
        }
        medium.sync()
    })();
    if let Err(e) = written {
        let _ = restore();
        return Err(ProbeError::Io(e));
    }

    let mut expected = vec![0u8; ALIGN];
    let mut bad = None;
    for (i, &offset) in offsets.iter().enumerate() {
        if let Err(e) = read_block(medium, block.whole_mut(), offset) {
            let _ = restore();
            return Err(ProbeError::Io(e));
        }
        marker(&nonce, i as u64, offset, &mut expected);
        if block.whole() != &expected[..] {
            let aliased_with = marker_index(&nonce, block.whole(), &offsets).map(|j| offsets[j]);
            bad = Some((offset, aliased_with));
            break;
        }
    }
    restore().map_err(ProbeError::Io)?;
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
    use std::collections::{BTreeSet, HashMap};
    use std::path::Path;
    use std::sync::Mutex;

    const GIB: u64 = 1 << 30;
    /// 1.1 GiB, as a block device reports it (whole 512-byte sectors).
    const GIB_1_1: u64 = (11 * GIB / 10) / 512 * 512;

    fn whole_mib(size: u64) -> u64 {
        (size - BLOCK) / MIB
    }

    /// For every `k` in `1..=N`: two offsets congruent modulo `k` MiB, checked
    /// directly (residues) on claims small enough, else through the set of
    /// pairwise differences that are whole MiB.
    fn assert_every_whole_mib_wrap_aliases(claimed: u64) {
        let offsets = probe_offsets(claimed);
        let n = whole_mib(claimed);
        if n <= 4096 {
            for k in 1..=n {
                let residues: BTreeSet<u64> = offsets.iter().map(|o| o % (k * MIB)).collect();
                assert!(
                    residues.len() < offsets.len(),
                    "claimed {claimed}: no two probes alias modulo {k} MiB"
                );
            }
            return;
        }
        let mut difference = vec![false; (claimed / MIB + 1) as usize];
        for (i, a) in offsets.iter().enumerate() {
            for b in &offsets[i + 1..] {
                if (b - a) % MIB == 0 {
                    difference[((b - a) / MIB) as usize] = true;
                }
            }
        }
        for k in 1..=n as usize {
            assert!(
                (k..difference.len()).step_by(k).any(|d| difference[d]),
                "claimed {claimed}: no two probes alias modulo {k} MiB"
            );
        }
    }

    #[test]
    fn two_probes_alias_modulo_every_whole_mib_short_of_the_claim() {
        for c in 1..=300u64 {
            assert_every_whole_mib_wrap_aliases(c * MIB);
            assert_every_whole_mib_wrap_aliases(c * MIB + 512);
            assert_every_whole_mib_wrap_aliases(c * MIB + 4096);
            assert_every_whole_mib_wrap_aliases(c * MIB + 777 * 1024);
        }
        for claimed in [
            GIB_1_1,
            3 * GIB,
            4 * GIB - 512,
            32 * GIB,
            128 * GIB,
            GIB << 10,
        ] {
            assert_every_whole_mib_wrap_aliases(claimed);
        }
    }

    #[test]
    fn offsets_are_few_aligned_ascending_and_inside() {
        for size in [
            4096,
            8192,
            MIB,
            MIB + 4096,
            3 * GIB,
            (64 * GIB) + 512,
            128 * GIB,
        ] {
            let o = probe_offsets(size);
            assert!(o.windows(2).all(|w| w[0] < w[1]), "{size}");
            assert!(o.iter().all(|x| x % BLOCK == 0 && x + BLOCK <= size));
            assert_eq!(*o.last().unwrap(), round_down(size - BLOCK));
            assert_eq!(o[0], 0);
            let n = whole_mib(size) as f64;
            let bound = (2.0 * n.sqrt()).ceil() as usize + 2 + SPREAD as usize + 1;
            assert!(o.len() <= bound, "{size}: {} probes > {bound}", o.len());
        }
        assert!(probe_offsets(4095).is_empty());
        let counts: Vec<usize> = [GIB, 32 * GIB, 128 * GIB]
            .iter()
            .map(|&c| probe_offsets(c).len())
            .collect();
        assert_eq!(counts, [65, 380, 742]);
    }

    /// What a card does with a write past its real size.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Past {
        /// Stores it modulo the real size (and reads modulo it).
        Wraps,
        /// Forgets it; reads there return zeros.
        Drops,
    }

    #[derive(Debug, PartialEq)]
    enum Op {
        Read(u64),
        Write(u64),
        Sync,
    }

    /// A card claiming `claimed` bytes over `real` bytes of flash, holding only the
    /// blocks written (so a 128 GiB claim costs nothing). A block never written
    /// holds `original(block)`, so a test sees every byte the probe changes.
    struct FakeCard {
        claimed: u64,
        real: u64,
        past: Past,
        blocks: Mutex<HashMap<u64, Vec<u8>>>,
        ops: Mutex<Vec<Op>>,
    }

    fn original(block: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; ALIGN];
        for (j, word) in bytes.chunks_exact_mut(8).enumerate() {
            let x = (block << 9 | j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            word.copy_from_slice(&x.to_le_bytes());
        }
        bytes
    }

    impl FakeCard {
        fn new(claimed: u64, real: u64, past: Past) -> Self {
            Self {
                claimed,
                real,
                past,
                blocks: Mutex::default(),
                ops: Mutex::default(),
            }
        }

        fn honest(size: u64) -> Self {
            Self::new(size, size, Past::Wraps)
        }

        /// Calls `f(physical block, start in it, range in buf)` for each piece of
        /// `len` bytes at `offset`, or `None` for the dropped pieces.
        fn pieces(
            &self,
            offset: u64,
            len: usize,
            mut f: impl FnMut(Option<(u64, usize)>, usize, usize),
        ) {
            let mut done = 0;
            while done < len {
                let pos = offset + done as u64;
                if self.past == Past::Drops && pos >= self.real {
                    f(None, done, len);
                    return;
                }
                let phys = pos % self.real;
                let within = (phys % BLOCK) as usize;
                let n = (len - done)
                    .min(ALIGN - within)
                    .min((self.real - phys) as usize);
                f(Some((phys / BLOCK, within)), done, done + n);
                done += n;
            }
        }

        /// Whether every physical block holds its original bytes.
        fn is_intact(&self) -> bool {
            let blocks = self.blocks.lock().unwrap();
            blocks.iter().all(|(&b, bytes)| *bytes == original(b))
        }
    }

    impl Medium for FakeCard {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            assert!(offset + buf.len() as u64 <= self.claimed);
            self.ops.lock().unwrap().push(Op::Write(offset));
            let mut blocks = self.blocks.lock().unwrap();
            self.pieces(offset, buf.len(), |at, from, to| {
                if let Some((b, within)) = at {
                    let block = blocks.entry(b).or_insert_with(|| original(b));
                    block[within..within + to - from].copy_from_slice(&buf[from..to]);
                }
            });
            Ok(())
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            assert!(offset + buf.len() as u64 <= self.claimed);
            self.ops.lock().unwrap().push(Op::Read(offset));
            let blocks = self.blocks.lock().unwrap();
            self.pieces(offset, buf.len(), |at, from, to| match at {
                Some((b, within)) => {
                    let span = within..within + to - from;
                    match blocks.get(&b) {
                        Some(held) => buf[from..to].copy_from_slice(&held[span]),
                        None => buf[from..to].copy_from_slice(&original(b)[span]),
                    }
                }
                None => buf[from..to].fill(0),
            });
            Ok(buf.len())
        }
        fn sync(&self) -> io::Result<()> {
            self.ops.lock().unwrap().push(Op::Sync);
            Ok(())
        }
        fn zero_range(&self, _offset: u64, _len: u64) -> io::Result<bool> {
            Ok(false)
        }
        fn size(&self) -> u64 {
            self.claimed
        }
        fn is_direct(&self) -> bool {
            true
        }
        fn is_disk(&self) -> bool {
            true
        }
        fn path(&self) -> &Path {
            Path::new("/dev/fake")
        }
    }

    const CLAIMS: [u64; 4] = [64 * MIB, GIB_1_1, 3 * GIB, 128 * GIB];

    /// Real sizes short of `claimed`: powers of two, other whole MiB, the largest
    /// whole MiB below the claim and the one below that.
    fn real_sizes(claimed: u64) -> Vec<u64> {
        let mut reals: Vec<u64> = (0..40)
            .map(|i| MIB << i)
            .chain([3, 100, 257, 1000, 3000].map(|k| k * MIB))
            .chain([whole_mib(claimed) * MIB, (claimed / MIB - 1) * MIB])
            .filter(|&r| r < claimed)
            .collect();
        reals.sort_unstable();
        reals.dedup();
        reals
    }

    fn expect_counterfeit(card: &FakeCard) -> (u64, Option<u64>) {
        match probe(card) {
            Err(ProbeError::Counterfeit {
                claimed,
                offset,
                aliased_with,
            }) => {
                assert_eq!(claimed, card.claimed);
                (offset, aliased_with)
            }
            other => panic!(
                "claimed {} over {} real ({:?}): {other:?}",
                card.claimed, card.real, card.past
            ),
        }
    }

    #[test]
    fn a_card_wrapping_at_any_whole_mib_is_caught_and_left_as_it_was() {
        for claimed in CLAIMS {
            for real in real_sizes(claimed) {
                let card = FakeCard::new(claimed, real, Past::Wraps);
                let (offset, aliased_with) = expect_counterfeit(&card);
                let other = aliased_with
                    .unwrap_or_else(|| panic!("{claimed} over {real}: no alias reported"));
                assert!(
                    other > offset && (other - offset) % real == 0,
                    "{claimed} over {real}"
                );
                assert!(card.is_intact(), "{claimed} over {real}: not restored");
            }
        }
    }

    #[test]
    fn a_card_dropping_writes_past_its_real_size_is_caught() {
        for claimed in CLAIMS {
            for real in real_sizes(claimed) {
                let card = FakeCard::new(claimed, real, Past::Drops);
                let (offset, aliased_with) = expect_counterfeit(&card);
                assert!(
                    offset >= real && aliased_with.is_none(),
                    "{claimed} over {real}"
                );
                assert!(card.is_intact(), "{claimed} over {real}: not restored");
            }
        }
    }

    #[test]
    fn real_sizes_off_the_whole_mib_are_caught_where_the_doc_says() {
        // R / gcd(R, 1 MiB) <= N: 513 for 256.5 MiB, 65537 for 256 MiB + 4 KiB.
        for (claimed, real) in [
            (GIB_1_1, 256 * MIB + 512 * 1024),
            (128 * GIB, 256 * MIB + 4096),
        ] {
            let card = FakeCard::new(claimed, real, Past::Wraps);
            let (offset, aliased_with) = expect_counterfeit(&card);
            assert!(aliased_with.is_some_and(|o| (o - offset) % real == 0));
            assert!(card.is_intact());
        }
    }

    #[test]
    fn an_honest_card_passes_untouched_at_the_cost_promised() {
        for size in CLAIMS.into_iter().chain([4096, MIB + 8192, 3 * GIB + 512]) {
            let card = FakeCard::honest(size);
            probe(&card).unwrap_or_else(|e| panic!("{size}: false alarm {e:?}"));
            assert!(card.is_intact(), "{size}: not restored");
            // Save ascending, markers ascending, one flush, read back, restore in
            // reverse, one flush: nothing else.
            let offsets = probe_offsets(size);
            let expected: Vec<Op> = (offsets.iter().map(|&o| Op::Read(o)))
                .chain(offsets.iter().map(|&o| Op::Write(o)))
                .chain([Op::Sync])
                .chain(offsets.iter().map(|&o| Op::Read(o)))
                .chain(offsets.iter().rev().map(|&o| Op::Write(o)))
                .chain([Op::Sync])
                .collect();
            assert!(*card.ops.lock().unwrap() == expected, "{size}");
        }
    }

    #[test]
    fn only_an_exact_marker_of_this_run_counts_as_an_alias() {
        let nonce = [7u8; 16];
        let offsets = [0, MIB, 2 * MIB];
        let mut block = vec![0u8; ALIGN];
        marker(&nonce, 1, MIB, &mut block);
        assert_eq!(marker_index(&nonce, &block, &offsets), Some(1));
        assert_eq!(marker_index(&[8u8; 16], &block, &offsets), None);
        assert_eq!(marker_index(&nonce, &block, &[0, 2 * MIB, MIB]), None);
        block[ALIGN - 1] ^= 1;
        assert_eq!(marker_index(&nonce, &block, &offsets), None);
    }
}
