//! First run: the lab profile's registry and signing keys, confirmed by their
//! fingerprints, and the operator's identity file. The same settings
//! `metis-flash setup lab.metis` writes.

use metis_core::trust::DEMO_KEY_FINGERPRINT;

use super::{error_text, field, warning_text, GAP};
use crate::app::App;
use crate::egui;

/// Draws the first-run screen.
pub fn show(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Set up this computer");
    ui.label(
        "Open the lab profile your lab's maintainer gave you \
         (metis-build operator-profile > lab.metis).",
    );
    ui.label("Or drop the file on this window (and your identity file after it).");
    ui.add_space(GAP);
    let busy = app.setup.busy;
    // A dropped `.metis` file is the lab profile (opened at once); any other is
    // the identity.
    for path in ui.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect::<Vec<_>>()
    }) {
        if path.extension().is_some_and(|e| e == "metis") {
            app.setup.profile_path = path.display().to_string();
            if !busy {
                app.read_profile();
            }
        } else {
            app.setup.identity = path.display().to_string();
        }
    }
    ui.horizontal(|ui| {
        let label = ui.label("Lab profile");
        let edit = ui
            .add(
                egui::TextEdit::singleline(&mut app.setup.profile_path)
                    .hint_text("/path/to/lab.metis")
                    .desired_width(ui.available_width() - 80.0),
            )
            .labelled_by(label.id);
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let open = ui.add_enabled(
            !busy && !app.setup.profile_path.trim().is_empty(),
            egui::Button::new("Open…"),
        );
        if (open.clicked() || enter) && !app.setup.profile_path.trim().is_empty() {
            app.read_profile();
        }
    });
    if let Some(problem) = &app.setup.problem {
        ui.add_space(GAP);
        error_text(ui, problem.clone());
    }
    let Some(request) = &app.setup.request else {
        return;
    };
    ui.add_space(GAP);
    egui::Grid::new("profile")
        .num_columns(2)
        .spacing([16.0, 6.0])
        .show(ui, |ui| {
            ui.label("Lab");
            ui.strong(request.lab.clone().unwrap_or_default());
            ui.end_row();
            ui.label("Registry");
            let registry = request.registry.clone().unwrap_or_default();
            match &request.prefix {
                Some(prefix) => ui.monospace(format!("{registry} (prefix {prefix})")),
                None => ui.monospace(registry),
            };
            ui.end_row();
            ui.label("Lab CA");
            ui.label(if request.ca_pem.is_some() {
                "from the profile (trusted for the registry only)"
            } else {
                "none (the registry's certificate is publicly trusted)"
            });
            ui.end_row();
            for (i, fingerprint) in request.fingerprints().iter().enumerate() {
                ui.label(format!("Signing key {}", i + 1));
                ui.vertical(|ui| {
                    // Two halves of 32 hex digits: easier to compare aloud.
                    let (a, b) = fingerprint.split_at(fingerprint.len() / 2);
                    ui.monospace(format!("SHA-256 {a}\n        {b}"));
                    if fingerprint == DEMO_KEY_FINGERPRINT {
                        warning_text(ui, "the example lab's DEMO key: its private half is public");
                    }
                });
                ui.end_row();
            }
        });
    ui.add_space(GAP);
    ui.label(
        "Compare each fingerprint with the one your lab published. A different one \
         means this profile is not your lab's: do not continue.",
    );
    ui.add_space(GAP);
    field(
        ui,
        "Your identity file",
        &mut app.setup.identity,
        "age identity or SSH private key (optional: ~/.ssh and age's defaults are tried)",
    );
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!busy, egui::Button::new("Trust these keys and save"))
            .clicked()
        {
            app.save_setup();
        }
        if busy {
            ui.spinner();
        }
    });
}
