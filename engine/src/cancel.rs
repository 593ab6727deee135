//! Cancellation: a token the caller holds and the engine polls between chunks.
//!
//! Before the engine opens the target, cancelling means "stop, nothing was
//! written" (the CLI simply exits 130). Once the target is open the token is
//! *armed*: the engine stops at the next chunk and wipes the card's partition
//! table, exactly as after any other failure mid-write. The CLI's SIGINT/SIGTERM
//! handler and the GUI's Cancel button both call [`CancelToken::cancel`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct State {
    cancelled: AtomicBool,
    armed: AtomicBool,
}

/// A shared cancellation flag. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<State>);

impl CancelToken {
    /// A token not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the engine to stop.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Whether the engine holds the target open: from then on a cancel wipes the
    /// card instead of leaving it untouched, and the caller must let the engine
    /// finish (not end the process).
    pub fn is_armed(&self) -> bool {
        self.0.armed.load(Ordering::SeqCst)
    }

    /// Called by the engine when it opens the target.
    pub(crate) fn arm(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
    }
}
