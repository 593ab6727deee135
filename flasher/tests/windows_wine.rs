//! metis-flash.exe, cross-built for x86_64-pc-windows-gnu by scripts/build-windows,
//! run under Wine: its help, `devices` (Wine has no disks: a clear answer), and a
//! flash of a published node from an `oci:` registry to `--output` whose bytes
//! equal the Linux flasher's output.
//!
//! METIS_WINDOWS_EXE names the .exe (.ci/run sets it). Without it the test is
//! skipped with a message, except in CI (`CI` set), where that is a failure.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lab::{demo, flash, published, sha};

use metis_tests::wine::{z, Prefix, WINE};

/// The .exe to test, or why there is none (a failure in CI).
fn windows_exe() -> Option<PathBuf> {
    let reason = match std::env::var_os("METIS_WINDOWS_EXE") {
        None => "METIS_WINDOWS_EXE is not set (scripts/build-windows prints the path to set it to)"
            .to_string(),
        Some(exe) if !Path::new(&exe).is_file() => format!(
            "METIS_WINDOWS_EXE={} does not exist",
            Path::new(&exe).display()
        ),
        Some(_) if !Path::new(WINE).exists() => {
            format!("{WINE} is missing (scripts/install-deps installs wine64)")
        }
        Some(exe) => return Some(PathBuf::from(exe)),
    };
    lab::skip_outside_ci("Windows", &reason);
    None
}

/// Runs the .exe under Wine in the prefix `prefix` (its own config directory,
/// %APPDATA%\metis) with the cache at `cache`.
fn wine(exe: &Path, prefix: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(WINE)
        .arg(exe)
        .args(args)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("METIS_CACHE", z(cache))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn metis_flash_exe_under_wine_flashes_the_same_card_as_linux() {
    let Some(exe) = windows_exe() else { return };
    let work = tempfile::tempdir().unwrap();
    let prefix = Prefix(work.path().join("wine"));
    let wcache = work.path().join("wcache");

    let o = wine(&exe, &prefix.0, &wcache, &["--help"]);
    assert!(o.status.success(), "--help: {}", text(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("devices") && help.contains("flash"), "{help}");
    assert!(help.contains("Exit codes"), "{help}");

    // Wine has no physical disks: `devices` says so and points at --output.
    let o = wine(&exe, &prefix.0, &wcache, &["devices"]);
    let answer = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "devices: {}", text(&o));
    assert!(answer.contains("this is Wine"), "{}", text(&o));
    assert!(answer.contains("--output FILE.img"), "{}", text(&o));

    let (_, reg_dir) = published(work.path(), &["titan-13"]);
    let operator = demo("operator.agekey");
    let pubkey = demo("cosign.pub");

    // Linux: the reference card image.
    let cache = work.path().join("cache");
    let config = work.path().join("config");
    let reg = format!("oci:{}", reg_dir.display());
    let linux_img = work.path().join("linux.img");
    let o = flash(&cache, &config, &["trust", "add", pubkey.to_str().unwrap()]);
    assert!(o.status.success(), "trust add: {}", text(&o));
    let o = flash(
        &cache,
        &config,
        &[
            "flash",
            "titan-13",
            "--registry",
            &reg,
            "--identity",
            operator.to_str().unwrap(),
            "--output",
            linux_img.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "linux flash: {}", text(&o));

    // Windows: the same flow through Z:\ paths, config under the prefix's %APPDATA%.
    let o = wine(&exe, &prefix.0, &wcache, &["trust", "add", &z(&pubkey)]);
    assert!(o.status.success(), "trust add under Wine: {}", text(&o));
    let windows_img = work.path().join("windows.img");
    let wreg = format!("oci:{}", z(&reg_dir));
    let o = wine(
        &exe,
        &prefix.0,
        &wcache,
        &[
            "flash",
            "titan-13",
            "--registry",
            &wreg,
            "--identity",
            &z(&operator),
            "--output",
            &z(&windows_img),
        ],
    );
    assert!(o.status.success(), "flash under Wine: {}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("verified with key"), "{stderr}");
    assert!(
        prefix
            .0
            .join("drive_c/users")
            .read_dir()
            .unwrap()
            .filter_map(|u| u.ok())
            .any(|u| u.path().join("AppData/Roaming/metis/trusted-keys").is_dir()),
        "the pinned key is not under %APPDATA%\\metis"
    );

    let size = std::fs::metadata(&linux_img).unwrap().len();
    assert_eq!(std::fs::metadata(&windows_img).unwrap().len(), size);
    assert_eq!(
        sha(&windows_img, size),
        sha(&linux_img, size),
        "metis-flash.exe wrote a different card than metis-flash"
    );
}
