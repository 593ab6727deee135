//! Snapshots of metis-build's output (help, check on good and bad inventories).
//! Regenerate after an intended change with `TRYCMD=overwrite cargo test -p metis-build --test cli_tests`
//! and review the diff.
//!
//! `check` needs the classes' golden images, which a clone does not have
//! (`tests/golden/gen.sh` makes the example's), so the cases that run it on the
//! example lab get `$METIS_INVENTORY` (and no `--inventory`): a copy of the
//! example with its stand-ins for `tests/cmd-golden/*.toml`, without them for
//! `tests/cmd-no-golden/*.toml` (`[INVENTORY]` in their output).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use metis_tests::golden::{expected_digests_file, generate_standins, parse_sha256sums};

#[test]
fn cli_tests() {
    // The example's `operator-profile` holds an absolute path and PEM's `\n`
    // (which trycmd shows as `/n`): tests/operator_profile.rs checks it.
    trycmd::TestCases::new().case("tests/cmd/*.toml").run();
}

#[test]
fn cli_tests_with_golden_images() {
    trycmd::TestCases::new()
        .env(
            "METIS_INVENTORY",
            example_with_golden().display().to_string(),
        )
        .case("tests/cmd-golden/*.toml")
        .run();
}

#[test]
fn cli_tests_without_golden_images() {
    let copy = tempfile::tempdir().unwrap();
    metis_tests::copy_example_inventory(copy.path());
    trycmd::TestCases::new()
        .env("METIS_INVENTORY", copy.path().display().to_string())
        .insert_var("[INVENTORY]", copy.path().display().to_string())
        .unwrap()
        .case("tests/cmd-no-golden/*.toml")
        .run();
}

/// A copy of the example inventory with the golden stand-ins, under the
/// target's test directory; the images (made by gen.sh, seconds) are kept
/// between runs while they are the ones `EXPECTED_SHA256` pins.
fn example_with_golden() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-example-inventory");
        let golden = dir.join("golden");
        let sums = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| {
                    let mut v = parse_sha256sums(&t);
                    v.sort();
                    v
                })
                .unwrap_or_default()
        };
        let fresh = sums(&golden.join("SHA256SUMS")) == sums(&expected_digests_file());
        if dir.exists() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                if fresh && e.file_name() == "golden" {
                    continue;
                }
                if e.path().is_dir() {
                    std::fs::remove_dir_all(e.path()).unwrap();
                } else {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        metis_tests::copy_example_inventory(&dir);
        if !fresh {
            generate_standins(&golden).expect("tests/golden/gen.sh");
        }
        dir
    })
}
