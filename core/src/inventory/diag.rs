//! Diagnostics: one finding in one file, at one line, with a way to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The inventory cannot be built as it is.
    Error,
    /// Builds, but probably not what was meant (a demo key outside a test registry, …).
    Warning,
}

/// One finding of `check`, pointing at a file and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File, relative to the inventory directory where possible.
    pub file: PathBuf,
    /// 1-based line, 0 when the finding is about the file as a whole.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `file:line:column`.
    pub fn error(file: &Path, at: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: at.line,
            column: at.column,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `file:line:column`.
    pub fn warning(file: &Path, at: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, at, message)
        }
    }

    /// Adds the fix.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// A position in a YAML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line (0: whole file).
    pub line: u64,
    /// 1-based column (0: unknown).
    pub column: u64,
}

impl Pos {
    /// The whole file.
    pub const FILE: Pos = Pos { line: 0, column: 0 };

    /// Where a spanned value was written.
    pub fn of<T>(s: &serde_saphyr::Spanned<T>) -> Pos {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The first key of the block mapping whose key at `at` is one of its keys:
/// walking up from `at`, lines indented like it belong to it, a sequence item
/// (`- key:`) starts it, a line indented less is its parent. Returns `at` when
/// the text does not look like a block mapping there (flow style, say).
pub fn mapping_start(text: &str, at: Pos) -> Pos {
    let lines: Vec<&str> = text.lines().collect();
    let Ok(line) = usize::try_from(at.line) else {
        return at;
    };
    if at.column == 0 || line == 0 || line > lines.len() {
        return at;
    }
    let key_indent = at.column - 1;
    let mut start = at;
    for l in (1..line).rev() {
        let raw = lines[l - 1];
        let body = raw.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = (raw.len() - body.len()) as u64;
        if let Some(item) = body.strip_prefix('-') {
            let after = item.trim_start_matches(' ');
            let item_key = indent + 1 + (item.len() - after.len()) as u64;
            if item_key == key_indent {
                return Pos {
                    line: l as u64,
                    column: at.column,
                };
            }
        }
        if indent == key_indent {
            start = Pos {
                line: l as u64,
                column: at.column,
            };
        } else if indent < key_indent {
            // The key this mapping is the value of.
            return Pos {
                line: l as u64,
                column: indent + 1,
            };
        }
    }
    start
}

/// Turns a YAML/serde error in `text` (the file's content) into a diagnostic
/// with a fix where one is obvious.
pub fn from_yaml_error(file: &Path, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let at = err
        .location()
        .map(|l| Pos {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or(Pos::FILE);
    let raw = err.without_snippet().to_string();
    // The crate appends " at line N, column M"; we print the position ourselves.
    let msg = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail
                .split_once("expected one of ")
                .map(|(_, list)| list.split(", ").map(|s| s.trim_matches('`')).collect())
                .or_else(|| {
                    tail.split_once("expected ")
                        .map(|(_, one)| vec![one.trim_matches('`')])
                })
                .unwrap_or_default();
            let d = Diagnostic::error(file, at, format!("unknown key `{field}`"));
            return match closest(field, expected.iter().copied()) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None if !expected.is_empty() => {
                    d.hint(format!("valid keys here: {}", expected.join(", ")))
                }
                None => d.hint("remove it; there are no keys allowed here"),
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        // The parser reports a missing key at the mapping's last key, which
        // says nothing; point at where the mapping starts instead.
        let at = mapping_start(text, at);
        return Diagnostic::error(file, at, format!("missing required key `{field}`")).hint(
            format!("add `{field}:` to this mapping (see docs/inventory.md)"),
        );
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return Diagnostic::error(file, at, format!("key `{key}` appears twice"))
            .hint("keep one of them; YAML mappings cannot repeat a key");
    }
    Diagnostic::error(file, at, msg).hint("fix the YAML at this position (see docs/inventory.md)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_start_finds_the_line_that_opens_the_mapping() {
        let text = "# comment\nclass: a\nnetwork:\n  interfaces:\n    - name: eth0\n\n      addresses: [x]\n      gateway: y\nk3s:\n  labels:\n    - a=b\n  taints: []\n";
        let at = |line, column| Pos { line, column };
        for (from, want) in [
            // top level: the first key
            (at(9, 1), at(2, 1)),
            // an item of a sequence: its `- ` line
            (at(8, 7), at(5, 7)),
            // a nested mapping: the key it belongs to
            (at(12, 3), at(9, 1)),
            // nothing to walk
            (at(2, 1), at(2, 1)),
            (Pos::FILE, Pos::FILE),
            (at(99, 1), at(99, 1)),
            (at(3, 40), at(2, 1)),
        ] {
            assert_eq!(mapping_start(text, from), want, "from {from:?}");
        }
    }
}
