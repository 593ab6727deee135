//! The few YAML spellings the seed needs, written by hand so the seed files
//! read well, carry comments and come out byte-identical on every build.
//!
//! Strings are always double-quoted in JSON syntax (a subset of YAML's
//! double-quoted style), so PyYAML's YAML 1.1 rules (`on`, `no`, `0644`, …)
//! can never turn a value into a boolean or a number. File contents become
//! literal block scalars when YAML can carry them verbatim.

use std::fmt::Write as _;

/// `s` as a double-quoted YAML scalar.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serializes")
}

/// A flow sequence of quoted strings: `["a", "b"]`.
pub(crate) fn flow_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// Whether YAML can carry `content` verbatim in a literal block scalar.
/// Block scalars hold printable characters only, and PyYAML also breaks
/// lines at NEL, LS and PS, which would silently change the bytes.
fn block_safe(content: &str) -> bool {
    content.lines().any(|l| !l.trim().is_empty())
        && !content.contains('\r')
        && content.chars().all(|c| {
            c == '\n'
                || c == '\t'
                || (!c.is_control() && !matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}'))
        })
}

/// Appends `value` (the part after `key:`) for file `content`, at `indent`
/// spaces for the block's lines: a literal block scalar when possible, else a
/// quoted string. The chomping indicator keeps trailing newlines exact.
pub(crate) fn block(out: &mut String, indent: usize, content: &str) {
    if !block_safe(content) {
        let _ = writeln!(out, " {}", quote(content));
        return;
    }
    let chomp = if !content.ends_with('\n') {
        "-"
    } else if content.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    // An explicit indentation indicator when the first non-empty line starts
    // with a space, which YAML would otherwise take as the block's indentation.
    let first = content.lines().find(|l| !l.is_empty()).unwrap_or("");
    let indicator = if first.starts_with(' ') {
        indent.to_string()
    } else {
        String::new()
    };
    let _ = writeln!(out, " |{indicator}{chomp}");
    let pad = " ".repeat(indent);
    let body = content.strip_suffix('\n').unwrap_or(content);
    for line in body.split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `key:<value>` back and returns the string value.
    fn roundtrip(content: &str) -> String {
        let mut doc = String::from("k:");
        block(&mut doc, 2, content);
        doc.push_str("next: 1\n");
        let v: serde_json::Value = serde_saphyr::from_str(&doc).unwrap_or_else(|e| {
            panic!("{e}\n--- document ---\n{doc}");
        });
        assert_eq!(v["next"], 1, "{doc}");
        v["k"].as_str().expect("string").to_string()
    }

    #[test]
    fn block_scalars_round_trip_exactly() {
        let cases = [
            "one line\n",
            "no trailing newline",
            "two\nlines\n",
            "trailing blank lines\n\n\n",
            "  leading spaces\nsecond\n",
            "\n\nleading blank lines\n",
            "tab\tinside\n",
            "middle\n\nblank\n",
            "quotes \" and ' and # and : colon\n",
            "key: value\n- item\n",
            "crlf\r\nline\r\n",
            "",
            "\n",
            "nul \u{0} byte",
            "line separator \u{2028} here\n",
            "ünïcödé ✓\n",
        ];
        for c in cases {
            assert_eq!(roundtrip(c), c, "case {c:?}");
        }
    }

    #[test]
    fn quoting_defeats_yaml_1_1_types() {
        for s in ["on", "no", "0644", "1e3", "~", "null", "@x", "*a"] {
            let doc = format!("k: {}\n", quote(s));
            let v: serde_json::Value = serde_saphyr::from_str(&doc).unwrap();
            assert_eq!(v["k"], s);
        }
    }
}
