//! Golden files: the rendered seed of one node per class, committed under
//! core/tests/golden/render/<node>/ so every change to what lands on a card is
//! reviewed as a diff. Regenerate after an intended change with
//!
//!     METIS_BLESS=1 cargo test -p metis-core --test render_golden
//!
//! (docs/testing.md, "Golden files").

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::*;
use metis_core::render::{self, Rendered};

fn golden_dir(node: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/render")
        .join(node)
}

/// What the golden directory of a node holds: seed/<file>, root/<file> and
/// render.txt (identifiers and edits).
fn expected_files(r: &Rendered) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (path, bytes) in &r.seed {
        files.insert(Path::new("seed").join(path), bytes.clone());
    }
    for f in &r.root_files {
        files.insert(
            Path::new("root").join(f.path.trim_start_matches('/')),
            f.content.clone(),
        );
    }
    let mut summary = String::new();
    let _ = writeln!(summary, "node: {}", r.node);
    let _ = writeln!(summary, "instance-id: {}", r.instance_id);
    let _ = writeln!(summary, "machine-id: {}", r.machine_id);
    for f in &r.root_files {
        let _ = writeln!(summary, "root file: {} mode {:04o}", f.path, f.mode);
    }
    for e in &r.root_edits {
        let _ = writeln!(summary, "root edit: {}: {}={}", e.path, e.key, e.value);
    }
    for e in &r.seed_edits {
        let _ = writeln!(summary, "seed edit: {}: {}={}", e.path, e.key, e.value);
    }
    for c in r.server_rejoin_commands.iter().flatten() {
        let _ = writeln!(summary, "server rejoin: {c}");
    }
    files.insert(PathBuf::from("render.txt"), summary.into_bytes());
    files
}

fn on_disk(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn rendered_seeds_match_the_golden_files() {
    let inv = example();
    let bless = std::env::var_os("METIS_BLESS").is_some();
    let mut classes = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for node in ONE_PER_CLASS {
        classes.insert(inv.nodes[*node].class.clone());
        let want = expected_files(&render::render(&inv, node).unwrap());
        let dir = golden_dir(node);
        if bless {
            let _ = std::fs::remove_dir_all(&dir);
            for (path, bytes) in &want {
                let p = dir.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
            continue;
        }
        let have = on_disk(&dir);
        for (path, bytes) in &want {
            match have.get(path) {
                None => problems.push(format!("{node}: {} is missing", path.display())),
                Some(h) if h != bytes => problems.push(format!(
                    "{node}: {} differs:\n--- golden\n{}\n--- rendered\n{}",
                    path.display(),
                    String::from_utf8_lossy(h),
                    String::from_utf8_lossy(bytes)
                )),
                Some(_) => {}
            }
        }
        for path in have.keys().filter(|p| !want.contains_key(*p)) {
            problems.push(format!("{node}: {} is no longer rendered", path.display()));
        }
    }
    assert_eq!(
        classes.len(),
        inv.classes.len(),
        "one golden node per class"
    );
    assert!(
        problems.is_empty(),
        "{}\n\nIf the change is intended, regenerate with\n    METIS_BLESS=1 cargo test -p metis-core --test render_golden\nand review the diff.",
        problems.join("\n")
    );
}
