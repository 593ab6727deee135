//! `metis-flash-gui`: the window. Everything is in the library (`metis_flash_gui`).
// A release build on Windows opens no console window beside its own.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use metis_flash_gui::{egui, App, Config, Window};

const USAGE: &str = "\
Usage: metis-flash-gui [--force-non-removable]

The Metis flasher's window: set this computer up from a lab profile, pick a
node, pick the card, type the node's name, flash. The same engine, safety rules
and settings as metis-flash.

Options:
      --force-non-removable  Also offer disks that do not say they are removable
                             (a built-in card reader that reports a fixed disk).
                             The system disk and mounted system volumes are
                             still refused.
  -V, --version              Print the version
  -h, --help                 Print this help
";

fn main() -> std::process::ExitCode {
    let mut config = Config::native();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--force-non-removable" => config.policy.force_non_removable = true,
            "-V" | "--version" => {
                println!("metis-flash-gui {}", env!("METIS_LONG_VERSION"));
                return std::process::ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("metis-flash-gui: unknown argument {other}\n\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Metis flasher")
            .with_app_id("metis-flash-gui")
            .with_inner_size([760.0, 560.0])
            .with_min_inner_size([560.0, 400.0]),
        ..Default::default()
    };
    match eframe::run_native(
        "metis-flash-gui",
        options,
        Box::new(|_cc| Ok(Box::new(Window(App::new(config))))),
    ) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "metis-flash-gui: the window could not be opened: {e}\n\
                 (no display? `metis-flash NODE` flashes from a terminal)"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
