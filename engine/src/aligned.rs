//! Buffers aligned for direct I/O, without unsafe code.
//!
//! O_DIRECT needs the buffer address, the file offset and the length to be multiples
//! of the device's logical block size. A `Vec<u8>` gives no alignment guarantee, so
//! we over-allocate by one alignment unit and use the slice starting at the first
//! aligned address inside it.

/// Alignment of every direct-I/O buffer: 4096 covers 512- and 4096-byte sectors.
pub const ALIGN: usize = 4096;

/// A heap buffer whose usable bytes start at a multiple of [`ALIGN`].
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Drop for AlignedBuf {
    // Blocks carry the decrypted secrets slot on its way to and from the card.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.storage);
    }
}

impl AlignedBuf {
    /// A zeroed buffer of `capacity` usable bytes (rounded up to [`ALIGN`]).
    pub fn new(capacity: usize) -> Self {
        let capacity = round_up(capacity.max(1) as u64) as usize;
        let storage = vec![0u8; capacity + ALIGN];
        let start = (ALIGN - storage.as_ptr() as usize % ALIGN) % ALIGN;
        Self {
            storage,
            start,
            len: 0,
        }
    }

    /// Usable bytes.
    pub fn capacity(&self) -> usize {
        self.storage.len() - ALIGN
    }

    /// Whether nothing is filled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    /// Appends as much of `bytes` as fits; returns how much was taken.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.remaining());
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// Sets the filled length (new bytes keep whatever the buffer held).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity());
        self.len = len;
    }

    /// Forgets the contents (capacity stays).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The filled bytes.
    pub fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The whole usable region (aligned start, aligned length).
    pub fn whole(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.capacity()]
    }

    /// The whole usable region, mutable.
    pub fn whole_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        &mut self.storage[self.start..self.start + cap]
    }
}

/// `n` rounded up to a multiple of [`ALIGN`].
pub fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

/// `n` rounded down to a multiple of [`ALIGN`].
pub fn round_down(n: u64) -> u64 {
    n / ALIGN as u64 * ALIGN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_for_every_size() {
        for size in [1, 511, 4096, 4097, 65536, 1 << 20, (4 << 20) + 3] {
            let mut b = AlignedBuf::new(size);
            assert_eq!(b.whole().as_ptr() as usize % ALIGN, 0, "{size}");
            assert_eq!(b.capacity() % ALIGN, 0);
            assert!(b.capacity() >= size);
            let taken = b.extend(&vec![7; size + 10_000]);
            assert_eq!(taken, b.capacity());
            assert_eq!(b.remaining(), 0);
            b.clear();
            b.extend(&[1, 2, 3]);
            assert_eq!(b.filled(), &[1, 2, 3]);
        }
        assert_eq!(round_up(0), 0);
        assert_eq!(round_up(1), 4096);
        assert_eq!(round_down(8191), 4096);
    }
}
