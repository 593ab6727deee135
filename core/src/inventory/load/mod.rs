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

/// The inventory as its own rules leave it. [`crate::lab`] finishes the check
/// with what needs the rest of Metis (rendering every node) and is what
/// `metis-build` calls.
#[derive(Debug)]
pub struct Resolved {
    /// The resolved inventory, when no rule of its files failed. Files it
    /// needs beside them may still be missing (their errors are among the
    /// diagnostics): a clone without its golden images still hears about
    /// everything else.
    pub inventory: Option<Inventory>,
    /// Every finding, errors and warnings (unsorted).
    pub diagnostics: Vec<Diagnostic>,
}

/// Errors of loading an inventory ([`crate::lab::load`]).
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

/// What a resolve asks beyond the YAML files, and what it is told of the
/// rest of Metis.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `secrets/<node>.age` and `secrets/cluster.age` must exist.
    pub sealed: bool,
    /// The classes' local golden images (`golden.path`) must exist.
    pub golden_files: bool,
    /// The public halves of the demo identities (`demo-keys/*.agekey`), so a
    /// lab that uses one outside a test registry is warned. The caller reads
    /// them: the inventory parses no age identity.
    pub demo_recipients: Vec<String>,
}

/// Reads, validates and resolves the inventory in `dir` by its own rules,
/// collecting every finding.
pub fn resolve(dir: &Path, options: &Options) -> Resolved {
    if !dir.is_dir() {
        return Resolved {
            inventory: None,
            diagnostics: vec![Diagnostic::error(dir, Pos::FILE, "inventory directory does not exist").hint(
                "pass --inventory DIR (or set METIS_INVENTORY) to the directory holding metis.yaml, classes/ and nodes/",
            )],
        };
    }
    let mut cx = Cx {
        dir: dir.to_path_buf(),
        diags: Vec::new(),
        demo_recipients: options.demo_recipients.clone(),
    };
    let lab = cx.parse::<schema::LabFile>(Path::new("metis.yaml"));
    let (class_files, unparsed_classes) = cx.parse_dir::<schema::ClassFile>("classes");
    let (node_files, _) = cx.parse_dir::<schema::NodeFile>("nodes");

    let mut inventory = None;
    if let Some((lab_file, lab_text)) = lab {
        let lab = cx.lab(&lab_file);
        cx.flasher_reads_registry(&lab_file, &lab_text);
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
        if options.sealed {
            cx.sealed_sources(&node_files);
        }
        // Apart, so a clone without its images still hears about everything
        // else, render errors included.
        let golden_findings = if options.golden_files {
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
            inventory = Some(inv);
        }
        cx.diags.extend(golden_findings);
    }
    Resolved {
        inventory,
        diagnostics: cx.diags,
    }
}
