//! The lab's registry as an inventory's `metis.yaml` names it, read on its own.
//!
//! A maintainer flashing from a checkout (`metis-flash --inventory DIR`) needs
//! only where the lab publishes: the `registry:` block. [`read_registry`] reads
//! that block and nothing else — it neither loads nor validates the rest of the
//! inventory (that is `lab::load`, behind the `build` feature), so other
//! keys, classes and nodes are ignored and a half-edited node file cannot stop
//! a flash. Inside the block, unknown keys are refused: a misspelt `ca_file`
//! would otherwise surface later as a TLS error far from its cause. The block
//! is read line by line, not by a YAML parser (see `registry_block` for what it
//! takes), so the flasher does without one.
//!
//! ```no_run
//! let lab = metis_core::lab_registry::read_registry(std::path::Path::new("inventory"))?;
//! println!("{} {}", lab.location, lab.prefix);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::iter::{Enumerate, Peekable};
use std::path::{Path, PathBuf};

/// The lab registry, with paths resolved against the inventory directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRegistry {
    /// Where the registry is, for [`Registry::open`](crate::oci::Registry::open):
    /// `host[:port]`, or `oci:DIR` with a relative `DIR` joined to the
    /// inventory directory.
    pub location: String,
    /// Repository prefix, e.g. `metis` → `<host>/metis/nodes/<node>`.
    pub prefix: String,
    /// The lab's extra CA certificate (PEM), joined to the inventory directory.
    pub ca_file: Option<PathBuf>,
}

impl LabRegistry {
    /// The registry's host, or `None` for an OCI image-layout directory (`oci:`).
    pub fn host(&self) -> Option<&str> {
        crate::location::host(&self.location)
    }
}

/// Why the registry block could not be read. Each names `metis.yaml`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabRegistryError {
    /// `metis.yaml` could not be read.
    #[error("cannot read {}: {source}; is {} an inventory directory (it holds metis.yaml)?", path.display(), path.parent().unwrap_or(Path::new(".")).display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `metis.yaml` has no `registry:` block, or one this reader does not take.
    #[error("{}{}: {reason}; fix the `registry:` block (host, prefix, optional ca_file; see docs/inventory.md)", path.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column (1-based) of what is wrong.
        at: Option<(u64, u64)>,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the `registry:` block of `<inventory_dir>/metis.yaml`.
pub fn read_registry(inventory_dir: &Path) -> Result<LabRegistry, LabRegistryError> {
    let path = inventory_dir.join("metis.yaml");
    let text = std::fs::read_to_string(&path).map_err(|source| LabRegistryError::Read {
        path: path.clone(),
        source,
    })?;
    let block =
        registry_block(&text).map_err(|Invalid { at, reason }| LabRegistryError::Invalid {
            path: path.clone(),
            at,
            reason,
        })?;
    Ok(LabRegistry {
        location: crate::location::in_inventory(inventory_dir, &block.host),
        prefix: block.prefix,
        ca_file: block.ca_file.map(|f| inventory_dir.join(f)),
    })
}

/// Whether [`read_registry`] can read the `registry:` block of this
/// `metis.yaml` text; else the line, column and reason (`metis-build check`
/// warns with them).
#[cfg(feature = "build")]
pub(crate) fn check_block(text: &str) -> Result<(), (u64, u64, String)> {
    match registry_block(text) {
        Ok(_) => Ok(()),
        Err(Invalid { at, reason }) => {
            let (line, column) = at.unwrap_or((0, 0));
            Err((line, column, reason))
        }
    }
}

/// The `registry:` block, the same keys `inventory::load` accepts.
#[derive(Debug, PartialEq, Eq)]
struct RegistryBlock {
    host: String,
    prefix: String,
    ca_file: Option<String>,
}

/// What is wrong, and where (1-based line and column).
#[derive(Debug)]
struct Invalid {
    at: Option<(u64, u64)>,
    reason: String,
}

fn invalid(line: usize, column: usize, reason: impl Into<String>) -> Invalid {
    Invalid {
        at: Some((line as u64, column as u64)),
        reason: reason.into(),
    }
}

/// The file's lines with their index (0-based: line `i + 1`).
type Lines<'a> = Peekable<Enumerate<std::str::Lines<'a>>>;

/// Finds and reads the `registry:` block of `metis.yaml`, line by line.
///
/// Not a YAML parser: the block as docs/inventory.md and the example lab write
/// it, a top-level key with one `key: value` a line under it,
///
/// ```yaml
/// registry:                      # at column 1
///   host: harbor.lab:443         # all keys at one indentation, spaces only
///   prefix: "lab/metis"          # plain, 'single' or "double" quoted values
///   ca_file: certs/lab-ca.pem    # comments and blank lines anywhere
/// ```
///
/// Inside the block, anything else (a flow mapping `{…}`, a value continued on
/// the next line, anchors, tags, block scalars) is refused with its line and
/// column, never guessed at. Other top-level keys, and every line indented
/// under them, are skipped unread, so the rest of the file cannot stop a
/// flash. `metis-build check` parses the whole file as YAML; the flasher does
/// not carry that parser (docs/decisions.md, "A lean flasher").
fn registry_block(text: &str) -> Result<RegistryBlock, Invalid> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().peekable();
    let mut block = None;
    let mut in_document = false;
    while let Some((i, line)) = lines.next() {
        let n = i + 1;
        if is_blank_or_comment(line) || line.starts_with([' ', '\t']) {
            continue; // nothing, or under another top-level key
        }
        if is_marker(line, "---") {
            if in_document {
                return Err(invalid(
                    n,
                    1,
                    "a second YAML document; metis.yaml holds one",
                ));
            }
            in_document = true;
            continue;
        }
        if is_marker(line, "...") {
            break;
        }
        if line.starts_with('%') && !in_document {
            continue; // a directive (%YAML 1.2) before `---`
        }
        in_document = true;
        let Some(rest) = line
            .strip_prefix("registry")
            .map(|r| r.trim_start_matches([' ', '\t']))
            .and_then(|r| r.strip_prefix(':'))
            .filter(|r| r.is_empty() || r.starts_with([' ', '\t']))
        else {
            continue;
        };
        if block.is_some() {
            return Err(invalid(n, 1, "duplicate key `registry`"));
        }
        let inline = rest.trim_start_matches([' ', '\t']);
        if !(inline.is_empty() || inline.starts_with('#')) {
            let column = line.len() - inline.len() + 1;
            return Err(invalid(
                n,
                column,
                "expected the block's keys on the lines below `registry:`, one `key: value` a line",
            ));
        }
        block = Some(entries(n, &mut lines)?);
    }
    block.ok_or(Invalid {
        at: Some((1, 1)),
        reason: "missing field `registry`".into(),
    })
}

/// Reads the `key: value` lines under `registry:` (on line `registry_line`),
/// up to the next top-level line.
fn entries(registry_line: usize, lines: &mut Lines<'_>) -> Result<RegistryBlock, Invalid> {
    const KEYS: [&str; 3] = ["host", "prefix", "ca_file"];
    // Per key: unset, or the value (None for a YAML null) and where it was.
    let mut values: [Option<(Option<String>, usize, usize)>; 3] = [None, None, None];
    let mut indent = None;
    let mut first = None;
    while let Some(&(i, line)) = lines.peek() {
        let n = i + 1;
        if !(is_blank_or_comment(line) || line.starts_with([' ', '\t'])) {
            break; // the next top-level key
        }
        lines.next();
        if is_blank_or_comment(line) {
            continue;
        }
        let body = line.trim_start_matches(' ');
        let column = line.len() - body.len() + 1;
        if body.starts_with('\t') {
            return Err(invalid(
                n,
                column,
                "a tab in the indentation (YAML indents with spaces)",
            ));
        }
        if *indent.get_or_insert(column) != column {
            return Err(invalid(
                n,
                column,
                "unexpected indentation: one `key: value` a line, all at the same indentation",
            ));
        }
        first.get_or_insert((n, column));
        let Some((key, value)) = split_entry(body) else {
            return Err(invalid(n, column, "expected `key: value`"));
        };
        let Some(slot) = KEYS.iter().position(|k| *k == key) else {
            return Err(invalid(
                n,
                column,
                format!("unknown field `{key}`, expected one of host, prefix, ca_file"),
            ));
        };
        if values[slot].is_some() {
            return Err(invalid(n, column, format!("duplicate field `{key}`")));
        }
        let value_column = line.len() - value.trim_start_matches([' ', '\t']).len() + 1;
        let value =
            scalar(value).map_err(|why| invalid(n, value_column, format!("`{key}`: {why}")))?;
        values[slot] = Some((value, n, value_column));
    }
    let Some((line, column)) = first else {
        return Err(invalid(registry_line, 1, "the `registry:` block is empty"));
    };
    let [host, prefix, ca_file] = values;
    let required = |value: Option<(Option<String>, usize, usize)>, key: &str| match value {
        None => Err(invalid(line, column, format!("missing field `{key}`"))),
        Some((Some(v), ..)) if !v.trim().is_empty() => Ok(v),
        Some((_, n, c)) => Err(invalid(n, c, format!("registry.{key} is empty"))),
    };
    Ok(RegistryBlock {
        host: required(host, "host")?,
        prefix: required(prefix, "prefix")?,
        ca_file: ca_file.and_then(|(v, ..)| v),
    })
}

/// `key: value` → (`key`, ` value`): the first `:` followed by a space or the
/// end of the line ends the key (`host: harbor:443` has one).
fn split_entry(body: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(i) = body[from..].find(':').map(|i| from + i) {
        let rest = &body[i + 1..];
        if rest.is_empty() || rest.starts_with([' ', '\t']) {
            let key = body[..i].trim_end_matches([' ', '\t']);
            let plain = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            return plain.then_some((key, rest));
        }
        from = i + 1;
    }
    None
}

/// Why a value after `key:` is not one this reader takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ValueError {
    /// A flow collection, anchor, alias, tag or block scalar.
    #[error(
        "write the value plain or in quotes (no flow collections, anchors, \
         tags or block scalars)"
    )]
    NotPlainOrQuoted,
    /// A block sequence or mapping entry where a value belongs.
    #[error("write the value plain or in quotes (not a list or mapping)")]
    ListOrMapping,
    /// A plain value that YAML would read as a mapping.
    #[error("a `: ` in a plain value; put the value in quotes")]
    ColonInPlain,
    /// Something other than a comment after a quoted value.
    #[error("text after the closing quote")]
    TextAfterQuote,
    /// A `\x`, `\u` or `\U` escape without its hex digits or naming no character.
    #[error("a bad escape `\\{0}`")]
    BadEscape(String),
    /// An escape YAML has but this reader does not take.
    #[error(
        "an escape this reader does not take, `\\{0}` (write the value \
         plain or in single quotes)"
    )]
    UnknownEscape(char),
    /// A quoted value not closed on its line.
    #[error("a quoted value must end on its line")]
    Unterminated,
}

/// A value after `key:`: `None` for a YAML null (nothing, `~`, `null`).
fn scalar(raw: &str) -> Result<Option<String>, ValueError> {
    let v = raw.trim_start_matches([' ', '\t']);
    let mut chars = v.chars();
    let (value, rest) = match chars.next() {
        None | Some('#') => return Ok(None),
        Some('"') => double_quoted(chars.as_str())?,
        Some('\'') => single_quoted(chars.as_str())?,
        Some('[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | ',') => {
            return Err(ValueError::NotPlainOrQuoted)
        }
        Some('-' | '?' | ':')
            if chars.as_str().is_empty() || chars.as_str().starts_with([' ', '\t']) =>
        {
            return Err(ValueError::ListOrMapping)
        }
        Some(_) => {
            let end = [" #", "\t#"]
                .iter()
                .filter_map(|c| v.find(c))
                .min()
                .unwrap_or(v.len());
            let value = v[..end].trim_end_matches([' ', '\t']);
            if value.contains(": ") || value.contains(":\t") || value.ends_with(':') {
                return Err(ValueError::ColonInPlain);
            }
            return Ok((!matches!(value, "~" | "null" | "Null" | "NULL")).then(|| value.to_owned()));
        }
    };
    let after = rest.trim_start_matches([' ', '\t']);
    if !(after.is_empty() || (after.len() < rest.len() && after.starts_with('#'))) {
        return Err(ValueError::TextAfterQuote);
    }
    Ok(Some(value))
}

/// The inside of a `"…"` value (its opening quote gone) and what follows it.
fn double_quoted(s: &str) -> Result<(String, &str), ValueError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => {
                let hex = |chars: &mut std::str::CharIndices<'_>, digits: usize| {
                    let code: String = chars.by_ref().take(digits).map(|(_, c)| c).collect();
                    u32::from_str_radix(&code, 16)
                        .ok()
                        .filter(|_| code.len() == digits)
                        .and_then(char::from_u32)
                        .ok_or(ValueError::BadEscape(code))
                };
                out.push(match chars.next().map(|(_, e)| e) {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('/') => '/',
                    Some(' ') => ' ',
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('0') => '\0',
                    Some('x') => hex(&mut chars, 2)?,
                    Some('u') => hex(&mut chars, 4)?,
                    Some('U') => hex(&mut chars, 8)?,
                    Some(e) => return Err(ValueError::UnknownEscape(e)),
                    None => break,
                });
            }
            c => out.push(c),
        }
    }
    Err(ValueError::Unterminated)
}

/// The inside of a `'…'` value (its opening quote gone; `''` is a quote) and
/// what follows it.
fn single_quoted(s: &str) -> Result<(String, &str), ValueError> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            out.push(c);
        } else if chars.next_if(|&(_, c)| c == '\'').is_some() {
            out.push('\'');
        } else {
            return Ok((out, &s[i + 1..]));
        }
    }
    Err(ValueError::Unterminated)
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start_matches([' ', '\t']);
    t.is_empty() || t.starts_with('#')
}

/// `---` or `...` alone, or followed by a space.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (tempfile::TempDir, Result<LabRegistry, LabRegistryError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metis.yaml"), yaml).unwrap();
        let lab = read_registry(dir.path());
        (dir, lab)
    }

    /// Each spelling of the block the reader takes, with what it reads.
    fn accepted() -> Vec<(&'static str, RegistryBlock)> {
        let block = |host: &str, prefix: &str, ca_file: Option<&str>| RegistryBlock {
            host: host.into(),
            prefix: prefix.into(),
            ca_file: ca_file.map(Into::into),
        };
        vec![
            (
                "registry:\n  host: harbor.lab:443\n  prefix: lab/metis\n  ca_file: ca.pem\n",
                block("harbor.lab:443", "lab/metis", Some("ca.pem")),
            ),
            // Quotes, escapes, comments, a `#` inside a value, key order.
            (
                "registry: # the lab's Harbor\n    prefix: 'it''s' # q\n    host: \"h\\x41rbor\\\\x\"\n    ca_file: a#b.pem\n",
                block("hArbor\\x", "it's", Some("a#b.pem")),
            ),
            // Nulls for the optional key; blank lines and comments inside the block,
            // one at column 1; spaces before the colon; trailing blanks.
            (
                "registry:\n\n  host : h   \n# aside\n  prefix: p\n  # aside\n  ca_file: ~\n",
                block("h", "p", None),
            ),
            ("registry:\n  host: h\n  prefix: p\n  ca_file:\n", block("h", "p", None)),
            ("registry:\n  host: h\n  prefix: p\n  ca_file: null\n", block("h", "p", None)),
            // A Windows path, plain; CRLF line ends; a byte-order mark.
            (
                "\u{feff}registry:\r\n  host: oci:C:\\lab\\registry\r\n  prefix: p\r\n",
                block("oci:C:\\lab\\registry", "p", None),
            ),
            // Directives, document markers, and other keys around the block whose
            // indented lines look like one (a block scalar, a nested mapping).
            (
                "%YAML 1.2\n---\nnotes: |\n  registry:\n    host: wrong\nregistry:\n  host: h\n  prefix: p\nsigning:\n  registry:\n    host: wrong\n...\n",
                block("h", "p", None),
            ),
        ]
    }

    #[test]
    fn spellings_of_the_block() {
        for (yaml, expected) in accepted() {
            assert_eq!(registry_block(yaml).unwrap(), expected, "{yaml}");
        }
    }

    /// YAML the reader refuses, with the line and column it names. Some of it is
    /// valid YAML (a flow mapping, a value over two lines): `metis-flash setup`
    /// or the block as the docs write it are the way, and the error says where.
    #[test]
    fn what_the_reader_refuses() {
        for (yaml, at, expected) in [
            (
                "registry: {host: h, prefix: p}\n",
                (1, 11),
                "on the lines below",
            ),
            (
                "registry:\n  host: h\n    .lab\n  prefix: p\n",
                (3, 5),
                "indentation",
            ),
            ("registry:\n  host: h\n prefix: p\n", (3, 2), "indentation"),
            ("registry:\n\thost: h\n", (2, 1), "tab"),
            (
                "registry:\n  host: &h h\n  prefix: p\n",
                (2, 9),
                "`host`: write the value plain or in quotes",
            ),
            (
                "registry:\n  host: !!str h\n",
                (2, 9),
                "no flow collections, anchors, tags",
            ),
            ("registry:\n  host: >\n    h\n", (2, 9), "block scalars"),
            ("registry:\n  host: - h\n", (2, 9), "not a list"),
            ("registry:\n  - host: h\n", (2, 3), "expected `key: value`"),
            (
                "registry:\n  \"host\": h\n",
                (2, 3),
                "expected `key: value`",
            ),
            (
                "registry:\n  host: a: b\n",
                (2, 9),
                "put the value in quotes",
            ),
            (
                "registry:\n  host: \"h\n  prefix: p\n",
                (2, 9),
                "end on its line",
            ),
            (
                "registry:\n  host: 'h' x\n",
                (2, 9),
                "after the closing quote",
            ),
            ("registry:\n  host: \"\\q\"\n", (2, 9), "escape"),
            (
                "registry:\n  host: h\n  host: i\n",
                (3, 3),
                "duplicate field `host`",
            ),
            (
                "registry:\n  host: h\n  prefix: p\nregistry:\n",
                (4, 1),
                "duplicate key",
            ),
            ("registry:\nsigning: {}\n", (1, 1), "is empty"),
            (
                "registry:\n  host: h\n  prefix:\n",
                (3, 10),
                "registry.prefix is empty",
            ),
            (
                "registry:\n  host: h\n  prefix: p\n---\nx: 1\n",
                (4, 1),
                "a second YAML document",
            ),
            ("# nothing\n", (1, 1), "missing field `registry`"),
        ] {
            let err = registry_block(yaml).unwrap_err();
            assert_eq!(err.at, Some(at), "{yaml}: {}", err.reason);
            assert!(err.reason.contains(expected), "{yaml}: {}", err.reason);
        }
    }

    /// Where the reader takes a block, the YAML parser `metis-build` uses reads
    /// the same values from it.
    #[cfg(feature = "build")]
    #[test]
    fn reads_what_the_yaml_parser_reads() {
        #[derive(serde::Deserialize)]
        struct LabFile {
            registry: Block,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Block {
            host: String,
            prefix: String,
            #[serde(default)]
            ca_file: Option<String>,
        }
        for (yaml, ours) in accepted() {
            let yaml = yaml.replace("\r\n", "\n"); // the parser's own business
            let theirs: LabFile = serde_saphyr::from_str(yaml.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("{yaml}: {e}"));
            let theirs = theirs.registry;
            assert_eq!(
                (theirs.host, theirs.prefix, theirs.ca_file),
                (ours.host, ours.prefix, ours.ca_file),
                "{yaml}"
            );
        }
    }

    #[test]
    fn locations() {
        let inv = Path::new("/lab/inventory");
        for (host, expected) in [
            ("oci:../out/registry", "oci:/lab/inventory/../out/registry"),
            ("oci:/srv/registry", "oci:/srv/registry"),
            ("harbor.lab.home.arpa", "harbor.lab.home.arpa"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(crate::location::in_inventory(inv, host), expected, "{host}");
        }
    }

    #[test]
    fn registry_block_with_the_rest_ignored() {
        // The rest of the file is not an inventory the loader would accept
        // (unknown top-level keys, a broken signing block): not our business.
        let (dir, lab) = read(
            "registry:\n  host: harbor.lab.home.arpa:443\n  prefix: lab/metis\n  ca_file: certs/lab-ca.pem\n\
             signing: [not, a, mapping]\nfuture_key: {x: 1}\n",
        );
        let lab = lab.unwrap();
        assert_eq!(lab.location, "harbor.lab.home.arpa:443");
        assert_eq!(lab.host(), Some("harbor.lab.home.arpa:443"));
        assert_eq!(lab.prefix, "lab/metis");
        assert_eq!(lab.ca_file, Some(dir.path().join("certs/lab-ca.pem")));
    }

    #[test]
    fn oci_directory_relative_to_the_inventory() {
        let (dir, lab) = read("registry:\n  host: oci:../out/registry\n  prefix: metis\n");
        let lab = lab.unwrap();
        assert_eq!(
            lab.location,
            format!("oci:{}", dir.path().join("../out/registry").display())
        );
        assert_eq!(lab.host(), None);
        assert_eq!(lab.ca_file, None);
    }

    #[test]
    fn the_example_lab() {
        let inv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory");
        let lab = read_registry(&inv).unwrap();
        assert_eq!(
            lab.location,
            format!("oci:{}", inv.join("../out/registry").display())
        );
        assert_eq!(lab.prefix, "metis");
    }

    #[test]
    fn errors_name_the_file_and_what_to_do() {
        for (yaml, expected) in [
            ("signing: {}\n", "metis.yaml:1:1: missing field `registry`;"),
            (
                "registry:\n  host: harbor.lab\n",
                "metis.yaml:2:3: missing field `prefix`;",
            ),
            (
                "registry:\n  host: harbor.lab\n  prefix: m\n  ca_flie: x.pem\n",
                "metis.yaml:4:3: unknown field `ca_flie`, expected one of host, prefix, ca_file;",
            ),
            (
                "registry:\n  host: ''\n  prefix: m\n",
                "metis.yaml:2:9: registry.host is empty;",
            ),
            ("registry: [\n", "metis.yaml:1:"),
        ] {
            let (_dir, lab) = read(yaml);
            let err = lab.unwrap_err();
            assert!(
                matches!(err, LabRegistryError::Invalid { .. }),
                "{yaml}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(expected), "{yaml}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert!(msg.ends_with("see docs/inventory.md)"), "{msg}");
        }
        let dir = tempfile::tempdir().unwrap();
        let msg = read_registry(dir.path()).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read "), "{msg}");
        assert!(msg.contains("metis.yaml"), "{msg}");
        assert!(msg.contains("an inventory directory"), "{msg}");
    }
}
