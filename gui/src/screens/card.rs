//! Where the card goes: the disks this OS reports, each offered or greyed with
//! the safety rule that refuses it (listed again every few seconds on a worker),
//! or an image file. The node's artifact is fetched and verified meanwhile.

use metis_engine::flash::size_text;

use super::{error_text, warning_text, GAP};
use crate::app::{App, Choice};
use crate::egui;
use crate::worker::Verdict;

/// How to start the window so it may write disks.
pub const HOW_TO_RUN_AS_ROOT: &str = "Writing a disk needs administrator rights. Close this \
    window and start it again with `sudo -E metis-flash-gui` (or `pkexec metis-flash-gui`). \
    An image file can be written as you are.";

/// Draws the card screen.
pub fn show(app: &mut App, ui: &mut egui::Ui) {
    // Enter goes on once a card is chosen: a disk chosen with Tab and Enter (a
    // focused button takes that first Enter, so this looks before any is drawn),
    // or an image file's path typed.
    // Enter on a focused Back still means Back (its id is the last frame's).
    let on_back = app.card_back.is_some() && ui.memory(|m| m.focused()) == app.card_back;
    if app.ready_to_confirm() && !on_back && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
        app.confirm();
        return;
    }
    let node = app.node.clone().unwrap_or_default();
    ui.heading(format!("Where should the card for {node} go?"));
    ui.add_space(GAP / 2.0);
    match &app.verified {
        Some(v) => {
            ui.label(format!(
                "{node}: revision {} verified, image {}.",
                v.revision,
                size_text(v.image_size)
            ));
        }
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                let doing = match &app.phases.current {
                    Some((phase, Some(p))) if p.total > 0 => format!(
                        "{} {:.0} %",
                        phase.as_str(),
                        100.0 * p.done as f64 / p.total as f64
                    ),
                    Some((phase, _)) => phase.as_str().to_owned(),
                    None => "starting".to_owned(),
                };
                ui.label(format!(
                    "Fetching and verifying {node}'s artifact ({doing})…"
                ));
            });
        }
    }
    for w in &app.warnings {
        warning_text(ui, w.clone());
    }
    ui.add_space(GAP);
    let may_write = app.config.may_write_disks;
    if !may_write {
        warning_text(ui, HOW_TO_RUN_AS_ROOT);
        ui.add_space(GAP / 2.0);
    }
    ui.strong("Disks");
    match &app.disks {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Looking for disks…");
            });
        }
        Some(Err(e)) => {
            error_text(ui, format!("listing disks: {e}"));
        }
        Some(Ok(rows)) if rows.is_empty() => {
            ui.label("No disk found. Insert the card (a USB reader or SD slot).");
        }
        Some(Ok(rows)) => {
            for row in rows.clone() {
                let title = format!(
                    "{}  {}  ({}, {})",
                    row.path.display(),
                    row.model,
                    row.bus,
                    size_text(row.size)
                );
                let (enabled, detail) = match &row.verdict {
                    Verdict::Offered(parts) if may_write => (true, parts.clone()),
                    Verdict::Offered(_) => (false, "needs administrator rights".to_owned()),
                    Verdict::Refused(why) => (false, why.clone()),
                    Verdict::Unchecked => (false, "checked once the artifact is verified".into()),
                };
                let choice = Choice::Disk(row.path.clone());
                let selected = app.choice.as_ref() == Some(&choice);
                let response = ui.add_enabled(enabled, egui::Button::selectable(selected, title));
                if response.clicked() {
                    app.choice = Some(choice);
                }
                ui.indent(row.path.display().to_string(), |ui| {
                    if enabled {
                        ui.weak(detail);
                    } else {
                        ui.add_enabled(false, egui::Label::new(detail));
                    }
                });
            }
        }
    }
    ui.add_space(GAP);
    ui.strong("Or an image file (for a VM, or to write with another tool)");
    ui.horizontal(|ui| {
        let selected = app.choice == Some(Choice::File);
        if ui
            .add(egui::Button::selectable(selected, "Image file…"))
            .clicked()
        {
            app.choice = Some(Choice::File);
        }
        let label = ui.label("Path");
        let edit = ui
            .add(
                egui::TextEdit::singleline(&mut app.output_path)
                    .hint_text("/path/to/node.img")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if edit.changed() || edit.gained_focus() {
            app.choice = Some(Choice::File);
        }
    });
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        let back = ui.button("Back");
        app.card_back = Some(back.id);
        if back.clicked() {
            app.choose_node();
            return;
        }
        if ui
            .add_enabled(app.ready_to_confirm(), egui::Button::new("Next: confirm"))
            .clicked()
        {
            app.confirm();
        }
    });
}
