//! The engine's progress event stream: what the CLI's progress bar, `--json` and
//! the GUI all consume.
//!
//! The engine never prints. It reports each phase's start, its progress (bytes
//! done of total, rate, ETA, current chunk) and its end, and notices for the
//! operator (a cached artifact used, a demo key, the etcd rejoin commands) as
//! [`Event`]s through [`Events`], a cheap cloneable sink.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stage of the flow, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Fetching the lab index, the signature and the artifact's blobs.
    Download,
    /// Checking signature, node, revision and every digest.
    Verify,
    /// Checking the card holds what it claims (counterfeit probe).
    Probe,
    /// Reading a card that holds the same class's image and comparing it with
    /// the image chunk by chunk (spare cards: only what differs is written).
    Compare,
    /// Composing and writing the image.
    Write,
    /// Reading the card back, bypassing the page cache.
    ReadBack,
}

impl Phase {
    /// The phase's name as people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Download => "download",
            Phase::Verify => "verify",
            Phase::Probe => "probe",
            Phase::Compare => "compare",
            Phase::Write => "write",
            Phase::ReadBack => "read-back",
        }
    }
}

/// Something the operator should be told (the CLI prints it on stderr, the GUI
/// shows it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "notice", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Notice {
    /// Plain information (e.g. which cached artifact is used, a download's size).
    Info {
        /// The text.
        text: String,
    },
    /// A warning the operator must read (demo keys, a forced downgrade).
    Warning {
        /// The text.
        text: String,
    },
    /// The registry could not be reached: the engine goes on from the cache
    /// (a GUI shows an "offline" badge).
    Unreachable {
        /// The registry's error, in words.
        reason: String,
    },
    /// The node's artifact verified.
    Verified {
        /// The node.
        node: String,
        /// Its signed revision.
        revision: u64,
        /// The manifest digest.
        digest: String,
        /// Fingerprint of the key that signed it.
        key: String,
    },
    /// The node is a k3s server with embedded etcd: run these on the live cluster
    /// before its card boots.
    Rejoin {
        /// The node.
        node: String,
        /// The commands.
        commands: Vec<String>,
    },
}

/// One report from the engine.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A phase starts; `total` bytes are to be moved (0 when unknown).
    PhaseStarted {
        /// The phase.
        phase: Phase,
        /// Bytes to move.
        total: u64,
    },
    /// Progress within the current phase.
    Progress(Progress),
    /// The phase ended successfully.
    PhaseFinished {
        /// The phase.
        phase: Phase,
        /// Seconds it took.
        seconds: f64,
    },
    /// Something to tell the operator.
    Notice(Notice),
}

/// Progress within a phase.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Bytes per second since the phase started.
    pub rate: f64,
    /// Seconds left at that rate (`None` before there is a rate).
    pub eta_seconds: Option<f64>,
    /// The chunk being worked on, where the phase goes by chunks.
    pub chunk: Option<usize>,
}

type Sink = dyn Fn(&Event) + Send + Sync;

/// Where events go: a callback (the CLI), a channel (the GUI's worker), or
/// nowhere. Cloning shares the sink.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<Sink>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(sink)"
        } else {
            "Events(none)"
        })
    }
}

impl Events {
    /// Events go to `f`, called on whichever thread reports.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Events(Some(Arc::new(f)))
    }

    /// Events are dropped.
    pub fn none() -> Self {
        Events(None)
    }

    /// Events are sent on `sender` (a GUI's worker reads them from the receiver);
    /// a closed receiver drops them.
    pub fn channel(sender: std::sync::mpsc::Sender<Event>) -> Self {
        let sender = Mutex::new(sender);
        Events::new(move |e| {
            if let Ok(s) = sender.lock() {
                let _ = s.send(e.clone());
            }
        })
    }

    /// Reports `event`.
    pub fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(&event);
        }
    }

    /// Reports a notice.
    pub fn notice(&self, notice: Notice) {
        self.emit(Event::Notice(notice));
    }

    /// Reports plain information.
    pub fn info(&self, text: impl Into<String>) {
        self.notice(Notice::Info { text: text.into() });
    }

    /// Reports a warning.
    pub fn warn(&self, text: impl Into<String>) {
        self.notice(Notice::Warning { text: text.into() });
    }

    /// Starts `phase` over `total` bytes; the returned meter reports its progress.
    pub fn phase(&self, phase: Phase, total: u64) -> Meter {
        self.emit(Event::PhaseStarted { phase, total });
        Meter {
            events: self.clone(),
            phase,
            total,
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }
}

/// Progress of one phase: computes rate and ETA and reports at most every
/// [`Meter::INTERVAL`] (and always the last step), so a fast phase does not flood
/// a GUI's channel.
#[derive(Debug)]
pub struct Meter {
    events: Events,
    phase: Phase,
    total: u64,
    started: Instant,
    last: Mutex<Option<Instant>>,
}

impl Meter {
    /// Least time between two progress reports.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    /// The phase measured.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Sets the total (when it becomes known later).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// Reports `done` bytes (and the chunk at hand).
    pub fn set(&self, done: u64, chunk: Option<usize>) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if done < self.total && last.is_some_and(|l| now - l < Self::INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let seconds = (now - self.started).as_secs_f64();
        let rate = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        let eta_seconds = (rate > 0.0).then(|| self.total.saturating_sub(done) as f64 / rate);
        self.events.emit(Event::Progress(Progress {
            phase: self.phase,
            done,
            total: self.total,
            rate,
            eta_seconds,
            chunk,
        }));
    }

    /// Ends the phase successfully; returns its seconds.
    pub fn finish(self) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        self.events.emit(Event::PhaseFinished {
            phase: self.phase,
            seconds,
        });
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_reports_start_rate_the_last_step_and_the_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let events = Events::channel(tx);
        let meter = events.phase(Phase::Write, 100);
        meter.set(10, Some(0));
        meter.set(20, Some(1)); // within the interval: dropped
        meter.set(100, Some(9)); // the last step: always reported
        meter.finish();
        let got: Vec<Event> = rx.try_iter().collect();
        assert!(matches!(
            got[0],
            Event::PhaseStarted {
                phase: Phase::Write,
                total: 100
            }
        ));
        assert!(matches!(
            got[1],
            Event::Progress(Progress {
                done: 10,
                chunk: Some(0),
                ..
            })
        ));
        match got[2] {
            Event::Progress(p) => {
                assert_eq!((p.done, p.total, p.chunk), (100, 100, Some(9)));
                assert_eq!(p.eta_seconds, Some(0.0));
            }
            ref other => panic!("{other:?}"),
        }
        assert!(matches!(
            got[3],
            Event::PhaseFinished {
                phase: Phase::Write,
                ..
            }
        ));
        assert_eq!(got.len(), 4);
    }
}
