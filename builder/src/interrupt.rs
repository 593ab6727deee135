//! Signals while a secret is in clear.
//!
//! `secrets edit` and `secrets init` run a child (the editor, `ssh-keygen`)
//! on plaintext in a private directory. Were metis-build to die on Ctrl-C,
//! SIGTERM or SIGHUP meanwhile, nothing would wipe that directory. So from
//! the first [`defer`] on, those signals only set a flag: the child still
//! gets what the terminal sends it and exits, metis-build then wipes the
//! plaintext and reports the interruption (exit 130). Outside a deferred
//! stretch a signal ends the process with 130 at once, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static DEFERRING: AtomicBool = AtomicBool::new(false);
static RECEIVED: AtomicBool = AtomicBool::new(false);

/// Exit status after an interruption (128 + SIGINT, as shells report it).
pub const EXIT: u8 = 130;

/// Until the end of the program, SIGINT/SIGTERM/SIGHUP only set a flag
/// ([`received`]). Returns false when no handler could be installed (then
/// signals keep their default effect).
pub fn defer() -> bool {
    static ONCE: Once = Once::new();
    let mut installed = true;
    ONCE.call_once(|| {
        installed = ctrlc::set_handler(|| {
            if DEFERRING.load(Ordering::SeqCst) {
                RECEIVED.store(true, Ordering::SeqCst);
            } else {
                eprintln!("\ninterrupted");
                std::process::exit(i32::from(EXIT));
            }
        })
        .is_ok();
    });
    DEFERRING.store(installed, Ordering::SeqCst);
    installed
}

/// Whether a signal came since [`defer`].
pub fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst)
}
