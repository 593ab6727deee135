//! The diagnostic collector and the parsing every concern shares.

use std::path::{Path, PathBuf};

use crate::inventory::diag::{closest, from_yaml_error, Diagnostic, Pos, Severity};
use crate::inventory::rules::{self, RuleError};
use crate::inventory::schema::S;

/// The diagnostic collector: the inventory directory and every finding so far.
/// Each concern (lab, class, node, network, disks, hooks, settings, files)
/// adds its own rules to it, in its own file.
pub(super) struct Cx {
    pub(super) dir: PathBuf,
    pub(super) diags: Vec<Diagnostic>,
    /// [`Options::demo_recipients`](super::Options::demo_recipients).
    pub(super) demo_recipients: Vec<String>,
}

impl Cx {
    pub(super) fn errors(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Records an error; every error says how to fix it.
    pub(super) fn err(
        &mut self,
        file: &Path,
        at: Pos,
        msg: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::error(file, at, msg).hint(hint));
    }

    /// Checks a spanned value with a rule, recording an error at its
    /// position with `hint`, what to write instead.
    pub(super) fn rule<T, R>(
        &mut self,
        file: &Path,
        v: &S<T>,
        hint: &str,
        f: impl FnOnce(&T) -> Result<R, RuleError>,
    ) -> Option<R> {
        match f(&v.value) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(file, Pos::of(v), e.to_string(), hint);
                None
            }
        }
    }

    pub(super) fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        rel: &Path,
    ) -> Option<(T, String)> {
        let full = self.dir.join(rel);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "is {} an inventory directory? It needs metis.yaml, classes/ and nodes/ (see docs/inventory.md)",
                        self.dir.display()
                    )
                } else {
                    format!(
                        "make {} readable by this user",
                        self.dir.join(rel).display()
                    )
                };
                self.err(rel, Pos::FILE, format!("cannot read: {e}"), hint);
                return None;
            }
        };
        match serde_saphyr::from_str::<T>(&text) {
            Ok(v) => Some((v, text)),
            Err(e) => {
                self.diags.push(from_yaml_error(rel, &text, &e));
                None
            }
        }
    }

    /// The parsed files of `sub/`, and the names of those that exist but did
    /// not parse (their errors are recorded; they still exist for references).
    pub(super) fn parse_dir<T: serde::de::DeserializeOwned>(
        &mut self,
        sub: &str,
    ) -> (Vec<(String, PathBuf, T)>, Vec<String>) {
        let full = self.dir.join(sub);
        let entries = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e) => {
                self.err(
                    Path::new(sub),
                    Pos::FILE,
                    format!("cannot read directory: {e}"),
                    format!("create {sub}/ with one YAML file per entry"),
                );
                return (Vec::new(), Vec::new());
            }
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        let mut out = Vec::new();
        let mut unparsed = Vec::new();
        for path in names {
            let rel = Path::new(sub).join(path.file_name().unwrap_or_default());
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "yml" {
                self.err(
                    &rel,
                    Pos::FILE,
                    "inventory files must end in .yaml",
                    format!("rename it to {}", rel.with_extension("yaml").display()),
                );
                continue;
            }
            if ext != "yaml" {
                continue;
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Err(e) = rules::dns_label(&stem) {
                self.err(
                    &rel,
                    Pos::FILE,
                    format!("file name is not a valid name: {e}"),
                    "the file stem is the node/class name; rename the file",
                );
                continue;
            }
            match self.parse::<T>(&rel) {
                Some((v, _)) => out.push((stem, rel, v)),
                None => unparsed.push(stem),
            }
        }
        (out, unparsed)
    }

    pub(super) fn one_of<'a>(
        &mut self,
        file: &Path,
        v: &S<String>,
        what: &str,
        options: &[&'a str],
    ) -> Option<&'a str> {
        if let Some(o) = options.iter().find(|o| **o == v.value) {
            return Some(o);
        }
        let hint = match closest(&v.value, options.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("use one of: {}", options.join(", ")),
        };
        self.err(
            file,
            Pos::of(v),
            format!("unknown {what} `{}`", v.value),
            hint,
        );
        None
    }
}
