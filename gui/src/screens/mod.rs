//! One module per screen; each draws from the [`App`]'s state and calls its
//! methods on the operator's clicks.

pub mod card;
pub mod flash;
pub mod nodes;
pub mod setup;

use crate::app::{App, Screen};
use crate::egui;

/// Draws the window's whole content: the [`App`]'s screen, after it took in
/// what its workers reported.
pub fn window(app: &mut App, ui: &mut egui::Ui) {
    egui::CentralPanel::default().show(ui, |ui| {
        app.begin_frame(ui.ctx());
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| match app.screen() {
                Screen::Starting | Screen::OpeningLab => waiting(app, ui),
                Screen::Setup => setup::show(app, ui),
                Screen::Nodes => nodes::show(app, ui),
                Screen::Card => card::show(app, ui),
                Screen::Confirm => flash::confirm(app, ui),
                Screen::Progress => flash::progress(app, ui),
                Screen::Done => flash::done(app, ui),
                Screen::Error => flash::error(app, ui),
            });
    });
}

/// Space between blocks of a screen.
pub(crate) const GAP: f32 = 12.0;

/// Red for what stops the flow, as egui's own error colour.
pub(crate) fn error_text(ui: &mut egui::Ui, text: impl Into<String>) -> egui::Response {
    let colour = ui.visuals().error_fg_color;
    ui.label(egui::RichText::new(text.into()).color(colour))
}

/// Amber for what the operator must read.
pub(crate) fn warning_text(ui: &mut egui::Ui, text: impl Into<String>) -> egui::Response {
    let colour = ui.visuals().warn_fg_color;
    ui.label(egui::RichText::new(text.into()).color(colour))
}

/// A single-line text field tied to its label, so screen readers (and the tests)
/// find it by that label.
pub(crate) fn field(
    ui: &mut egui::Ui,
    label: &str,
    text: &mut String,
    hint: &str,
) -> egui::Response {
    ui.horizontal(|ui| {
        let label = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(text)
                .hint_text(hint)
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id)
    })
    .inner
}

/// While settings are read or the lab's index is fetched.
pub fn waiting(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Metis flasher");
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        ui.spinner();
        ui.label(match app.screen {
            Screen::Starting => "Reading the settings…",
            _ => "Fetching and verifying the lab index…",
        });
    });
}
