//! Reading the inventory directory, checking every rule and resolving it into
//! the [`model`](super::model). All findings of a run are collected, not only
//! the first: a pull request gets the whole list at once.
//!
//! One file per concern: [`cx`] collects findings and parses files; `lab`,
//! `class`, `node` (with `network`, `disks`, `hooks`) and `settings` resolve
//! each part; `files` checks what must exist beside the YAML; `hints` says
//! what to write instead for each rule.

mod class;
mod cx;
mod disks;
mod files;
mod hints;
mod hooks;
mod lab;
mod network;
mod node;
mod settings;

use std::collections::BTreeMap;
use std::path::Path;

use super::diag::{Diagnostic, Pos, Severity};
use super::model::*;
use super::schema;
use cx::Cx;

/// Built-in defaults, used where neither metis.yaml, the class nor the node says otherwise.
pub mod builtin {
    /// Time zone.
    pub const TIMEZONE: &str = "Etc/UTC";
    /// journald `SystemMaxUse=`.
    pub const JOURNALD_SYSTEM_MAX_USE: &str = "500M";
    /// journald `SystemKeepFree=`.
    pub const JOURNALD_SYSTEM_KEEP_FREE: &str = "1G";
    /// journald `MaxRetentionSec=`.
    pub const JOURNALD_MAX_RETENTION: &str = "1month";
    /// kubelet `containerLogMaxSize`.
    pub const CONTAINER_LOG_MAX_SIZE: &str = "10Mi";
    /// kubelet `containerLogMaxFiles`.
    pub const CONTAINER_LOG_MAX_FILES: u32 = 5;
    /// kubelet `imageGCHighThresholdPercent`.
    pub const IMAGE_GC_HIGH: u8 = 85;
    /// kubelet `imageGCLowThresholdPercent`.
    pub const IMAGE_GC_LOW: u8 = 80;
    /// Seconds to wait for a data disk.
    pub const DISK_TIMEOUT_SEC: u32 = 30;
}

/// The result of checking an inventory.
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

/// Errors of [`load`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The inventory has errors; each names its file and line.
    #[error("{}", invalid_message(dir, diagnostics))]
    Invalid {
        /// The inventory directory.
        dir: String,
        /// All findings.
        diagnostics: Vec<Diagnostic>,
    },
}

/// The inventory's errors (the first few, each with file and line) and how to
/// see them all.
fn invalid_message(dir: &str, diagnostics: &[Diagnostic]) -> String {
    const SHOWN: usize = 5;
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let mut text = format!("the inventory at {dir} has {} error(s):", errors.len());
    for d in errors.iter().take(SHOWN) {
        text.push_str(&format!("\n{d}"));
    }
    if errors.len() > SHOWN {
        text.push_str(&format!("\n… and {} more", errors.len() - SHOWN));
    }
    text.push_str(&format!(
        "\nrun `metis-build check --inventory {dir}` to see every finding"
    ));
    text
}

/// Loads and validates an inventory, failing on any error.
///
/// Golden image files are not looked for: commands that work without them
/// (`nodes`, `render --out`, `golden import`, which is how they arrive) must
/// work on a fresh clone; the stage that reads one reports it missing.
pub fn load(dir: &Path) -> Result<Inventory, InventoryError> {
    let checked = check_with(
        dir,
        Required {
            sealed: true,
            golden_files: false,
        },
    );
    match checked.inventory {
        Some(inv) => Ok(inv),
        None => Err(InventoryError::Invalid {
            dir: dir.display().to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

/// Loads and validates an inventory like [`load`], except that nodes may lack
/// their sealed secrets (`secrets/<node>.age`): what `metis-build secrets`
/// works from, since it is what creates them.
pub fn load_for_sealing(dir: &Path) -> Result<Inventory, InventoryError> {
    let checked = check_with(
        dir,
        Required {
            sealed: false,
            golden_files: false,
        },
    );
    match checked.inventory {
        Some(inv) => Ok(inv),
        None => Err(InventoryError::Invalid {
            dir: dir.display().to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

/// Reads, validates and resolves the inventory in `dir`, collecting every
/// finding: what `metis-build check` reports. Beyond [`load`], every local
/// golden image file (`golden: {path: …}`) must exist and be readable, so a
/// fresh clone hears what to run before `publish` fails on each node.
pub fn check(dir: &Path) -> Checked {
    check_with(
        dir,
        Required {
            sealed: true,
            golden_files: true,
        },
    )
}

/// Which files outside the YAML the inventory must already have.
#[derive(Debug, Clone, Copy)]
struct Required {
    /// `secrets/<node>.age` and `secrets/cluster.age`.
    sealed: bool,
    /// The classes' local golden images (`golden.path`).
    golden_files: bool,
}

fn check_with(dir: &Path, required: Required) -> Checked {
    if !dir.is_dir() {
        return Checked {
            inventory: None,
            diagnostics: vec![Diagnostic::error(dir, Pos::FILE, "inventory directory does not exist").hint(
                "pass --inventory DIR (or set METIS_INVENTORY) to the directory holding metis.yaml, classes/ and nodes/",
            )],
        };
    }
    let mut cx = Cx {
        dir: dir.to_path_buf(),
        diags: Vec::new(),
    };
    let lab = cx.parse::<schema::LabFile>(Path::new("metis.yaml"));
    let (class_files, unparsed_classes) = cx.parse_dir::<schema::ClassFile>("classes");
    let (node_files, _) = cx.parse_dir::<schema::NodeFile>("nodes");

    let mut inventory = None;
    if let Some((lab_file, lab_text)) = lab {
        let _ = lab_text;
        let lab = cx.lab(&lab_file);
        let classes: BTreeMap<String, (Class, &schema::ClassFile)> = class_files
            .iter()
            .filter_map(|(name, path, f)| cx.class(name, path, f).map(|c| (name.clone(), (c, f))))
            .collect();
        // A class whose file exists is known even when it failed to parse:
        // its own error says what is wrong, its nodes get no second one.
        let mut class_names: Vec<String> = class_files
            .iter()
            .map(|(n, _, _)| n.clone())
            .chain(unparsed_classes)
            .collect();
        class_names.sort();
        let mut nodes = BTreeMap::new();
        for (name, path, f) in &node_files {
            if let Some(node) = cx.node(name, path, f, &lab_file, &lab, &classes, &class_names) {
                nodes.insert(name.clone(), node);
            }
        }
        cx.cross_node(&node_files);
        if required.sealed {
            cx.sealed_sources(&node_files);
        }
        // Apart, so a clone without its images still hears about everything
        // else, render errors included.
        let golden_findings = if required.golden_files {
            cx.golden_files(&class_files)
        } else {
            Vec::new()
        };
        if node_files.is_empty() && cx.errors() == 0 {
            cx.diags.push(
                Diagnostic::warning(Path::new("nodes"), Pos::FILE, "the inventory has no nodes")
                    .hint("add one file per node as nodes/<name>.yaml (see docs/inventory.md)"),
            );
        }
        if cx.errors() == 0 {
            let inv = Inventory {
                dir: dir.to_path_buf(),
                lab,
                classes: classes.into_iter().map(|(k, (c, _))| (k, c)).collect(),
                nodes,
            };
            cx.renders(&inv);
            if cx.errors() == 0 && golden_findings.is_empty() {
                inventory = Some(inv);
            }
        }
        cx.diags.extend(golden_findings);
    }
    let mut diagnostics = cx.diags;
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diagnostics.dedup();
    Checked {
        inventory,
        diagnostics,
    }
}

impl Cx {
    /// Every node must render: whatever the rules above miss but the render
    /// refuses is still found here, at `check` time, not when a card is built.
    pub(super) fn renders(&mut self, inv: &Inventory) {
        for node in inv.nodes.values() {
            if let Err(e) = crate::render::render(inv, &node.name) {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(&format!(": {s}"));
                    source = s.source();
                }
                self.err(
                    &node.file,
                    Pos::FILE,
                    message,
                    format!(
                        "fix what it names in {} (or in metis.yaml or the node's class); `metis-build render {}` shows the same error",
                        node.file.display(),
                        node.name
                    ),
                );
            }
        }
    }
}
