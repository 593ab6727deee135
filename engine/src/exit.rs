//! Exit codes of `metis-flash`, one per kind of outcome a script can act on.
//!
//! The engine decides them: every [`crate::EngineError`] carries one
//! ([`crate::EngineError::exit`]), and the CLI only maps. The table in
//! `metis-flash --help` and in README.md is generated from [`Exit::ALL`]
//! ([`Exit::table`]); a unit test of the flasher keeps README's copy equal.

/// Why `metis-flash` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u8)]
pub enum Exit {
    /// 0: the card (or image file) was written and read back correctly.
    Ok = 0,
    /// 1: any other failure, e.g. the operator did not confirm, left a picker with
    /// Esc, or a `trust` or `setup` step failed.
    Failure = 1,
    /// 2: bad input: command-line usage, no registry configured, an unusable
    /// identity, a malformed or unreadable artifact. Nothing was written.
    BadInput = 2,
    /// 3: verification failed (signature, node, revision, digest, chunk, read-back).
    /// Nothing was written, or the card's partition table was wiped.
    Verification = 3,
    /// 4: the device was refused by a safety rule (not removable, mounted, system
    /// disk, read-only, too small, counterfeit capacity, in use), or the disk
    /// picker had no disk to offer. Nothing was written.
    DeviceRefused = 4,
    /// 5: an I/O error while writing or reading the card; the card's partition
    /// table was wiped where possible.
    Io = 5,
    /// 6: the registry could not be reached and the cache does not hold what is
    /// needed; `--offline` uses the cache alone. Nothing was written.
    Unreachable = 6,
    /// 130: interrupted (SIGINT/SIGTERM, Ctrl-C in a picker, or Cancel); the
    /// card's partition table was wiped if anything had been written.
    Interrupted = 130,
}

impl Exit {
    /// Every exit code, in order.
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::Failure,
        Exit::BadInput,
        Exit::Verification,
        Exit::DeviceRefused,
        Exit::Io,
        Exit::Unreachable,
        Exit::Interrupted,
    ];

    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, in one line for people.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "written, read back and verified: `insert and power on`",
            Exit::Failure => {
                "other failure (the node name was not confirmed, Esc in a picker, setup refused)"
            }
            Exit::BadInput => {
                "bad input: no node, target or registry, unusable identity, unreadable artifact; \
                 nothing written"
            }
            Exit::Verification => {
                "verification failed (signature, node, revision, digest, chunk, read-back); \
                 nothing written, or the card wiped"
            }
            Exit::DeviceRefused => {
                "device refused by a safety rule (or no disk to offer); nothing written"
            }
            Exit::Io => "I/O error; the card's partition table wiped where possible",
            Exit::Unreachable => {
                "registry unreachable and not in the cache (try `--offline`); nothing written"
            }
            Exit::Interrupted => {
                "interrupted (Ctrl-C, SIGTERM, Cancel); the card wiped if anything was written"
            }
        }
    }

    /// The exit-code table as plain text for `--help`, wrapped to 80 columns
    /// with the meanings aligned.
    pub fn table() -> String {
        const WIDTH: usize = 80;
        const INDENT: usize = 7;
        let mut text = String::from("Exit status:\n");
        for e in Exit::ALL {
            let mut line = format!("  {:>3}  ", e.code());
            for word in e.meaning().split(' ') {
                if line.len() + word.len() + 1 > WIDTH && line.len() > INDENT {
                    text.push_str(line.trim_end());
                    text.push('\n');
                    line = " ".repeat(INDENT);
                }
                line.push_str(word);
                line.push(' ');
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// The exit-code table as Markdown (README.md).
    pub fn markdown_table() -> String {
        let mut text = String::from("| code | meaning |\n|---|---|\n");
        for e in Exit::ALL {
            text.push_str(&format!("| {} | {} |\n", e.code(), e.meaning()));
        }
        text
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_ordered() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        let table = Exit::table();
        assert!(table.contains("    6  registry unreachable"), "{table}");
        assert!(table.lines().all(|l| l.len() <= 80), "{table}");
    }
}
