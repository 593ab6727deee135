//! The last steps: typing the node's name, the write's progress, and the outcome
//! (done, or the engine's error with what became of the card).

use metis_engine::flash::size_text;
use metis_engine::Phase;

use super::{error_text, field, warning_text, GAP};
use crate::app::{App, Choice};
use crate::egui;
use crate::worker::Verdict;

/// The phases in the order they run, as the progress screen lists them
/// (`Compare` only once a spare card is being compared).
const PHASES: [Phase; 6] = [
    Phase::Download,
    Phase::Verify,
    Phase::Probe,
    Phase::Compare,
    Phase::Write,
    Phase::ReadBack,
];

fn target_text(app: &App) -> String {
    match &app.choice {
        Some(Choice::Disk(path)) => {
            let row = app
                .disks
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|rows| rows.iter().find(|r| &r.path == path));
            match row {
                Some(r) => format!(
                    "the disk {} ({}, {}, {})",
                    path.display(),
                    r.model,
                    r.bus,
                    size_text(r.size)
                ),
                None => format!("the disk {}", path.display()),
            }
        }
        Some(Choice::File) => format!("the image file {}", app.output_path.trim()),
        None => String::new(),
    }
}

/// Draws the confirmation: the node's name typed unlocks Flash.
pub fn confirm(app: &mut App, ui: &mut egui::Ui) {
    let Some(v) = app.verified.clone() else {
        return;
    };
    ui.heading("Confirm");
    ui.add_space(GAP / 2.0);
    ui.label(format!(
        "Write {} (revision {}, {}) to {}.",
        v.node,
        v.revision,
        size_text(v.image_size),
        target_text(app)
    ));
    match &app.choice {
        Some(Choice::Disk(path)) => {
            let parts = app
                .disks
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|rows| rows.iter().find(|r| &r.path == path))
                .and_then(|r| match &r.verdict {
                    Verdict::Offered(parts) => Some(parts.clone()),
                    _ => None,
                });
            warning_text(
                ui,
                match parts {
                    Some(parts) => format!("Everything on this disk will be lost: {parts}."),
                    None => "Everything on this disk will be lost.".to_owned(),
                },
            );
        }
        _ => {
            ui.label("An existing file of that name is replaced once the new one is verified.");
        }
    }
    ui.add_space(GAP);
    let name = field(
        ui,
        "Type the node's name to confirm",
        &mut app.typed,
        &v.node,
    );
    // The field takes the keyboard when the screen opens, so the name can be
    // typed at once; the next frame, drawn now, has it focused before a key comes.
    if std::mem::take(&mut app.focus_name) {
        name.request_focus();
        ui.ctx().request_repaint();
    }
    let matches = app.name_matches();
    // Enter in the field flashes once the name matches, as the button does.
    let enter = name.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if !app.typed.trim().is_empty() && !matches {
        ui.weak(format!("type {} exactly", v.node));
    }
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        if ui.button("Back").clicked() {
            app.back_to_card();
        }
        if ui
            .add_enabled(matches, egui::Button::new(format!("Flash {}", v.node)))
            .clicked()
            || (enter && matches)
        {
            app.flash();
        }
    });
}

fn eta_text(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s left", s / 60, s % 60)
    } else {
        format!("{s} s left")
    }
}

/// Draws the write's progress, phase by phase, with Cancel.
pub fn progress(app: &mut App, ui: &mut egui::Ui) {
    let node = app
        .verified
        .as_ref()
        .map(|v| v.node.clone())
        .unwrap_or_default();
    ui.heading(format!("Writing {node}"));
    ui.label(format!("to {}", target_text(app)));
    ui.add_space(GAP);
    egui::Grid::new("phases")
        .num_columns(2)
        .spacing([16.0, 8.0])
        .show(ui, |ui| {
            for phase in PHASES {
                let finished = app.phases.finished.iter().find(|(p, _)| *p == phase);
                let current = app
                    .phases
                    .current
                    .as_ref()
                    .is_some_and(|(c, _)| *c == phase);
                if phase == Phase::Compare && finished.is_none() && !current {
                    continue;
                }
                ui.label(phase.as_str());
                match (&app.phases.current, finished) {
                    (Some((current, progress)), _) if *current == phase => {
                        let (fraction, text) = match progress {
                            Some(p) if p.total > 0 => {
                                let mut text = format!(
                                    "{} of {}  {:.1} MB/s",
                                    size_text(p.done),
                                    size_text(p.total),
                                    p.rate / 1e6
                                );
                                if let Some(eta) = p.eta_seconds {
                                    text.push_str(&format!("  {}", eta_text(eta)));
                                }
                                (p.done as f32 / p.total as f32, text)
                            }
                            _ => (0.0, "starting…".to_owned()),
                        };
                        ui.add(
                            egui::ProgressBar::new(fraction)
                                .text(text)
                                .desired_width(420.0),
                        );
                    }
                    (_, Some((_, seconds))) => {
                        ui.label(format!("done in {seconds:.1} s"));
                    }
                    _ => {
                        ui.weak("waiting");
                    }
                }
                ui.end_row();
            }
        });
    for w in &app.warnings {
        warning_text(ui, w.clone());
    }
    ui.add_space(GAP);
    let cancelling = app.cancel.as_ref().is_some_and(|c| c.is_cancelled());
    let label = if cancelling {
        "Cancelling…"
    } else {
        "Cancel"
    };
    if ui
        .add_enabled(
            app.cancel.is_some() && !cancelling,
            egui::Button::new(label),
        )
        .clicked()
    {
        app.cancel();
    }
    if app.cancel.as_ref().is_some_and(|c| c.is_armed()) {
        ui.weak("Cancelling now wipes the card's partition table, so it cannot boot half-written.");
    }
}

/// Draws the outcome of a card written and read back.
pub fn done(app: &mut App, ui: &mut egui::Ui) {
    let (Some(summary), Some(v)) = (app.done.clone(), app.verified.clone()) else {
        return;
    };
    if summary.target_kind == "device" {
        ui.heading("Insert and power on");
        ui.label(format!(
            "The card for {} is written and read back. Insert it into {} and power it on.",
            v.node, v.node
        ));
    } else {
        ui.heading("Written and verified");
        ui.label(format!(
            "{} is written to {} and read back.",
            v.node,
            summary.target.display()
        ));
    }
    ui.add_space(GAP);
    egui::Grid::new("done")
        .num_columns(2)
        .spacing([16.0, 6.0])
        .show(ui, |ui| {
            ui.label("Node");
            ui.strong(v.node.as_str());
            ui.end_row();
            ui.label("Revision");
            ui.label(v.revision.to_string());
            ui.end_row();
            ui.label("Digest");
            ui.monospace(v.digest.as_str());
            ui.end_row();
            ui.label("Written");
            ui.label(format!(
                "{} in {:.1} s ({:.1} MB/s), read back in {:.1} s",
                size_text(summary.bytes_written),
                summary.write_seconds,
                summary.write_bytes_per_second / 1e6,
                summary.verify_seconds
            ));
            ui.end_row();
            if let Some(comparison) = summary.comparison_text() {
                ui.label("Spare card");
                ui.label(comparison);
                ui.end_row();
            }
        });
    for w in &app.warnings {
        warning_text(ui, w.clone());
    }
    if !v.rejoin.is_empty() {
        ui.add_space(GAP);
        ui.strong(format!(
            "{} is a k3s server: run these on the live cluster before its card boots",
            v.node
        ));
        let commands = v.rejoin.join("\n");
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.monospace(commands.as_str());
        });
        if ui.button("Copy the commands").clicked() {
            ui.ctx().copy_text(commands);
        }
    }
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        if ui.button("Flash another card").clicked() {
            app.flash_another();
        }
        if ui.button("Choose another node").clicked() {
            app.choose_node();
        }
    });
}

/// Draws the engine's error, its hint, and what became of the card.
pub fn error(app: &mut App, ui: &mut egui::Ui) {
    let Some(failure) = app.failure.clone() else {
        return;
    };
    ui.heading("Not flashed");
    ui.add_space(GAP / 2.0);
    error_text(ui, failure.message.clone());
    if let Some(hint) = &failure.hint {
        ui.add_space(GAP / 2.0);
        ui.label(format!("What to do: {hint}"));
    }
    ui.add_space(GAP);
    if failure.nothing_written && failure.file {
        ui.strong("Nothing was written: the image file is as it was.");
    } else if failure.nothing_written {
        ui.strong("Nothing was written.");
    } else {
        warning_text(
            ui,
            "The card was wiped: its partition table was erased so it cannot boot \
             half-written. Flash it again.",
        );
    }
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        if app.node.is_some() && app.lab.is_some() && ui.button("Try again").clicked() {
            app.choose_card();
        }
        if app.lab.is_some() && ui.button("Choose another node").clicked() {
            app.choose_node();
        }
        if ui.button("Open the lab again").clicked() {
            app.open_lab();
        }
        if failure.setup && ui.button("Set up again").clicked() {
            app.change_setup();
        }
    });
}
