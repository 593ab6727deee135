//! The nodes of the verified lab index: class, revision, whether the cache holds
//! the artifact; a search box; a badge when the registry cannot be reached.

use metis_engine::CacheState;

use super::{field, warning_text, GAP};
use crate::app::App;
use crate::egui;

/// Draws the node screen.
pub fn show(app: &mut App, ui: &mut egui::Ui) {
    let Some(lab) = &app.lab else {
        return;
    };
    let lab_name = app.settings.lab.clone().unwrap_or_else(|| "the lab".into());
    let offline = lab.offline;
    ui.horizontal(|ui| {
        ui.heading("Which node's card?");
        if offline {
            ui.add_space(GAP);
            let badge = egui::RichText::new(" offline ")
                .strong()
                .color(ui.visuals().strong_text_color())
                .background_color(ui.visuals().warn_fg_color.gamma_multiply(0.35));
            ui.label(badge).on_hover_text(
                "the registry cannot be reached: the cached lab index and artifacts are used",
            );
        }
    });
    let fetched = lab
        .nodes
        .fetched
        .as_deref()
        .map(|f| format!(", fetched {f}"))
        .unwrap_or_default();
    ui.label(format!(
        "{lab_name}: lab index revision {}{fetched}, signed by key {}…",
        lab.nodes.revision,
        lab.nodes.key.get(..16).unwrap_or(&lab.nodes.key),
    ));
    if offline {
        warning_text(
            ui,
            "The registry cannot be reached: only nodes marked cached can be flashed.",
        );
    }
    ui.add_space(GAP);
    let search = field(ui, "Search", &mut app.search, "node or class");
    let enter = search.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    ui.add_space(GAP);
    let needle = app.search.trim().to_lowercase();
    let shown: Vec<_> = lab
        .nodes
        .nodes
        .iter()
        .filter(|n| {
            needle.is_empty()
                || n.node.to_lowercase().contains(&needle)
                || n.class.to_lowercase().contains(&needle)
        })
        .collect();
    // What Next acts on is always on screen: a node the search hides is no longer
    // chosen, and a search that leaves one node chooses it.
    let mut chosen = match (&app.node, shown.as_slice()) {
        (_, [only]) if !needle.is_empty() => Some(only.node.clone()),
        (Some(node), _) if shown.iter().any(|n| &n.node == node) => Some(node.clone()),
        _ => None,
    };
    // The list scrolls on its own, so the buttons below it stay in the window
    // however many nodes the lab has.
    // Enter in the search box, or a double click, goes on with the chosen node.
    let mut go = enter && chosen.is_some();
    let list_height = (ui.available_height() - 3.0 * GAP - 24.0).max(120.0);
    egui::ScrollArea::vertical()
        .max_height(list_height)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("nodes")
                .num_columns(4)
                .striped(true)
                .spacing([24.0, 6.0])
                .show(ui, |ui| {
                    ui.strong("Node");
                    ui.strong("Class");
                    ui.strong("Revision");
                    ui.strong("Cache");
                    ui.end_row();
                    for n in &shown {
                        let selected = chosen.as_deref() == Some(n.node.as_str());
                        let row = ui.selectable_label(selected, n.node.as_str());
                        if row.clicked() {
                            chosen = Some(n.node.clone());
                        }
                        if row.double_clicked() {
                            chosen = Some(n.node.clone());
                            go = true;
                        }
                        ui.label(n.class.as_str());
                        ui.label(n.revision.to_string());
                        let cache = match (n.cache, n.verifies) {
                            (CacheState::Cached, true) => "cached".to_owned(),
                            (CacheState::NotCached, _) => "not cached".to_owned(),
                            (state, _) => match &n.problem {
                                Some(p) => format!("{}: {p}", state.as_str()),
                                None => state.as_str().to_owned(),
                            },
                        };
                        ui.label(cache);
                        ui.end_row();
                    }
                });
        });
    app.node = chosen;
    ui.add_space(GAP);
    ui.horizontal(|ui| {
        let next = ui.add_enabled(
            app.node.is_some(),
            egui::Button::new("Next: choose the card"),
        );
        if next.clicked() || go {
            app.choose_card();
        }
        if ui.button("Reload").clicked() {
            app.open_lab();
        }
        if ui.button("Change lab or identity…").clicked() {
            app.change_setup();
        }
    });
}
