// The long version of a binary, `0.1.0 (3f2c9e1a7b4d 2026-12-01)`: the package
// version, the commit it was built from and the build date, as rustc prints its
// own, and the date alone (METIS_BUILD_DATE). Included by the binaries' build.rs
// (flasher, builder; the builder's man pages are dated with it) and the GUI's.
//
// The date is never the clock's, so two builds of one commit are the same bytes:
// it is $SOURCE_DATE_EPOCH (reproducible-builds.org) when set, as scripts/release
// sets it, else the commit's date. The commit is $METIS_COMMIT when set (a build
// from a source archive with no .git), else git's HEAD, else `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `YYYY-MM-DD` of a Unix time (UTC), by the days-from-civil inverse
/// (Howard Hinnant's `civil_from_days`), so build.rs needs no date crate.
fn date(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// `include!`d, this is the build script's main; as a module (`#[path] mod
// version`, gui/build.rs), `version::emit()` is called beside other work.
#[allow(dead_code)]
fn main() {
    emit();
}

/// Sets METIS_BUILD_DATE and METIS_LONG_VERSION for the crate being built.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=METIS_COMMIT");
    // A new commit changes HEAD (a branch switch) or the branch's ref (a commit
    // on it); only existing files are watched (a missing one reruns every build).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }

    let commit = std::env::var("METIS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%ct", "HEAD"]))
        .and_then(|e| e.trim().parse::<i64>().ok());
    let built = epoch.map(date).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=METIS_BUILD_DATE={built}");
    println!(
        "cargo:rustc-env=METIS_LONG_VERSION={} ({commit} {built})",
        std::env::var("CARGO_PKG_VERSION").unwrap()
    );
}
