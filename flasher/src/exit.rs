//! Exit codes of `metis-flash`, one per kind of outcome a script can act on.
//!
//! README's exit-code table is generated from these doc comments by hand; keep them
//! in step.

use std::process::ExitCode;

/// Why `metis-flash` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: the card (or image file) was written and read back correctly.
    Ok = 0,
    /// 1: any other failure, e.g. the operator did not confirm, left a picker with
    /// Esc, or a `trust` command failed.
    Failure = 1,
    /// 2: bad input: command-line usage, or an artifact file (base, chunk table,
    /// patch, slot) that cannot be read or does not fit together. Nothing was written.
    BadInput = 2,
    /// 3: verification failed: a chunk did not match the signed chunk table (before
    /// its write), or the card read back differently from what was written. If
    /// anything had been written, the card's partition table was wiped.
    Verification = 3,
    /// 4: the device was refused by a safety rule (not removable, mounted, system
    /// disk, partition, read-only, too small, counterfeit capacity, in use), or the
    /// disk picker had no disk to offer. Nothing was written.
    DeviceRefused = 4,
    /// 5: an I/O error while writing or reading the card; the card's partition
    /// table was wiped where possible.
    Io = 5,
    /// 130: interrupted (SIGINT/SIGTERM, or Ctrl-C in a picker); the card's
    /// partition table was wiped if anything had been written.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
