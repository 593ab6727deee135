//! Writing a verified card: from a [`Composer`] and a target to "insert and power on".
//!
//! ```text
//! marker::recognise    a disk holding the same class's image (spare cards)?
//!   ──► verify::hash_chunks   then read the card and note the chunks that differ
//! wipe the partition-table areas, write the card marker (disks)
//! Composer (decode + verify each chunk against the signed table, worker threads)
//!   ──► writer::Writer   aligned blocks (every chunk, or only those that differ),
//!                        bounded queue, O_DIRECT writes on a thread;
//!                        the first MiB held back and written last, then fsync
//!   ──► verify           cache-bypassing read-back, SHA-256 per chunk written
//!   ──► Medium::commit   (an image file is renamed over its target only now)
//!   ──► FlashSummary
//! ```
//!
//! Before the first write a device passes the backend's safety rules
//! ([`crate::device::Backend::inspect`]), the operator's confirmation (a callback:
//! the CLI asks on the terminal, the GUI has the typed name already), an exclusive
//! open and the counterfeit-capacity [`probe`]. After the first write, any failure
//! (a chunk failing verification, an I/O error, a read-back mismatch, a
//! cancellation) wipes the partition-table area so the card cannot boot as a
//! healthy node. A disk's partition table is zeroed before the first chunk is
//! written and written last, so a card that loses power mid-write boots as nothing.
//!
//! **Spare cards.** A disk whose [`marker`] says it holds an image of the same
//! class is read first and compared with the image chunk by chunk; only the chunks
//! that differ (and those holding the partition-table areas, which are wiped
//! before writing) are written and read back. Every chunk is verified either by
//! that comparison or by the read-back. `compare: false` (`--full`) writes
//! everything.
//!
//! The engine's node flow ([`crate::Engine::flash`]) calls [`run_with`]; the
//! development `write` command makes the same call from local files.

mod card;
use card::{write_card, Report, Spec};
pub mod marker;
pub mod probe;
pub mod verify;
pub mod writer;

use std::io::{self, Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use metis_core::image::compose::{ComposeError, Composer};
use zeroize::Zeroizing;

use crate::aligned::{round_down, ALIGN};
use crate::cancel::CancelToken;
use crate::device::{Backend, Candidate, DeviceError, Policy};
use crate::events::{Events, Phase};
use crate::exit::Exit;
use crate::medium::{Counted, ImageFile, Medium};
use writer::{WriteState, HEAD_BYTES};

/// Default bytes per write (`--block-size 4M`).
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 20;

/// Sectors of a GPT backup (header and 128 entries) at a disk's end, wiped on failure.
pub(crate) const GPT_BACKUP_BYTES: u64 = 33 * 512;

/// Where the card image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A whole disk, checked by the safety rules and confirmed by the operator.
    Device {
        /// The disk (`/dev/sdb`).
        path: PathBuf,
        /// Skip the confirmation. Only for a device named explicitly.
        assume_yes: bool,
        /// Safety-rule overrides.
        policy: Policy,
    },
    /// An image file (`--output node.img`), for VMs and tests.
    Output(PathBuf),
}

impl Target {
    /// The target the command-line flags name: `--device` wins over `--output`;
    /// `None` when neither is given.
    pub fn from_flags(
        device: Option<&Path>,
        output: Option<&Path>,
        assume_yes: bool,
        force_non_removable: bool,
    ) -> Option<Self> {
        match (device, output) {
            (Some(path), _) => Some(Target::Device {
                path: path.to_path_buf(),
                assume_yes,
                policy: Policy {
                    force_non_removable,
                },
            }),
            (None, Some(path)) => Some(Target::Output(path.to_path_buf())),
            (None, None) => None,
        }
    }
}

/// Whether zero chunks are written or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Write every byte (default for devices).
    Full,
    /// Zero the all-zero chunks without sending them (a device's zero-out command,
    /// or holes in an image file; default for files).
    Sparse,
}

impl WriteMode {
    /// The mode `--sparse`/`--full` ask for; `None` picks the target's default.
    pub fn from_flags(sparse: bool, full: bool) -> Option<Self> {
        if sparse {
            Some(WriteMode::Sparse)
        } else if full {
            Some(WriteMode::Full)
        } else {
            None
        }
    }
}

/// What a node's card is, for the card marker: written past the image so a later
/// flash of the same class can compare rather than rewrite (spare cards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardLabel {
    /// The node's class.
    pub class: String,
    /// The artifact's signed revision.
    pub revision: u64,
}

/// Asks the operator to confirm writing `node` over the candidate disk; `true`
/// goes on. Called once, after the safety rules passed and before the disk is
/// opened.
pub type Confirm = Box<dyn FnMut(&Candidate, &str) -> bool + Send>;

/// Everything [`run_with`] needs besides the composer.
pub struct FlashRequest {
    /// The node's name: shown, and typed by the operator to confirm.
    pub node: String,
    /// The secrets slot: offset and decrypted bundle bytes, written over the
    /// verified chunks.
    pub slot: Option<(u64, Zeroizing<Vec<u8>>)>,
    /// Where to write.
    pub target: Target,
    /// Full or sparse; `None` picks full for devices, sparse for files.
    pub mode: Option<WriteMode>,
    /// Bytes per write; a power of two, at least 4096.
    pub block_size: usize,
    /// The card's class and revision, for the marker; `None` (local unsigned
    /// files) writes no marker and never compares.
    pub card: Option<CardLabel>,
    /// Compare a disk that holds the same class's image and write only the chunks
    /// that differ (`false`: `--full`, write everything).
    pub compare: bool,
    /// Run the counterfeit-capacity probe before writing a device (always, except
    /// in the test that shows the read-back catches such a card on its own).
    pub probe_capacity: bool,
    /// Whether the artifact's signature, node, revision and digests were verified
    /// before this request was made (reported as `verified` in the summary).
    pub signature_verified: bool,
    /// The confirmation for a device without `assume_yes`; `None` refuses such a
    /// device (nobody to ask).
    pub confirm: Option<Confirm>,
    /// Where progress goes.
    pub events: Events,
    /// Stops the flash (wiping the card once anything was written).
    pub cancel: CancelToken,
}

impl std::fmt::Debug for FlashRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the slot's bytes: they are the node's secrets.
        f.debug_struct("FlashRequest")
            .field("node", &self.node)
            .field("slot", &self.slot.as_ref().map(|(o, b)| (o, b.len())))
            .field("target", &self.target)
            .field("mode", &self.mode)
            .field("block_size", &self.block_size)
            .field("card", &self.card)
            .field("compare", &self.compare)
            .finish_non_exhaustive()
    }
}

/// What a successful flash did (`--json` prints it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlashSummary {
    /// The node.
    pub node: String,
    /// The disk or file written.
    pub target: PathBuf,
    /// `device` or `file`.
    pub target_kind: &'static str,
    /// Full or sparse.
    pub mode: WriteMode,
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Bytes written to the card or file (zeroed ranges and the partition-table
    /// wipe included): the wear this flash cost.
    pub bytes_written: u64,
    /// What the card held when Metis compared it (spare cards); `None` for a full
    /// write.
    pub card_held: Option<CardHeld>,
    /// Chunks compared, differing, rewritten and skipped.
    pub chunks: ChunkCounts,
    /// Seconds the counterfeit-capacity probe took (0 when it did not run: an
    /// image file, or the tests' hidden `--skip-capacity-probe`).
    pub probe_seconds: f64,
    /// Seconds spent reading and comparing the card before writing (0 for a full
    /// write).
    pub compare_seconds: f64,
    /// Seconds spent writing (including the flushes).
    pub write_seconds: f64,
    /// Seconds spent reading back.
    pub verify_seconds: f64,
    /// Bytes per second of the write phase (the bytes it wrote).
    pub write_bytes_per_second: f64,
    /// Always true: a summary exists only for a card that read back correctly.
    pub read_back: bool,
    /// Whether the artifact was signature-verified before writing (the node
    /// flow); false for `write` of local, unsigned files.
    pub verified: bool,
}

impl FlashSummary {
    /// For a spare card (compared, not fully rewritten), what the comparison found,
    /// for people: "37 of 1024 chunks differ from the card (it held titan-13
    /// revision 5); 148.0 MiB written".
    pub fn comparison_text(&self) -> Option<String> {
        let held = self.card_held.as_ref()?;
        Some(format!(
            "{} of {} chunks differ from the card (it held {} revision {}); {} written",
            self.chunks.differing,
            self.chunks.total,
            held.node,
            held.revision,
            size_text(self.bytes_written)
        ))
    }
}

/// The node a card held when Metis compared it, from its marker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardHeld {
    /// The node.
    pub node: String,
    /// Its revision.
    pub revision: u64,
    /// Its class (the one being written).
    pub class: String,
}

/// How a flash went, chunk by chunk. Every chunk is verified: the `skipped` ones
/// by the comparison read, the `rewritten` ones by the read-back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChunkCounts {
    /// Chunks in the image.
    pub total: usize,
    /// Chunks read from the card and compared before writing (0 for a full write).
    pub compared: usize,
    /// Compared chunks that differed from the image.
    pub differing: usize,
    /// Chunks written: every chunk for a full write; the differing ones and those
    /// holding the partition-table areas after a comparison.
    pub rewritten: usize,
    /// Compared chunks that matched and were not written.
    pub skipped: usize,
}

/// Why a flash failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlashError {
    /// The request itself is wrong (nothing written).
    #[error("{0}")]
    BadInput(String),
    /// The device is refused by a safety rule or could not be opened (nothing written).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The operator did not type the node name (nothing written).
    #[error("not confirmed: nothing was written to {0}")]
    NotConfirmed(PathBuf),
    /// The pre-write probe found the card does not store what it claims.
    #[error("this card does not hold what it claims: it reports {claimed} bytes ({claimed_gib:.1} GiB), but data written at byte {offset} {how}. It is most likely a counterfeit (fake-capacity) card; use another card. Nothing of the image was written.")]
    Counterfeit {
        /// Claimed capacity.
        claimed: u64,
        /// Claimed capacity in GiB.
        claimed_gib: f64,
        /// First offset that did not keep its data.
        offset: u64,
        /// How it failed, in words.
        how: String,
    },
    /// A chunk failed verification against the signed chunk table before its write.
    #[error("verification failed before writing: {0}")]
    Compose(#[source] ComposeError),
    /// The card read back differently from what was written.
    #[error("read-back verification failed: chunk {chunk} at byte offset {offset} on {device} reads back differently from what was written (a failing or counterfeit card, or a bad reader)")]
    ReadBack {
        /// The device or file.
        device: PathBuf,
        /// Chunk index.
        chunk: usize,
        /// First bad offset (the chunk's start).
        offset: u64,
    },
    /// An I/O error.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The device or file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Cancelled (SIGINT, SIGTERM, the GUI's Cancel).
    #[error("interrupted")]
    Interrupted,
    /// A failure after the first write; the card was wiped (or the wipe failed too).
    #[error("{cause}\n{}", match wipe_error {
        None => format!("the partition table of {} was wiped so the card cannot boot as a half-written node; flash it again", target.display()),
        Some(e) => format!("WIPING THE PARTITION TABLE OF {} FAILED TOO ({e}): do not boot this card; flash it again or erase it", target.display()),
    })]
    Wiped {
        /// What failed.
        cause: Box<FlashError>,
        /// The device or file.
        target: PathBuf,
        /// Why the wipe failed, if it did.
        wipe_error: Option<String>,
    },
}

impl FlashError {
    /// The process exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            FlashError::BadInput(_) => Exit::BadInput,
            FlashError::Device(DeviceError::Io { .. }) => Exit::Io,
            FlashError::Device(_) | FlashError::Counterfeit { .. } => Exit::DeviceRefused,
            FlashError::NotConfirmed(_) => Exit::Failure,
            FlashError::Compose(_) | FlashError::ReadBack { .. } => Exit::Verification,
            FlashError::Io { .. } => Exit::Io,
            FlashError::Interrupted => Exit::Interrupted,
            FlashError::Wiped { cause, .. } => cause.exit(),
        }
    }

    /// Whether the card (or the output file) is as it was before: nothing of the
    /// image was written (an `--output` file is only ever replaced once verified).
    pub fn nothing_written(&self) -> bool {
        !matches!(self, FlashError::Wiped { .. })
    }
}

/// Fixes glibc's mmap threshold at 1 MiB, once per process, so every chunk-sized
/// buffer is its own mapping, returned to the system when freed.
///
/// By default glibc raises the threshold to the size of the largest mapping
/// freed so far; after the first freed 4 MiB chunk, later ones come from the
/// worker threads' arenas, which keep them: a 2 GiB full flash then peaked at
/// 66–74 MiB resident instead of 57 MiB (bench/flash.sh). The flash's buffers are
/// pooled (about 40 chunk-sized allocations in a whole 2 GiB flash, counted with
/// strace), so the fixed threshold costs no time. musl and Windows always map
/// big allocations themselves. The crate's one unsafe call outside the device
/// FFI modules.
#[allow(unsafe_code)]
fn keep_big_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; it is
            // thread-safe in glibc and has no memory-safety preconditions.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
    }
}

/// Flashes the composed card to the target and reads it back; see the module docs.
///
/// `composer` is opened on the (signature-verified) base, composed chunk table and
/// patch, without a slot: the slot comes in `request.slot`.
///
/// # Errors
///
/// [`FlashError`]; [`FlashError::exit`] gives the exit code. A failure after the
/// first write to a disk comes as [`FlashError::Wiped`].
pub fn run_with<R: Read + Seek + Send + 'static>(
    backend: &dyn Backend,
    composer: Composer<R>,
    mut request: FlashRequest,
) -> Result<FlashSummary, FlashError> {
    keep_big_buffers_out_of_the_heap();
    let block_size = request.block_size;
    if !block_size.is_power_of_two() || !(ALIGN..=(64 << 20)).contains(&block_size) {
        return Err(FlashError::BadInput(format!(
            "block size {block_size} must be a power of two from 4096 to 64 MiB"
        )));
    }
    let table = composer.table().clone();
    let image_size = table.image_size();
    let slot_range = request
        .slot
        .as_ref()
        .map(|(offset, bytes)| *offset..offset.saturating_add(bytes.len() as u64));
    let composer = match request.slot.take() {
        Some((offset, bytes)) => composer
            .with_slot(offset, bytes)
            .map_err(|e| FlashError::BadInput(e.to_string()))?,
        None => composer,
    };
    let events = request.events.clone();
    let cancel = request.cancel.clone();

    let mut probe_seconds = 0.0;
    let (medium, mode): (Arc<dyn Medium>, WriteMode) = match &request.target {
        Target::Device {
            path,
            assume_yes,
            policy,
        } => {
            let candidate = backend.inspect(path, image_size, *policy)?;
            if *assume_yes {
                events.info(format!(
                    "writing node {} to\n{}",
                    request.node,
                    candidate_text(&candidate)
                ));
            } else {
                let confirmed = match request.confirm.as_mut() {
                    Some(confirm) => confirm(&candidate, &request.node),
                    None => false,
                };
                if !confirmed {
                    return Err(FlashError::NotConfirmed(candidate.disk.path.clone()));
                }
            }
            if cancel.is_cancelled() {
                return Err(FlashError::Interrupted);
            }
            let medium: Arc<dyn Medium> = Arc::from(backend.open(&candidate)?);
            cancel.arm();
            if request.probe_capacity {
                let meter = events.phase(Phase::Probe, 0);
                probe::probe(&*medium).map_err(|e| probe_error(e, path))?;
                probe_seconds = meter.finish();
            }
            (medium, request.mode.unwrap_or(WriteMode::Full))
        }
        Target::Output(path) => {
            let file = ImageFile::create(path, image_size).map_err(|source| FlashError::Io {
                op: "creating a temporary image beside",
                path: path.clone(),
                source,
            })?;
            cancel.arm();
            (Arc::new(file), request.mode.unwrap_or(WriteMode::Sparse))
        }
    };
    if cancel.is_cancelled() {
        return Err(FlashError::Interrupted);
    }

    let counted = Arc::new(Counted::new(medium));
    let medium: Arc<dyn Medium> = counted.clone();
    let state = Arc::new(WriteState::default());
    let mut report = Report::default();
    let spec = Spec {
        node: &request.node,
        card: request.card.as_ref(),
        compare: request.compare,
        slot_range,
        mode,
        block_size,
    };
    let result = write_card(
        composer,
        &medium,
        &spec,
        &events,
        &cancel,
        &state,
        &mut report,
    )
    .and_then(|()| {
        medium.commit().map_err(|source| FlashError::Io {
            op: "renaming the verified image onto",
            path: medium.path().to_path_buf(),
            source,
        })
    });
    match result {
        Ok(()) => Ok(FlashSummary {
            node: request.node,
            target: medium.path().to_path_buf(),
            target_kind: if medium.is_disk() { "device" } else { "file" },
            mode,
            image_bytes: image_size,
            bytes_written: counted.written(),
            card_held: report.card_held,
            chunks: report.chunks,
            probe_seconds,
            compare_seconds: report.compare_seconds,
            write_seconds: report.write_seconds,
            verify_seconds: report.verify_seconds,
            write_bytes_per_second: report.write_bytes as f64 / report.write_seconds.max(1e-9),
            read_back: true,
            verified: request.signature_verified,
        }),
        // An image file is written to a temporary file that is dropped here: the
        // target path is as it was.
        Err(cause) if !medium.is_disk() || !state.touched.load(Ordering::SeqCst) => Err(cause),
        Err(cause) => {
            let target = medium.path().to_path_buf();
            let wipe_error = wipe(&*medium, image_size).err().map(|e| e.to_string());
            Err(FlashError::Wiped {
                cause: Box::new(cause),
                target,
                wipe_error,
            })
        }
    }
}

fn probe_error(e: probe::ProbeError, path: &Path) -> FlashError {
    match e {
        probe::ProbeError::Io(source) => FlashError::Io {
            op: "probing the capacity of",
            path: path.to_path_buf(),
            source,
        },
        probe::ProbeError::Counterfeit {
            claimed,
            offset,
            aliased_with,
        } => FlashError::Counterfeit {
            claimed,
            claimed_gib: claimed as f64 / (1u64 << 30) as f64,
            offset,
            how: match aliased_with {
                Some(other) => {
                    format!("was overwritten by data written at byte {other} (writes wrap around)")
                }
                None => "did not read back".into(),
            },
        },
    }
}

/// Zeroes the partition-table areas: the first MiB, and the last GPT-backup sectors
/// of both the image and the disk. Every byte is written explicitly (no discard) and
/// flushed.
pub fn wipe(medium: &dyn Medium, image_size: u64) -> io::Result<()> {
    let ranges = wipe_ranges(medium.size(), image_size, medium.is_direct());
    let mut first_error = None;
    for r in ranges {
        if let Err(e) = writer::write_zeros(medium, r.start, r.end - r.start) {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = medium.sync() {
        first_error.get_or_insert(e);
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// The partition-table areas [`wipe`] zeroes on a medium of `size` bytes.
pub(super) fn wipe_ranges(size: u64, image_size: u64, direct: bool) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = Vec::with_capacity(3);
    ranges.push(0..HEAD_BYTES.min(round_down(size)));
    for end in [image_size.min(size), size] {
        let end = if direct { round_down(end) } else { end };
        let start = round_down(end.saturating_sub(GPT_BACKUP_BYTES));
        ranges.push(start..end);
    }
    ranges
}

/// A size for people: GiB from 1 GiB on, else MiB.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// What will be erased on `candidate`, for a confirmation prompt: the disk, then
/// each partition with its mounts.
pub fn candidate_text(candidate: &Candidate) -> String {
    let disk = &candidate.disk;
    let mut text = format!(
        "{}: {} {}, bus {}{}\n",
        disk.path.display(),
        disk.model_text(),
        size_text(disk.size),
        disk.bus,
        if disk.removable { ", removable" } else { "" }
    );
    if candidate.partitions.is_empty() {
        text.push_str("  no partitions\n");
    }
    for p in &candidate.partitions {
        text.push_str(&format!("  {}  {}", p.path.display(), size_text(p.size)));
        for m in &p.mounts {
            text.push_str(&format!("  mounted on {} (will be unmounted)", m.display()));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests;
