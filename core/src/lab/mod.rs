//! The lab as `metis-build` loads it: the inventory checked by its own rules
//! ([`inventory`]) and by what only the stages above it know, in one place:
//!
//! * every node must render ([`render`](crate::render)): whatever the
//!   inventory's rules miss but the render refuses is found at `check` time,
//!   not when a card is built;
//! * the demo identities (`demo-keys/*.agekey`) are read here, so the
//!   inventory can warn about a demo recipient without parsing age identities.
//!
//! Also the operator profile a lab exports ([`operator_profile`]), which needs
//! [`trust`](crate::trust) and [`profile`](crate::profile).

mod profile;

use std::path::Path;

use crate::inventory::{self, Diagnostic, Inventory, InventoryError, Severity};

pub use profile::{operator_profile, ExportedProfile, ProfileExportError};

/// The result of checking a lab.
#[derive(Debug)]
pub struct Checked {
    /// The resolved inventory, when there was no error.
    pub inventory: Option<Inventory>,
    /// Every finding, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// Loads and validates an inventory, failing on any error.
///
/// Golden image files are not looked for: commands that work without them
/// (`nodes`, `render --out`, `golden import`, which is how they arrive) must
/// work on a fresh clone; the stage that reads one reports it missing.
pub fn load(dir: &Path) -> Result<Inventory, InventoryError> {
    into_loaded(dir, check_with(dir, true, false))
}

/// Loads and validates an inventory like [`load`], except that nodes may lack
/// their sealed secrets (`secrets/<node>.age`): what `metis-build secrets`
/// works from, since it is what creates them.
pub fn load_for_sealing(dir: &Path) -> Result<Inventory, InventoryError> {
    into_loaded(dir, check_with(dir, false, false))
}

/// Reads, validates and resolves the inventory in `dir`, collecting every
/// finding: what `metis-build check` reports. Beyond [`load`], every local
/// golden image file (`golden: {path: …}`) must exist and be readable, so a
/// fresh clone hears what to run before `publish` fails on each node.
pub fn check(dir: &Path) -> Checked {
    check_with(dir, true, true)
}

fn into_loaded(dir: &Path, checked: Checked) -> Result<Inventory, InventoryError> {
    match checked.inventory {
        Some(inv) => Ok(inv),
        None => Err(InventoryError::Invalid {
            dir: dir.display().to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

fn check_with(dir: &Path, sealed: bool, golden_files: bool) -> Checked {
    let options = inventory::Options {
        sealed,
        golden_files,
        demo_recipients: demo_recipients(dir),
    };
    let resolved = inventory::resolve(dir, &options);
    let mut diagnostics = resolved.diagnostics;
    // Render only what resolved; a missing golden image does not stop it, so
    // a clone without its images still hears about render errors.
    if let Some(inv) = &resolved.inventory {
        diagnostics.extend(render_findings(inv));
    }
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diagnostics.dedup();
    let clean = !diagnostics.iter().any(|d| d.severity == Severity::Error);
    Checked {
        inventory: resolved.inventory.filter(|_| clean),
        diagnostics,
    }
}

/// Every node must render: whatever the inventory's rules miss but the render
/// refuses is still found here, at `check` time, not when a card is built.
fn render_findings(inv: &Inventory) -> Vec<Diagnostic> {
    let mut findings = Vec::new();
    for node in inv.nodes.values() {
        if let Err(e) = crate::render::render(inv, &node.name) {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            findings.push(
                Diagnostic::error(&node.file, inventory::diag::Pos::FILE, message).hint(format!(
                    "fix what it names in {} (or in metis.yaml or the node's class); `metis-build render {}` shows the same error",
                    node.file.display(),
                    node.name
                )),
            );
        }
    }
    findings
}

/// Recipients derived from the demo identities in `demo-keys/*.agekey`,
/// when that directory exists.
fn demo_recipients(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("demo-keys")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("agekey") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if let Ok(id) = line.parse::<age::x25519::Identity>() {
                out.push(id.to_public().to_string());
            }
        }
    }
    out
}
