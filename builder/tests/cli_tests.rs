//! Snapshots of metis-build's output (help, check on good and bad inventories).
//! Regenerate after an intended change with `TRYCMD=overwrite cargo test -p metis-build --test cli_tests`
//! and review the diff.

#[test]
fn cli_tests() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
