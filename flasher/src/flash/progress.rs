//! Progress on stderr: one bar per phase (write, read-back) with bytes, rate, ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much to tell the operator while flashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// A progress bar and messages on stderr.
    Normal,
    /// Errors only (`-q`, `--json`).
    Quiet,
}

/// The bar of the current phase (hidden when quiet or when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
    verbosity: Verbosity,
}

impl Progress {
    /// A progress display for `verbosity`.
    pub fn new(verbosity: Verbosity) -> Self {
        let bar = match verbosity {
            Verbosity::Normal => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            Verbosity::Quiet => ProgressBar::hidden(),
        };
        Self { bar, verbosity }
    }

    /// Starts phase `name` over `total` bytes.
    pub fn phase(&self, name: &'static str, total: u64) {
        self.bar.reset();
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_prefix(name);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
    }

    /// Sets the bytes done in this phase.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Ends the phase, leaving its line.
    pub fn finish_phase(&self) {
        self.bar.finish();
    }

    /// Removes the bar (on failure).
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    /// A message for the operator on stderr (not shown when quiet).
    pub fn say(&self, message: &str) {
        if self.verbosity == Verbosity::Normal {
            self.bar.suspend(|| eprintln!("{message}"));
        }
    }
}
