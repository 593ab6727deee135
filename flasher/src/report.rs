//! How the CLI shows the engine's event stream: a progress bar and notices on
//! stderr for people, or one JSON object per line on stdout (`--json`).

use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metis_engine::{Event, Events, Notice, Phase};

/// How much to tell the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A progress bar and messages on stderr.
    Normal,
    /// Warnings and errors only (`-q`).
    Quiet,
    /// Every event as a JSON line on stdout; warnings still on stderr.
    Json,
}

/// The events sink for `mode`.
pub fn events(mode: Mode) -> Events {
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
    Events::new(move |event| {
        if mode == Mode::Json {
            if let Ok(line) = serde_json::to_string(event) {
                println!("{line}");
            }
        }
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        let say = |bar: &Option<ProgressBar>, text: &str| match bar {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        };
        match event {
            Event::Notice(Notice::Warning { text }) => say(&bar, &format!("warning: {text}")),
            Event::Notice(Notice::Unreachable { reason }) => {
                say(&bar, &format!("warning: {reason}; using the cache"))
            }
            _ if mode != Mode::Normal => {}
            Event::PhaseStarted {
                phase: Phase::Probe,
                ..
            } => say(&bar, "checking that the card holds what it claims…"),
            Event::PhaseStarted { phase, total } if *total > 0 => {
                let b = ProgressBar::with_draw_target(Some(*total), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(phase.as_str());
                *bar = Some(b);
            }
            Event::PhaseStarted { .. } => {}
            Event::Progress(p) => {
                if let Some(b) = bar.as_ref() {
                    b.set_position(p.done);
                }
            }
            Event::PhaseFinished { .. } => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
            }
            Event::Notice(Notice::Info { text }) => say(&bar, text),
            Event::Notice(Notice::Verified {
                node,
                revision,
                digest,
                key,
            }) => say(
                &bar,
                &format!("{node}: revision {revision} ({digest}) verified with key {key}"),
            ),
            Event::Notice(Notice::Rejoin { node, commands }) => {
                let mut text = format!(
                    "{node} is a k3s server with embedded etcd: before its card boots, remove its \
                     old etcd member and node from the live cluster:"
                );
                for c in commands {
                    text.push_str(&format!("\n    {c}"));
                }
                say(&bar, &text)
            }
            Event::Notice(_) => {}
            _ => {}
        }
    })
}
