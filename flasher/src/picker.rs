//! The pickers of `metis-flash` without NODE or without a target: the nodes of
//! the signed lab index, and the disks that pass the safety rules, chosen with
//! the arrow keys and Enter. Only on a terminal (stdin and stderr); a script
//! names the node and the target instead.
//!
//! Everything goes to stderr, so `--json` keeps stdout. Nothing here reads the
//! secrets bundle: the pickers show the index and the disks, no more.

use std::io::IsTerminal;
use std::path::PathBuf;

use dialoguer::console::Term;
use dialoguer::Select;

use metis_engine::device::{Backend, Candidate, DeviceError, Disk, Policy};
use metis_engine::flash::size_text;
use metis_engine::{Engine, EngineError, Exit};

/// Whether a person can answer a picker: stdin and stderr are terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Why no node or disk was picked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PickError {
    /// Esc or `q`.
    #[error("nothing picked: nothing was written")]
    Cancelled,
    /// Ctrl-C while the picker waited for a key.
    #[error("interrupted: nothing was written")]
    Interrupted,
    /// The lab index could not be read or did not verify.
    #[error(transparent)]
    Index(EngineError),
    /// The verified lab index lists no node.
    #[error("the lab index lists no node: publish the lab first (`metis-build publish`)")]
    NoNode,
    /// No disk passes the safety rules (the refused ones were listed above).
    #[error("no disk can take {node}'s card ({size}); nothing was written\n  hint: insert the card (a removable, USB or SD disk) and run again; \
             for a disk the OS does not flag as removable, pass --force-non-removable; \
             or write an image file with --output FILE.img")]
    NoDisk {
        /// The node.
        node: String,
        /// The image size, for people.
        size: String,
    },
    /// The disks could not be listed.
    #[error("listing disks: {0}")]
    Devices(DeviceError),
    /// The terminal failed under the picker.
    #[error("the picker: {0}")]
    Terminal(std::io::Error),
}

impl PickError {
    /// The process exit code for this outcome.
    pub fn exit(&self) -> Exit {
        match self {
            PickError::Cancelled | PickError::NoNode | PickError::Terminal(_) => Exit::Failure,
            PickError::Interrupted => Exit::Interrupted,
            PickError::Index(e) => e.exit(),
            PickError::NoDisk { .. } => Exit::DeviceRefused,
            // As for an explicitly named device (`FlashError::exit`).
            PickError::Devices(DeviceError::Io { .. }) => Exit::Io,
            PickError::Devices(_) => Exit::DeviceRefused,
        }
    }
}

impl PickError {
    /// Prints the error (and its hint) and returns the exit code.
    pub fn report(&self, json: bool) -> Exit {
        match self {
            PickError::Index(e) => crate::fail(e, json),
            other => {
                eprintln!("error: {other}");
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"ok": false, "error": other.to_string(), "exit_code": other.exit().code()})
                    );
                }
                other.exit()
            }
        }
    }
}

/// Shows `prompt`, then `rows` under `header`, and waits for a pick; the index
/// of the row. The picked row stays on the screen.
fn select(prompt: &str, header: &str, rows: &[String]) -> Result<usize, PickError> {
    // Ctrl-C in the picker's raw mode arrives as a key: console re-raises it as
    // SIGINT, and the handler ends the process with 130 (nothing is written yet).
    crate::commands::cancel_on_signals();
    let term = Term::stderr();
    eprintln!("{prompt} (arrows and Enter; Esc cancels):");
    eprintln!("  {header}");
    let picked = Select::new().items(rows).default(0).interact_on_opt(&term);
    let _ = term.show_cursor();
    match picked {
        Ok(Some(i)) => {
            eprintln!("> {}", rows[i]);
            Ok(i)
        }
        Ok(None) => Err(PickError::Cancelled),
        Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
            Err(PickError::Interrupted)
        }
        Err(dialoguer::Error::IO(e)) => Err(PickError::Terminal(e)),
    }
}

/// Shows the nodes of the verified lab index and returns the one picked.
pub fn pick_node(engine: &Engine) -> Result<String, PickError> {
    let lab = engine.lab_nodes().map_err(PickError::Index)?;
    if lab.nodes.is_empty() {
        return Err(PickError::NoNode);
    }
    eprintln!(
        "lab index revision {} verified with key {}",
        lab.revision, lab.key
    );
    let width = lab.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4);
    let class_width = lab.nodes.iter().map(|n| n.class.len()).max().unwrap_or(5);
    let row = |node: &str, class: &str, revision: &str, cache: &str| {
        format!("{node:<width$}  {class:<class_width$}  {revision:>8}  {cache}")
    };
    let rows: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| row(&n.node, &n.class, &n.revision.to_string(), n.cache.as_str()))
        .collect();
    let i = select(
        "Node to flash",
        &row("NODE", "CLASS", "REVISION", "CACHE"),
        &rows,
    )?;
    Ok(lab.nodes[i].node.clone())
}

fn disk_row(disk: &Disk, partitions: &str) -> String {
    format!(
        "{:<14} {:<24} {:>10}  {:<5}  {}",
        disk.path.display(),
        disk.model_text(),
        size_text(disk.size),
        disk.bus,
        partitions
    )
}

fn partitions_text(candidate: &Candidate) -> String {
    if candidate.partitions.is_empty() {
        return "no partitions".into();
    }
    let names: Vec<String> = candidate
        .partitions
        .iter()
        .map(|p| {
            let name = p
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.mounts.is_empty() {
                name
            } else {
                format!("{name} (mounted)")
            }
        })
        .collect();
    format!("partitions {}", names.join(" "))
}

/// Shows the disks that pass every safety rule for an `image_size`-byte image,
/// and the ones that do not with the reason, and returns the disk picked. The
/// caller still confirms it with the node name.
pub fn pick_disk(
    backend: &dyn Backend,
    node: &str,
    image_size: u64,
    policy: Policy,
) -> Result<PathBuf, PickError> {
    let disks = backend.list().map_err(PickError::Devices)?;
    let mut offered = Vec::new();
    let mut refused = Vec::new();
    for disk in disks {
        match backend.inspect(&disk.path, image_size, policy) {
            Ok(candidate) => offered.push(candidate),
            Err(DeviceError::Refused { reason, .. }) => refused.push((disk, reason)),
            Err(e) => refused.push((disk, e.to_string())),
        }
    }
    if !refused.is_empty() {
        eprintln!("not offered:");
        for (disk, reason) in &refused {
            eprintln!("  {}: {reason}", disk_row(disk, "").trim_end());
        }
    }
    if offered.is_empty() {
        return Err(PickError::NoDisk {
            node: node.into(),
            size: size_text(image_size),
        });
    }
    let rows: Vec<String> = offered
        .iter()
        .map(|c| disk_row(&c.disk, &partitions_text(c)))
        .collect();
    let header = format!(
        "{:<14} {:<24} {:>10}  {:<5}  PARTITIONS",
        "DISK", "MODEL", "SIZE", "BUS"
    );
    let i = select(
        &format!("Disk to write {node} to, image {}", size_text(image_size)),
        &header,
        &rows,
    )?;
    Ok(offered.swap_remove(i).disk.path)
}
