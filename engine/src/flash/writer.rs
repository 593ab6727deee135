//! The write stage: verified chunks in, aligned large writes out.
//!
//! ```text
//! Chunks (decode + verify, worker threads) ──► Writer::push: copy into an aligned
//! block ──► bounded queue (2 blocks) ──► writer thread: pwrite / zero-out
//! ```
//!
//! Bytes of the partition-table area (the first [`HEAD_BYTES`]) never reach the
//! queue: they are held back in memory and written by [`Writer::finish`] only after
//! everything else is on the medium and flushed, so a write that stops early leaves
//! a card with no valid partition table rather than a half-good one.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::aligned::{round_down, round_up, AlignedBuf, ALIGN};
use crate::medium::Medium;

/// The partition-table area, written last: MBR, GPT header and entries, and the gap
/// before the first partition that boot loaders use.
pub const HEAD_BYTES: u64 = 1 << 20;

/// Blocks queued for the writer thread besides the one being filled. Deep enough
/// that a stage waiting for a CPU on a busy machine does not stall the others;
/// 3 gave no measurable speed over 2 (bench/flash.sh, 2 GiB, 2 runs each) and cost
/// 4 MiB more peak RSS (63 against 55–59 MiB; the goal is 64).
const QUEUE_DEPTH: usize = 2;

enum Job {
    Write { offset: u64, block: AlignedBuf },
    Zero { offset: u64, len: u64 },
}

/// Counters shared with the progress display and the failure path.
#[derive(Debug, Default)]
pub struct WriteState {
    /// Bytes the writer thread has written or zeroed.
    pub done: AtomicU64,
    /// Set just before the first byte of the medium is changed.
    pub touched: AtomicBool,
}

/// Turns a stream of (offset, bytes) pieces into aligned block writes on a thread.
pub struct Writer {
    medium: Arc<dyn Medium>,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<AlignedBuf>,
    thread: Option<JoinHandle<io::Result<()>>>,
    allocated: usize,
    block_size: usize,
    current: Option<(u64, AlignedBuf)>,
    pending_zero: Option<(u64, u64)>,
    head: AlignedBuf,
    head_len: u64,
    state: Arc<WriteState>,
}

impl Writer {
    /// Starts the writer thread for an image of `image_size` bytes.
    pub fn start(
        medium: Arc<dyn Medium>,
        image_size: u64,
        block_size: usize,
        state: Arc<WriteState>,
    ) -> Self {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        let (free_tx, free) = mpsc::channel::<AlignedBuf>();
        let thread = {
            let medium = Arc::clone(&medium);
            let state = Arc::clone(&state);
            std::thread::spawn(move || -> io::Result<()> {
                for job in job_rx {
                    match job {
                        Job::Write { offset, block } => {
                            state.touched.store(true, Ordering::SeqCst);
                            write_block(&*medium, offset, &block)?;
                            state.done.fetch_add(block.len() as u64, Ordering::Relaxed);
                            let _ = free_tx.send(block);
                        }
                        Job::Zero { offset, len } => {
                            state.touched.store(true, Ordering::SeqCst);
                            zero(&*medium, offset, len)?;
                            state.done.fetch_add(len, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            })
        };
        let head_len = HEAD_BYTES.min(image_size);
        Self {
            medium,
            jobs: Some(jobs),
            free,
            thread: Some(thread),
            allocated: 0,
            block_size,
            current: None,
            pending_zero: None,
            head: AlignedBuf::new(head_len as usize),
            head_len,
            state,
        }
    }

    /// Queues `len` zero bytes for `offset`, to be written (not zeroed out). The
    /// block is zero-filled instead of copied from a shared zero buffer, so the
    /// zero chunks cost no resident memory.
    pub fn push_zero_bytes(&mut self, mut offset: u64, len: u64) -> io::Result<()> {
        const STEP: usize = 64 << 10;
        static ZERO_STEP: [u8; STEP] = [0; STEP];
        let end = offset + len;
        while offset < end {
            let n = ((end - offset) as usize).min(STEP);
            self.push(offset, &ZERO_STEP[..n])?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Queues `bytes` for `offset`. Pieces must come in increasing offset order.
    pub fn push(&mut self, mut offset: u64, mut bytes: &[u8]) -> io::Result<()> {
        if offset < self.head_len {
            let n = ((self.head_len - offset) as usize).min(bytes.len());
            let at = offset as usize;
            self.head.whole_mut()[at..at + n].copy_from_slice(&bytes[..n]);
            self.head.set_len(self.head.len().max(at + n));
            offset += n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.flush_zero()?;
        while !bytes.is_empty() {
            let contiguous =
                matches!(&self.current, Some((start, b)) if start + b.len() as u64 == offset);
            if !contiguous {
                self.flush_current()?;
                let block = self.take_block()?;
                self.current = Some((offset, block));
            }
            let (_, block) = self.current.as_mut().expect("set above");
            let n = block.extend(bytes);
            offset += n as u64;
            bytes = &bytes[n..];
            if block.remaining() == 0 {
                self.flush_current()?;
            }
        }
        Ok(())
    }

    /// Marks `len` bytes at `offset` as zeros without sending them (sparse writing).
    /// Both must be multiples of [`ALIGN`]; the head area is filled in memory.
    pub fn push_zeros(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if offset < self.head_len {
            // The head buffer starts zeroed; only its length grows.
            let end = (offset + len).min(self.head_len);
            self.head.set_len(self.head.len().max(end as usize));
            if offset + len <= self.head_len {
                return Ok(());
            }
            return self.push_zeros(self.head_len, offset + len - self.head_len);
        }
        self.flush_current()?;
        match &mut self.pending_zero {
            Some((start, n)) if *start + *n == offset => *n += len,
            _ => {
                self.flush_zero()?;
                self.pending_zero = Some((offset, len));
            }
        }
        Ok(())
    }

    /// Sends everything, waits for the writer thread, flushes, then writes the held
    /// back partition-table area and flushes again.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_current()?;
        self.flush_zero()?;
        self.join()?;
        self.medium.sync()?;
        if self.head_len > 0 {
            self.state.touched.store(true, Ordering::SeqCst);
            write_block(&*self.medium, 0, &self.head)?;
            self.state
                .done
                .fetch_add(self.head.len() as u64, Ordering::Relaxed);
            self.medium.sync()?;
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<()> {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Ok(()),
        }
    }

    /// The writer thread's error once it has stopped (it stops at its first error).
    fn failure(&mut self) -> io::Error {
        match self.join() {
            Err(e) => e,
            Ok(()) => io::Error::other("the writer thread stopped"),
        }
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().map(|j| j.send(job).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    fn take_block(&mut self) -> io::Result<AlignedBuf> {
        let mut block = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < QUEUE_DEPTH + 1 => {
                self.allocated += 1;
                AlignedBuf::new(self.block_size)
            }
            Err(_) => match self.free.recv() {
                Ok(b) => b,
                Err(_) => return Err(self.failure()),
            },
        };
        block.clear();
        Ok(block)
    }

    fn flush_current(&mut self) -> io::Result<()> {
        if let Some((offset, block)) = self.current.take() {
            self.send(Job::Write { offset, block })?;
        }
        Ok(())
    }

    fn flush_zero(&mut self) -> io::Result<()> {
        if let Some((offset, len)) = self.pending_zero.take() {
            self.send(Job::Zero { offset, len })?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Writes a filled block. On a direct medium a length that is not a multiple of
/// [`ALIGN`] (only the image's last block) is completed with what the medium holds
/// after it, read back first, so no byte past the image changes.
fn write_block(medium: &dyn Medium, offset: u64, block: &AlignedBuf) -> io::Result<()> {
    let len = block.len();
    if !medium.is_direct() || len.is_multiple_of(ALIGN) {
        return medium.write_at(block.filled(), offset);
    }
    let aligned = round_down(len as u64) as usize;
    if aligned > 0 {
        medium.write_at(&block.filled()[..aligned], offset)?;
    }
    let mut tail = AlignedBuf::new(ALIGN);
    let at = offset + aligned as u64;
    medium.read_at(tail.whole_mut(), at)?;
    tail.whole_mut()[..len - aligned].copy_from_slice(&block.filled()[aligned..]);
    tail.set_len(ALIGN);
    medium.write_at(tail.filled(), at)
}

/// Zeroes a range: the medium's own zero-out where it guarantees zeros, else writes.
pub fn zero(medium: &dyn Medium, offset: u64, len: u64) -> io::Result<()> {
    if medium.zero_range(offset, len)? {
        return Ok(());
    }
    write_zeros(medium, offset, len)
}

/// Writes `len` zero bytes at `offset` (direct-I/O friendly when both are aligned).
pub fn write_zeros(medium: &dyn Medium, offset: u64, len: u64) -> io::Result<()> {
    let zeros = AlignedBuf::new(round_up(len.min(4 << 20)) as usize);
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.capacity() as u64) as usize;
        medium.write_at(&zeros.whole()[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq)]
    enum Op {
        Write(u64, usize),
        Zero(u64, u64),
        Sync,
    }

    /// An in-memory disk that records every operation and checks direct-I/O alignment.
    struct MemDisk {
        bytes: Mutex<Vec<u8>>,
        ops: Mutex<Vec<Op>>,
        direct: bool,
        zero_out: bool,
        path: PathBuf,
    }

    impl MemDisk {
        fn new(size: usize, direct: bool, zero_out: bool) -> Self {
            Self {
                bytes: Mutex::new(vec![0xEE; size]),
                ops: Mutex::new(Vec::new()),
                direct,
                zero_out,
                path: PathBuf::from("mem"),
            }
        }
    }

    impl Medium for MemDisk {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.direct {
                assert_eq!(offset % ALIGN as u64, 0, "unaligned offset {offset}");
                assert_eq!(buf.len() % ALIGN, 0, "unaligned length {}", buf.len());
                assert_eq!(buf.as_ptr() as usize % ALIGN, 0, "unaligned buffer");
            }
            let mut bytes = self.bytes.lock().unwrap();
            bytes[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
            self.ops.lock().unwrap().push(Op::Write(offset, buf.len()));
            Ok(())
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let bytes = self.bytes.lock().unwrap();
            let start = (offset as usize).min(bytes.len());
            let n = buf.len().min(bytes.len() - start);
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            Ok(n)
        }
        fn sync(&self) -> io::Result<()> {
            self.ops.lock().unwrap().push(Op::Sync);
            Ok(())
        }
        fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool> {
            if !self.zero_out {
                return Ok(false);
            }
            self.bytes.lock().unwrap()[offset as usize..(offset + len) as usize].fill(0);
            self.ops.lock().unwrap().push(Op::Zero(offset, len));
            Ok(true)
        }
        fn size(&self) -> u64 {
            self.bytes.lock().unwrap().len() as u64
        }
        fn is_direct(&self) -> bool {
            self.direct
        }
        fn is_disk(&self) -> bool {
            true
        }
        fn path(&self) -> &Path {
            &self.path
        }
    }

    fn image(size: usize) -> Vec<u8> {
        // Data, then zero runs, then data: chunk-sized pieces of both kinds.
        (0..size)
            .map(|i| {
                if (i / 65536) % 3 == 1 {
                    0
                } else {
                    (i * 7 + i / 4096) as u8 | 1
                }
            })
            .collect()
    }

    #[test]
    fn writes_every_byte_aligned_with_the_head_last_for_every_layout() {
        let sizes = [
            4096,
            5000,
            65536 * 5,
            (1 << 20) + 65536 * 7 + 4096,
            3 << 20,
            (2 << 20) + 1000,
        ];
        for size in sizes {
            for piece in [4096usize, 65536, 1 << 20] {
                for block in [4096usize, 65536, 4 << 20] {
                    for (direct, sparse, zero_out) in [
                        (true, false, true),
                        (true, true, true),
                        (true, true, false),
                        (false, true, true),
                    ] {
                        let what = format!(
                            "size {size} piece {piece} block {block} direct {direct} sparse {sparse} zero-out {zero_out}"
                        );
                        let want = image(size);
                        let disk = Arc::new(MemDisk::new(size + 8192, direct, zero_out));
                        let state = Arc::new(WriteState::default());
                        let mut w =
                            Writer::start(disk.clone(), size as u64, block, Arc::clone(&state));
                        for (i, p) in want.chunks(piece).enumerate() {
                            let offset = (i * piece) as u64;
                            if sparse && p.iter().all(|b| *b == 0) && p.len().is_multiple_of(ALIGN)
                            {
                                w.push_zeros(offset, p.len() as u64).unwrap();
                            } else {
                                w.push(offset, p).unwrap();
                            }
                        }
                        w.finish().unwrap();
                        let bytes = disk.bytes.lock().unwrap();
                        assert!(bytes[..size] == want[..], "{what}: content");
                        assert!(
                            bytes[size..].iter().all(|b| *b == 0xEE),
                            "{what}: bytes past the image changed"
                        );
                        let ops = disk.ops.lock().unwrap();
                        let head = HEAD_BYTES.min(size as u64) as usize;
                        // [... everything else ..., Sync, head write(s) from 0, Sync]
                        let n = ops.len();
                        assert_eq!(ops[n - 1], Op::Sync, "{what}: {ops:?}");
                        let mut k = n - 1;
                        while k > 0 && matches!(ops[k - 1], Op::Write(o, _) if o < head as u64) {
                            k -= 1;
                        }
                        assert!(
                            k >= 1 && k < n - 1 && ops[k - 1] == Op::Sync,
                            "{what}: head not written last, after a flush: {ops:?}"
                        );
                        assert!(matches!(ops[k], Op::Write(0, _)), "{what}: {ops:?}");
                        assert!(
                            ops[..k - 1].iter().all(|op| match op {
                                Op::Write(o, _) | Op::Zero(o, _) => *o >= head as u64,
                                Op::Sync => true,
                            }),
                            "{what}: something wrote into the head area early: {ops:?}"
                        );
                        assert!(state.touched.load(Ordering::SeqCst));
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_write_error_stops_the_writer() {
        struct Failing(MemDisk);
        impl Medium for Failing {
            fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
                if offset >= 2 << 20 {
                    return Err(io::Error::other("EIO at 2 MiB"));
                }
                self.0.write_at(buf, offset)
            }
            fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
                self.0.read_at(buf, offset)
            }
            fn sync(&self) -> io::Result<()> {
                self.0.sync()
            }
            fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool> {
                self.0.zero_range(offset, len)
            }
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn is_direct(&self) -> bool {
                true
            }
            fn is_disk(&self) -> bool {
                true
            }
            fn path(&self) -> &Path {
                self.0.path()
            }
        }
        let size = 16 << 20;
        let disk = Arc::new(Failing(MemDisk::new(size, true, true)));
        let mut w = Writer::start(disk.clone(), size as u64, 1 << 20, Arc::default());
        let data = vec![1u8; 1 << 20];
        let mut failed = None;
        for i in 0..16u64 {
            if let Err(e) = w.push(i << 20, &data) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert!(err.to_string().contains("EIO at 2 MiB"), "{err}");
        // The head was never written.
        assert!(disk.0.bytes.lock().unwrap()[..1 << 20]
            .iter()
            .all(|b| *b == 0xEE));
    }
}
