//! Snapshots of metis-flash's help and of the errors an operator meets first
//! (no registry set up, no node or target without a terminal, a bad registry,
//! an unreachable one, setup without a profile). Regenerate after an intended
//! change with `TRYCMD=overwrite cargo test -p metis-flash --test cli_tests` and
//! review the diff.
//!
//! README.md's exit-code table is generated from `metis_engine::Exit`; after
//! changing the codes, `METIS_BLESS=1 cargo test -p metis-flash --test cli_tests`
//! rewrites it.

use std::path::Path;

#[test]
fn cli_tests() {
    trycmd::TestCases::new()
        .env("XDG_CONFIG_HOME", "/nonexistent/metis-test-config")
        .env("METIS_CACHE", "/nonexistent/metis-test-cache")
        .env("HOME", "/nonexistent/metis-test-home")
        .case("tests/cmd/*.toml");
}

const BEGIN: &str = "<!-- exit-codes: generated from metis_engine::Exit -->\n";
const END: &str = "<!-- end of exit-codes -->\n";

#[test]
fn readme_exit_codes_are_the_engines() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README.md has the exit-code marker")
        + BEGIN.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README.md has the end marker");
    let table = metis_engine::Exit::markdown_table();
    if std::env::var_os("METIS_BLESS").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        table,
        "README.md's exit-code table differs from metis_engine::Exit: run \
         `METIS_BLESS=1 cargo test -p metis-flash --test cli_tests` and review the diff"
    );
}
