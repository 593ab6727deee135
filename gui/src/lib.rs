//! metis-flash-gui: the operator's window over the flash engine. Screens for
//! first-run setup, the node, the card, the typed confirmation, progress, and
//! the outcome; the flow itself (verify before writing, safety rules, wipe on
//! failure) is the engine's, run on worker threads ([`worker`]).
#![deny(unsafe_code)]

pub mod app;
pub mod screens;
pub mod worker;

pub use app::{App, Config, Screen};
pub use eframe::egui;

/// Whether this process may write whole disks: root on Unix (the engine opens
/// them with O_DIRECT|O_EXCL); elsewhere the engine says so itself.
pub fn may_write_disks() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        #[allow(unsafe_code)]
        unsafe {
            libc::geteuid() == 0
        }
    }
    #[cfg(not(unix))]
    {
        // TODO(windows): the manifest asking for administrator is issue 20's job.
        true
    }
}

/// The eframe application: the [`App`] drawn in the root window.
pub struct Window(pub App);

impl eframe::App for Window {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        screens::window(&mut self.0, ui);
    }
}

#[cfg(test)]
mod snapshots;
