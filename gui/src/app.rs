//! The window's state: which screen is shown and what the operator chose so far.
//! Every decision about the card (what verifies, which disk may be written, what
//! a failure means) comes from the engine; this file only moves between screens
//! on the operator's clicks and the workers' [`Report`]s.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use metis_engine::device::{Backend, Policy};
use metis_engine::events::Progress;
use metis_engine::flash::{FlashSummary, Target};
use metis_engine::{
    CancelToken, EngineError, EngineOptions, Event, Notice, Phase, Prepared, Settings, SetupRequest,
};

use crate::egui;
use crate::worker::{self, DiskRow, Lab, Report, Scanner, Worker};

/// How the window is started: the engine's options and the disks' backend.
pub struct Config {
    /// Registry, cache and config directory (empty: the operator's settings).
    pub engine: EngineOptions,
    /// The disks (this OS's backend; the tests give a fixed one).
    pub backend: Arc<dyn Backend + Send + Sync>,
    /// Safety-rule overrides (none for operators).
    pub policy: Policy,
    /// Whether this process may write disks (root on Linux).
    pub may_write_disks: bool,
    /// Where an image file goes by default.
    pub output_dir: PathBuf,
}

impl Config {
    /// The operator's: settings from the config dir, this OS's disks.
    pub fn native() -> Self {
        Config {
            engine: EngineOptions::default(),
            backend: Arc::new(metis_engine::device::Native),
            policy: Policy::default(),
            may_write_disks: crate::may_write_disks(),
            output_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }
}

/// The screen shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Reading the settings.
    Starting,
    /// First run: the lab profile and the identity.
    Setup,
    /// Opening the registry and reading the lab index.
    OpeningLab,
    /// Choosing the node.
    Nodes,
    /// Choosing the card (the node's artifact is verified meanwhile).
    Card,
    /// Typing the node's name.
    Confirm,
    /// Writing.
    Progress,
    /// Written and read back.
    Done,
    /// Stopped with an error.
    Error,
}

/// The first-run form.
#[derive(Default)]
pub struct SetupForm {
    /// The profile's path as typed.
    pub profile_path: String,
    /// The profile read, waiting for confirmation.
    pub request: Option<SetupRequest>,
    /// The identity file's path as typed.
    pub identity: String,
    /// Why the last step failed.
    pub problem: Option<String>,
    /// A job is running.
    pub busy: bool,
}

/// The node being flashed, as verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The node.
    pub node: String,
    /// Its signed revision.
    pub revision: u64,
    /// The manifest digest.
    pub digest: String,
    /// The image's size.
    pub image_size: u64,
    /// For a k3s server: the etcd rejoin commands.
    pub rejoin: Vec<String>,
}

/// Where the card goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A disk.
    Disk(PathBuf),
    /// An image file (path in [`App::output_path`]).
    File,
}

/// How far each phase got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases {
    /// Phases finished, with their seconds.
    pub finished: Vec<(Phase, f64)>,
    /// The phase running and its latest progress.
    pub current: Option<(Phase, Option<Progress>)>,
}

impl Phases {
    fn record(&mut self, event: &Event) {
        match event {
            Event::PhaseStarted { phase, .. } => self.current = Some((*phase, None)),
            Event::Progress(p) => self.current = Some((p.phase, Some(*p))),
            Event::PhaseFinished { phase, seconds } => {
                self.finished.retain(|(p, _)| p != phase);
                self.finished.push((*phase, *seconds));
                if self.current.as_ref().is_some_and(|(p, _)| p == phase) {
                    self.current = None;
                }
            }
            _ => {}
        }
    }
}

/// A flash that stopped, as the error screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The engine's message.
    pub message: String,
    /// What to do, when there is something.
    pub hint: Option<String>,
    /// Whether the card (or file) is as it was.
    pub nothing_written: bool,
    /// Whether the target was an image file.
    pub file: bool,
    /// Whether setting up again is the way out.
    pub setup: bool,
}

impl Failure {
    /// The screen's words for `e`.
    pub fn from_error(e: &EngineError, file: bool) -> Self {
        Failure {
            message: e.to_string(),
            hint: e.hint(),
            nothing_written: e.nothing_written(),
            file,
            setup: matches!(
                e,
                EngineError::NoRegistry
                    | EngineError::NoTrustedKey { .. }
                    | EngineError::Identity(_)
            ),
        }
    }
}

/// The whole window.
pub struct App {
    pub(crate) config: Config,
    worker: Option<(Worker, Receiver<Report>)>,
    pub(crate) screen: Screen,
    pub(crate) setup: SetupForm,
    pub(crate) settings: Settings,
    pub(crate) lab: Option<Lab>,
    pub(crate) search: String,
    pub(crate) node: Option<String>,
    prepare_job: u64,
    prepared: Option<Box<Prepared>>,
    pub(crate) verified: Option<Verified>,
    pub(crate) disks: Option<Result<Vec<DiskRow>, String>>,
    scanner: Option<Scanner>,
    pub(crate) choice: Option<Choice>,
    pub(crate) output_path: String,
    pub(crate) typed: String,
    /// The confirmation's name field takes the keyboard on its next frame.
    pub(crate) focus_name: bool,
    /// The card screen's Back button, as last drawn (Enter on it is not "next").
    pub(crate) card_back: Option<crate::egui::Id>,
    pub(crate) cancel: Option<CancelToken>,
    pub(crate) phases: Phases,
    pub(crate) warnings: Vec<String>,
    pub(crate) done: Option<FlashSummary>,
    pub(crate) failure: Option<Failure>,
}

impl App {
    /// A window that reads the settings first.
    pub fn new(config: Config) -> Self {
        App {
            config,
            worker: None,
            screen: Screen::Starting,
            setup: SetupForm::default(),
            settings: Settings::default(),
            lab: None,
            search: String::new(),
            node: None,
            prepare_job: 0,
            prepared: None,
            verified: None,
            disks: None,
            scanner: None,
            choice: None,
            output_path: String::new(),
            typed: String::new(),
            focus_name: false,
            card_back: None,
            cancel: None,
            phases: Phases::default(),
            warnings: Vec::new(),
            done: None,
            failure: None,
        }
    }

    /// The screen shown now.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// The phase the engine reports running, if any.
    pub fn phase(&self) -> Option<Phase> {
        self.phases.current.as_ref().map(|(p, _)| *p)
    }

    /// Before each frame is drawn ([`crate::screens::window`]): starts the
    /// worker on the first, and takes in what the workers reported.
    pub(crate) fn begin_frame(&mut self, ctx: &egui::Context) {
        if self.worker.is_none() {
            self.worker = Some(Worker::new(ctx.clone()));
            if self.screen == Screen::Starting {
                self.read_settings();
            }
        }
        self.drain();
    }

    fn worker(&self) -> Worker {
        self.worker
            .as_ref()
            .expect("the worker starts on the first frame")
            .0
            .clone()
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.config.engine.config_dir.clone()
    }

    fn drain(&mut self) {
        let reports: Vec<Report> = match &self.worker {
            Some((_, receiver)) => receiver.try_iter().collect(),
            None => return,
        };
        for report in reports {
            self.handle(report);
        }
    }

    fn handle(&mut self, report: Report) {
        match report {
            Report::Event(event) => {
                let warning = match &event {
                    Event::Notice(Notice::Warning { text }) => Some(text.clone()),
                    Event::Notice(Notice::Unreachable { reason }) => {
                        Some(format!("{reason}; using the cache"))
                    }
                    _ => None,
                };
                if let Some(text) = warning {
                    if !self.warnings.contains(&text) {
                        self.warnings.push(text);
                    }
                }
                self.phases.record(&event);
            }
            Report::Settings(Ok(settings)) => {
                let ready = settings.registry.is_some();
                self.settings = settings;
                if ready {
                    self.open_lab();
                } else {
                    self.screen = Screen::Setup;
                }
            }
            Report::Settings(Err(e)) => {
                self.setup.problem = Some(e.to_string());
                self.screen = Screen::Setup;
            }
            Report::Profile(result) => {
                self.setup.busy = false;
                match result {
                    Ok(request) => {
                        self.setup.request = Some(request);
                        self.setup.problem = None;
                    }
                    Err(e) => {
                        self.setup.request = None;
                        self.setup.problem = Some(e.to_string());
                    }
                }
            }
            Report::SetUp(result) => {
                self.setup.busy = false;
                match result {
                    Ok(settings) => {
                        self.settings = settings;
                        self.setup = SetupForm::default();
                        self.open_lab();
                    }
                    Err(e) => self.setup.problem = Some(e.to_string()),
                }
            }
            Report::Lab(Ok(lab)) => {
                let listed = self
                    .node
                    .as_ref()
                    .is_some_and(|node| lab.nodes.nodes.iter().any(|n| &n.node == node));
                if !listed {
                    self.node = None;
                }
                self.lab = Some(lab);
                self.screen = Screen::Nodes;
            }
            Report::Lab(Err(e)) => self.fail(&e),
            Report::Prepared(job, result) => {
                if job != self.prepare_job || self.screen != Screen::Card {
                    return; // the operator went elsewhere meanwhile
                }
                match result {
                    Ok(prepared) => {
                        let verified = Verified {
                            node: prepared.node.clone(),
                            revision: prepared.revision,
                            digest: prepared.digest.clone(),
                            image_size: prepared.image_size(),
                            rejoin: prepared.rejoin_commands().to_vec(),
                        };
                        if let Some(scanner) = &self.scanner {
                            scanner.set_image_size(verified.image_size);
                        }
                        self.verified = Some(verified);
                        self.prepared = Some(prepared);
                    }
                    Err(e) => self.fail(&e),
                }
            }
            Report::Flashed(result) => {
                self.cancel = None;
                match result {
                    Ok(summary) => {
                        self.done = Some(summary);
                        self.screen = Screen::Done;
                    }
                    Err(e) => self.fail(&e),
                }
            }
            Report::Disks(rows) => {
                if self.scanner.is_some() {
                    self.disks = Some(rows);
                }
            }
        }
    }

    fn fail(&mut self, e: &EngineError) {
        self.scanner = None;
        self.prepared = None;
        self.failure = Some(Failure::from_error(
            e,
            matches!(self.choice, Some(Choice::File)),
        ));
        self.screen = Screen::Error;
    }

    fn read_settings(&mut self) {
        let dir = self.config_dir();
        self.worker().spawn(move || {
            Report::Settings(
                dir.map_or_else(metis_engine::settings::config_dir, Ok)
                    .and_then(|d| Settings::load(&d)),
            )
        });
    }

    /// Reads the lab profile typed in the setup form.
    pub(crate) fn read_profile(&mut self) {
        let path = PathBuf::from(self.setup.profile_path.trim());
        self.setup.busy = true;
        self.worker()
            .spawn(move || Report::Profile(worker::read_profile(&path)));
    }

    /// Saves the confirmed profile and identity, as `metis-flash setup` does.
    pub(crate) fn save_setup(&mut self) {
        let Some(request) = self.setup.request.clone() else {
            return;
        };
        let identity = Some(self.setup.identity.trim())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let dir = self.config_dir();
        self.setup.busy = true;
        self.worker().spawn(move || {
            Report::SetUp(
                dir.map_or_else(metis_engine::settings::config_dir, Ok)
                    .and_then(|d| worker::apply_setup(request, identity, &d)),
            )
        });
    }

    /// Back to the first-run screen (another lab, another identity).
    pub(crate) fn change_setup(&mut self) {
        self.lab = None;
        self.setup = SetupForm {
            identity: self
                .settings
                .identity
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        self.screen = Screen::Setup;
    }

    /// Opens the engine and reads the lab index (again).
    pub(crate) fn open_lab(&mut self) {
        self.screen = Screen::OpeningLab;
        self.lab = None;
        let worker = self.worker();
        let events = worker.events();
        let options = self.config.engine.clone();
        worker.spawn(move || Report::Lab(worker::open_lab(&options, &events)));
    }

    /// The card screen for the chosen node: verifies it meanwhile and lists disks.
    pub(crate) fn choose_card(&mut self) {
        let (Some(node), Some(lab)) = (self.node.clone(), &self.lab) else {
            return;
        };
        let engine = lab.engine.clone();
        self.screen = Screen::Card;
        self.verified = None;
        self.prepared = None;
        self.done = None;
        self.failure = None;
        self.typed.clear();
        self.phases = Phases::default();
        self.warnings.clear();
        if self.output_path.is_empty() {
            self.output_path = self
                .config
                .output_dir
                .join(format!("{node}.img"))
                .display()
                .to_string();
        }
        self.disks = None;
        self.scanner = Some(Scanner::start(
            self.worker(),
            self.config.backend.clone(),
            0,
            self.config.policy,
        ));
        self.prepare_job += 1;
        let job = self.prepare_job;
        self.worker()
            .spawn(move || Report::Prepared(job, worker::prepare(&engine, &node)));
    }

    /// Back to the node list (the disks stop being listed).
    pub(crate) fn choose_node(&mut self) {
        self.scanner = None;
        self.prepared = None;
        self.verified = None;
        self.choice = None;
        self.screen = if self.lab.is_some() {
            Screen::Nodes
        } else {
            Screen::OpeningLab
        };
        if self.lab.is_none() {
            self.open_lab();
        }
    }

    /// The target the choice names.
    pub(crate) fn target(&self) -> Option<Target> {
        match self.choice.as_ref()? {
            Choice::Disk(path) => Some(Target::Device {
                path: path.clone(),
                assume_yes: false,
                policy: self.config.policy,
            }),
            Choice::File => {
                let path = self.output_path.trim();
                (!path.is_empty()).then(|| Target::Output(PathBuf::from(path)))
            }
        }
    }

    /// Whether the verified node's card can go on to the confirmation.
    pub(crate) fn ready_to_confirm(&self) -> bool {
        self.verified.is_some() && self.target().is_some()
    }

    /// To the confirmation (the disks stop being listed: the choice is made).
    pub(crate) fn confirm(&mut self) {
        self.scanner = None;
        self.typed.clear();
        self.focus_name = true;
        self.screen = Screen::Confirm;
    }

    /// Back from the confirmation to the card screen, with the node still verified.
    pub(crate) fn back_to_card(&mut self) {
        self.screen = Screen::Card;
        self.scanner = Some(Scanner::start(
            self.worker(),
            self.config.backend.clone(),
            self.verified.as_ref().map_or(0, |v| v.image_size),
            self.config.policy,
        ));
    }

    /// Whether the typed name is the node's.
    pub(crate) fn name_matches(&self) -> bool {
        self.verified
            .as_ref()
            .is_some_and(|v| self.typed.trim() == v.node)
    }

    /// Writes the card on a worker. Only after the operator typed the node's name:
    /// that is the engine's confirmation.
    pub(crate) fn flash(&mut self) {
        if !self.name_matches() {
            return;
        }
        let (Some(target), Some(lab)) = (self.target(), &self.lab) else {
            return;
        };
        let Some(prepared) = self.prepared.take() else {
            return;
        };
        let engine = lab.engine.clone();
        let backend = self.config.backend.clone();
        let cancel = CancelToken::new();
        self.cancel = Some(cancel.clone());
        self.screen = Screen::Progress;
        self.worker().spawn(move || {
            Report::Flashed(worker::flash(
                &engine,
                backend.as_ref(),
                prepared,
                target,
                cancel,
            ))
        });
    }

    /// The operator's Cancel: the engine stops at the next chunk.
    pub(crate) fn cancel(&mut self) {
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
    }

    /// Another card of the same node.
    pub(crate) fn flash_another(&mut self) {
        self.choice = None;
        self.choose_card();
    }
}
