//! The lab inventory: schema, loading and validation with file:line errors.
//!
//! The bottom layer of the builder's side: it imports nothing of Metis but
//! the leaves [`location`](crate::location) and [`paths`](crate::paths).
//! Checks that need more of Metis (rendering every node, reading the demo
//! identities) are [`crate::lab`]'s, which is what callers use:
//!
//! ```no_run
//! let checked = metis_core::lab::check(std::path::Path::new("inventory"));
//! for d in &checked.diagnostics {
//!     eprintln!("{d}");
//! }
//! ```

pub mod diag;
mod load;
pub mod model;
pub mod rules;
mod schema;

/// Lives in the leaf [`location`](crate::location), where the flasher (built
/// without the inventory) reaches it too.
pub use crate::location::is_test_registry;
pub use diag::{Diagnostic, Severity};
pub use load::{builtin, resolve, InventoryError, Options, Resolved};
pub use model::*;
