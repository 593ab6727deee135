//! The thread boundary: everything that touches a file, the registry or a disk
//! runs here, on `std::thread`s, and comes back to the window as a [`Report`]
//! on one channel. Each sender wakes the window (`request_repaint`) after it
//! sends, so the window repaints when something happened and sleeps otherwise.
//!
//! Nothing here decides anything about the flow: each job is one call into the
//! engine (or `SetupRequest`), and the offline fallback of [`open_lab`] is the
//! only rule, taken from the CLI's `--offline` hint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metis_core::profile::LabProfile;

use crate::egui;
use metis_engine::device::{Backend, Policy};
use metis_engine::flash::{FlashSummary, Target};
use metis_engine::{
    CancelToken, Engine, EngineError, EngineOptions, Event, Events, Exit, FlashOptions, LabNodes,
    Notice, PrepareOptions, Prepared, Settings, SetupRequest,
};

/// Something a worker thread (or the engine's event stream) reports.
pub enum Report {
    /// An event of the engine (progress, a notice).
    Event(Event),
    /// A lab profile was read and parsed.
    Profile(Result<SetupRequest, EngineError>),
    /// The settings were written.
    SetUp(Result<Settings, EngineError>),
    /// The settings as they are on disk (at start).
    Settings(Result<Settings, EngineError>),
    /// The engine was opened and the verified lab index read.
    Lab(Result<Lab, EngineError>),
    /// A node's artifact was fetched, verified and decrypted (job number).
    Prepared(u64, Result<Box<Prepared>, EngineError>),
    /// The flash ended.
    Flashed(Result<FlashSummary, EngineError>),
    /// The disks as they are now.
    Disks(Result<Vec<DiskRow>, String>),
}

/// An opened engine and its lab.
pub struct Lab {
    /// The engine, shared by the jobs that follow.
    pub engine: Arc<Engine>,
    /// The verified lab index.
    pub nodes: LabNodes,
    /// Whether the registry could not be reached and the cache is used.
    pub offline: bool,
}

/// A disk as the card screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRow {
    /// The device path.
    pub path: PathBuf,
    /// Vendor and model.
    pub model: String,
    /// Size in bytes.
    pub size: u64,
    /// Bus (usb, mmc, …).
    pub bus: String,
    /// Whether it can be written, and if not why.
    pub verdict: Verdict,
}

/// Whether a disk may take the card.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every safety rule passed; the text describes its partitions.
    Offered(String),
    /// A safety rule refused it: why.
    Refused(String),
    /// Not checked yet (the image size is not known yet).
    Unchecked,
}

/// How often the progress screen is drawn while bytes move: four frames a
/// second keep the figures readable and cost a software-rendered window (no GPU
/// driver) less of the CPU the flash itself needs.
pub const PROGRESS_FRAME: Duration = Duration::from_millis(250);

/// Where the window's workers send, and how they wake it.
#[derive(Clone)]
pub struct Worker {
    sender: Sender<Report>,
    ctx: egui::Context,
}

impl Worker {
    /// A worker reporting on a new channel; the window reads the receiver.
    pub fn new(ctx: egui::Context) -> (Self, Receiver<Report>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        (Worker { sender, ctx }, receiver)
    }

    /// Sends `report` and wakes the window: at once, or for progress within
    /// [`PROGRESS_FRAME`] (egui keeps the earliest of the wake-ups asked for, so a
    /// steady stream of progress draws a frame that often, not once per event).
    pub fn send(&self, report: Report) {
        let progress = matches!(report, Report::Event(Event::Progress(_)));
        // A closed receiver means the window is gone: nothing to tell.
        let _ = self.sender.send(report);
        if progress {
            self.ctx.request_repaint_after(PROGRESS_FRAME);
        } else {
            self.ctx.request_repaint();
        }
    }

    /// Runs `job` on its own thread and reports its result.
    pub fn spawn(&self, job: impl FnOnce() -> Report + Send + 'static) {
        let me = self.clone();
        std::thread::spawn(move || me.send(job()));
    }

    /// The engine's events, forwarded to the window.
    pub fn events(&self) -> Events {
        let me = self.clone();
        Events::new(move |e| me.send(Report::Event(e.clone())))
    }
}

/// Reads and parses a lab profile (`metis-build operator-profile > lab.metis`).
pub fn read_profile(path: &Path) -> Result<SetupRequest, EngineError> {
    let bad = EngineError::BadInput;
    let bytes = std::fs::read(path)
        .map_err(|e| bad(format!("reading the lab profile {}: {e}", path.display())))?;
    let profile = LabProfile::parse(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    SetupRequest::from_profile(&profile)
}

/// Writes the settings `metis-flash setup` writes: the profile's, and the identity.
pub fn apply_setup(
    mut request: SetupRequest,
    identity: Option<PathBuf>,
    config_dir: &Path,
) -> Result<Settings, EngineError> {
    if let Some(identity) = identity {
        if !identity.is_file() {
            return Err(EngineError::Identity(format!(
                "the identity {} is not a readable file",
                identity.display()
            )));
        }
        request.identity = Some(identity);
    }
    request.apply(config_dir)
}

/// Opens the engine online and reads the verified lab index; when the registry
/// cannot be reached (the engine fails with that exit code, or fell back to the
/// cached index and said so with `Notice::Unreachable`), opens it again offline, so the rest of the
/// session does not wait on the network, and the window shows the badge.
pub fn open_lab(options: &EngineOptions, events: &Events) -> Result<Lab, EngineError> {
    let lab = open_online_or_offline(options, events);
    match &lab {
        Ok(lab) => log(&format!(
            "lab index revision {} verified, {} nodes{}",
            lab.nodes.revision,
            lab.nodes.nodes.len(),
            if lab.offline {
                " (offline: the cache)"
            } else {
                ""
            }
        )),
        Err(e) => log(&format!("opening the lab: {e}")),
    }
    lab
}

fn open_online_or_offline(options: &EngineOptions, events: &Events) -> Result<Lab, EngineError> {
    let fell_back = Arc::new(AtomicBool::new(false));
    let watched = {
        let (events, fell_back) = (events.clone(), fell_back.clone());
        Events::new(move |e| {
            if let Event::Notice(Notice::Unreachable { .. }) = e {
                fell_back.store(true, Ordering::SeqCst);
            }
            events.emit(e.clone());
        })
    };
    let online = Engine::open(options.clone(), watched).and_then(|engine| {
        let nodes = engine.lab_nodes()?;
        Ok((engine, nodes))
    });
    match online {
        Ok((engine, nodes)) if !fell_back.load(Ordering::SeqCst) => Ok(Lab {
            offline: engine.offline(),
            engine: Arc::new(engine),
            nodes,
        }),
        Ok(_) => {
            let offline = EngineOptions {
                offline: true,
                ..options.clone()
            };
            let engine = Engine::open(offline, events.clone())?;
            let nodes = engine.lab_nodes()?;
            Ok(Lab {
                engine: Arc::new(engine),
                nodes,
                offline: true,
            })
        }
        Err(e) if e.exit() == Exit::Unreachable => {
            let offline = EngineOptions {
                offline: true,
                ..options.clone()
            };
            let engine = Engine::open(offline, events.clone())?;
            let nodes = engine.lab_nodes()?;
            Ok(Lab {
                engine: Arc::new(engine),
                nodes,
                offline: true,
            })
        }
        Err(e) => Err(e),
    }
}

/// Fetches, verifies and decrypts `node`.
pub fn prepare(engine: &Engine, node: &str) -> Result<Box<Prepared>, EngineError> {
    let prepared = engine.prepare(node, &PrepareOptions::default());
    match &prepared {
        Ok(p) => log(&format!(
            "{node} revision {} verified ({}), image {}",
            p.revision,
            p.digest,
            metis_engine::flash::size_text(p.image_size())
        )),
        Err(e) => log(&format!("{node}: {e}")),
    }
    prepared.map(Box::new)
}

/// One line on standard error for each outcome (what a terminal that started the
/// window shows, and what bench/gui.sh waits for). Never a secret: the engine's
/// messages hold none.
fn log(line: &str) {
    eprintln!("metis-flash-gui: {line}");
}

/// Writes `prepared` to `target`. A device is confirmed here only because the
/// operator already typed the node's name in the window.
pub fn flash(
    engine: &Engine,
    backend: &dyn Backend,
    prepared: Box<Prepared>,
    target: Target,
    cancel: CancelToken,
) -> Result<FlashSummary, EngineError> {
    let node = prepared.node.clone();
    let flashed = engine.flash_with(
        backend,
        *prepared,
        target,
        FlashOptions {
            confirm: Some(Box::new(typed_in_the_window)),
            cancel,
            ..Default::default()
        },
    );
    match &flashed {
        Ok(s) => log(&format!(
            "{node} written to {} and read back ({} written in {:.1} s, verified in {:.1} s): insert and power on",
            s.target.display(),
            metis_engine::flash::size_text(s.bytes_written),
            s.write_seconds,
            s.verify_seconds
        )),
        Err(e) => log(&format!("flashing {node} failed: {e}")),
    }
    flashed
}

/// The engine's confirmation of a device: the window called [`flash`] only after
/// the operator typed the node's name.
fn typed_in_the_window(_: &metis_engine::device::Candidate, _: &str) -> bool {
    true
}

/// The disks, each with the safety rules' verdict for an `image_size`-byte card
/// (0: not known yet, so not checked).
pub fn scan(
    backend: &dyn Backend,
    image_size: u64,
    policy: Policy,
) -> Result<Vec<DiskRow>, String> {
    let disks = backend.list().map_err(|e| e.to_string())?;
    Ok(disks
        .into_iter()
        .map(|disk| {
            let verdict = if image_size == 0 {
                Verdict::Unchecked
            } else {
                match backend.inspect(&disk.path, image_size, policy) {
                    Ok(candidate) => Verdict::Offered(partitions_text(&candidate)),
                    Err(metis_engine::device::DeviceError::Refused { reason, .. }) => {
                        Verdict::Refused(reason)
                    }
                    Err(e) => Verdict::Refused(e.to_string()),
                }
            };
            DiskRow {
                model: disk.model_text().to_owned(),
                path: disk.path,
                size: disk.size,
                bus: disk.bus,
                verdict,
            }
        })
        .collect())
}

fn partitions_text(candidate: &metis_engine::device::Candidate) -> String {
    if candidate.partitions.is_empty() {
        return "no partitions".into();
    }
    candidate
        .partitions
        .iter()
        .map(|p| {
            let mounts = if p.mounts.is_empty() {
                String::new()
            } else {
                let m: Vec<String> = p.mounts.iter().map(|m| m.display().to_string()).collect();
                format!(" mounted at {}", m.join(", "))
            };
            format!(
                "{} ({}){mounts}",
                p.path.display(),
                metis_engine::flash::size_text(p.size)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The disks' verdicts, once the image size is known, each time they change:
/// why a card is not offered is then on the terminal too.
fn log_disks(image_size: u64, rows: &Result<Vec<DiskRow>, String>) {
    if image_size == 0 {
        return;
    }
    let text = match rows {
        Err(e) => format!("listing disks: {e}"),
        Ok(rows) if rows.is_empty() => "no disk found".to_owned(),
        Ok(rows) => rows
            .iter()
            .map(|r| match &r.verdict {
                Verdict::Offered(_) => format!("{} offered", r.path.display()),
                Verdict::Refused(why) => format!("{} refused: {why}", r.path.display()),
                Verdict::Unchecked => format!("{} not checked", r.path.display()),
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    log(&format!(
        "disks for a {} image: {text}",
        metis_engine::flash::size_text(image_size)
    ));
}

/// How often the disks are listed again while the card screen is shown.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(3);

/// Lists the disks on its own thread every [`SCAN_INTERVAL`] (at once when the
/// image size becomes known) and reports only changes; stops when dropped.
pub struct Scanner {
    stop: Arc<AtomicBool>,
    image_size: Arc<AtomicU64>,
}

impl Scanner {
    /// Starts scanning `backend`'s disks.
    pub fn start(
        worker: Worker,
        backend: Arc<dyn Backend + Send + Sync>,
        image_size: u64,
        policy: Policy,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let size = Arc::new(AtomicU64::new(image_size));
        let (stop2, size2) = (stop.clone(), size.clone());
        std::thread::spawn(move || {
            let mut last: Option<Result<Vec<DiskRow>, String>> = None;
            let mut scanned_for = u64::MAX;
            let mut logged_for = 0;
            let mut next = Instant::now();
            while !stop2.load(Ordering::SeqCst) {
                let size = size2.load(Ordering::SeqCst);
                if Instant::now() >= next || size != scanned_for {
                    let rows = scan(backend.as_ref(), size, policy);
                    scanned_for = size;
                    next = Instant::now() + SCAN_INTERVAL;
                    let changed = last.as_ref() != Some(&rows);
                    if changed || size != logged_for {
                        log_disks(size, &rows);
                        logged_for = size;
                    }
                    if changed {
                        last = Some(rows.clone());
                        worker.send(Report::Disks(rows));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Scanner {
            stop,
            image_size: size,
        }
    }

    /// The image size is known: check every disk against it.
    pub fn set_image_size(&self, size: u64) {
        self.image_size.store(size, Ordering::SeqCst);
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
