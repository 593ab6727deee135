//! `metis-flash-gui`: the window. Everything is in the library (`metis_flash_gui`).
// A release build on Windows opens no console window beside its own.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use metis_flash_gui::{egui, App, Config, Window};

fn main() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Metis flasher")
            .with_app_id("metis-flash-gui")
            .with_inner_size([760.0, 560.0])
            .with_min_inner_size([560.0, 400.0]),
        ..Default::default()
    };
    eframe::run_native(
        "metis-flash-gui",
        options,
        Box::new(|_cc| Ok(Box::new(Window(App::new(Config::native()))))),
    )
}
