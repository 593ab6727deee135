//! The lab inventory: schema, loading and validation with file:line errors.
//!
//! ```no_run
//! let checked = metis_core::inventory::check(std::path::Path::new("inventory"));
//! for d in &checked.diagnostics {
//!     eprintln!("{d}");
//! }
//! ```

pub mod diag;
mod load;
pub mod model;
mod profile;
pub mod rules;
mod schema;

/// Moved to [`oci`](crate::oci), where the flasher (built without the inventory) reaches it.
pub use crate::oci::is_test_registry;
pub use diag::{Diagnostic, Severity};
pub use load::{builtin, check, load, load_for_sealing, Checked, InventoryError};
pub use model::*;
pub use profile::{operator_profile, ExportedProfile, ProfileExportError};
