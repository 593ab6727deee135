//! The block-device ioctls the flasher needs, and the only unsafe code in the crate.
//!
//! * `BLKZEROOUT` (`_IO(0x12, 127)`, argument `u64[2]` = start, length in bytes): the
//!   kernel guarantees the range reads back as zeros afterwards, using the device's
//!   write-zeroes command where it has one and writing zero pages where it has not.
//! * `BLKDISCARD` (`_IO(0x12, 119)`, same argument): tells the card the range is unused
//!   (wear levelling). What a discarded range reads back as is not guaranteed, so a
//!   discard is always followed by `BLKZEROOUT` on the same range.
//!
//! Each wrapper passes a pointer to a local `[u64; 2]` that outlives the call, on a
//! file descriptor borrowed from an open `File`: the kernel reads 16 bytes from it and
//! keeps no reference. That is the whole safety argument.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);

/// Zeroes `len` bytes at `offset` (both multiples of the logical block size).
pub fn zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: see the module documentation; `range` lives across the call.
    unsafe { blkzeroout(file.as_raw_fd(), &range) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Discards `len` bytes at `offset` (both multiples of the logical block size).
pub fn discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: see the module documentation; `range` lives across the call.
    unsafe { blkdiscard(file.as_raw_fd(), &range) }
        .map(drop)
        .map_err(io::Error::from)
}
