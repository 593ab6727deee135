//! What the pipeline writes to: a raw disk (from a device backend) or an image file.
//!
//! The pipeline only sees [`Medium`]; each OS backend hands out its own disk type
//! (Linux: an `O_DIRECT | O_EXCL` block device), so Windows and macOS slot in without
//! touching the write, verify or wipe stages.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A byte-addressed target the pipeline writes a card image to.
pub trait Medium: Send + Sync {
    /// Writes all of `buf` at `offset`. On a direct medium `buf`, `offset` and the
    /// length are multiples of [`crate::aligned::ALIGN`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads into `buf` at `offset` until it is full or the medium ends; returns the
    /// bytes read. Bypasses the page cache on a direct medium.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Flushes everything written to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// Makes `len` bytes at `offset` read back as zeros without sending them, where
    /// the medium can guarantee that; `Ok(false)` when it cannot (the caller then
    /// writes zeros).
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool>;
    /// Capacity in bytes.
    fn size(&self) -> u64;
    /// Whether I/O bypasses the page cache (and so must be aligned).
    fn is_direct(&self) -> bool;
    /// Whether this is a disk (as opposed to an image file).
    fn is_disk(&self) -> bool;
    /// The path, for messages.
    fn path(&self) -> &Path;
    /// Makes the verified image final. An image file is renamed over its target
    /// path here; a disk has nothing to do.
    fn commit(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Positional write of the whole buffer.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_write(
                file,
                &buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Positional read until `buf` is full or the file ends.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_at(file, &mut buf[done..], offset + done as u64);
        #[cfg(windows)]
        let r =
            std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], offset + done as u64);
        match r {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A card image written to a regular file (`--output node.img`).
///
/// The image is written to a temporary file beside `path` and renamed over it
/// only by [`Medium::commit`], after the read-back verified it: a failed or
/// interrupted flash leaves an existing `path` exactly as it was. The temporary
/// file is removed when the image file is dropped uncommitted.
///
/// The file is truncated and extended to the image size when created, so every
/// range the pipeline skips is a hole that reads back as zeros: zero chunks cost
/// nothing on disk.
pub struct ImageFile {
    file: File,
    size: u64,
    path: PathBuf,
    temp: std::sync::Mutex<Option<tempfile::TempPath>>,
}

impl ImageFile {
    /// Creates an all-zero temporary file of `size` bytes beside `path`.
    ///
    /// The file is readable by its owner only (0600 on Unix): its slot holds the
    /// node's secrets in clear.
    pub fn create(path: &Path, size: u64) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "card".into());
        // tempfile creates it 0600 on Unix.
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".metis-partial")
            .tempfile_in(dir)?;
        let (file, temp) = temp.into_parts();
        file.set_len(size)?;
        Ok(Self {
            file,
            size,
            path: path.to_path_buf(),
            temp: std::sync::Mutex::new(Some(temp)),
        })
    }
}

impl Medium for ImageFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        write_all_at(&self.file, buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.file, buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn zero_range(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        // Created all-holes and written once, front to back: a range never written
        // is still a hole.
        Ok(true)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn is_direct(&self) -> bool {
        false
    }
    fn is_disk(&self) -> bool {
        false
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn commit(&self) -> io::Result<()> {
        let mut temp = self.temp.lock().unwrap_or_else(|e| e.into_inner());
        match temp.take() {
            Some(t) => t.persist(&self.path).map_err(|e| e.error),
            None => Ok(()),
        }
    }
}

/// A medium that counts the bytes written to it, zeroed ranges included: the
/// wear a flash costs (`bytes_written` in the summary).
pub struct Counted {
    inner: Arc<dyn Medium>,
    written: AtomicU64,
}

impl Counted {
    /// Counts what is written to `inner` from now on.
    pub fn new(inner: Arc<dyn Medium>) -> Self {
        Counted {
            inner,
            written: AtomicU64::new(0),
        }
    }

    /// Bytes written (or zeroed) so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

impl Medium for Counted {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)?;
        self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool> {
        let zeroed = self.inner.zero_range(offset, len)?;
        if zeroed {
            self.written.fetch_add(len, Ordering::Relaxed);
        }
        Ok(zeroed)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }
    fn is_disk(&self) -> bool {
        self.inner.is_disk()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn commit(&self) -> io::Result<()> {
        self.inner.commit()
    }
}
