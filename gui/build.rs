//! Embeds the Windows application manifest (windows/metis-flash-gui.exe.manifest:
//! run as administrator, per-monitor DPI, long paths) into metis-flash-gui.exe.
//! With the GNU toolchain (scripts/release) mingw's windres compiles the
//! resource script into an object linked into the binary; with MSVC the linker
//! embeds the manifest itself. Nothing happens for other targets. Also sets
//! the long version `--version` prints (release/version.rs), as the other
//! binaries' build scripts do.

use std::path::PathBuf;

// The long version (`--version`): release/version.rs.
#[path = "../release/version.rs"]
mod version;

fn main() {
    version::emit();
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("windows");
    println!("cargo:rerun-if-changed=windows");
    println!("cargo:rerun-if-env-changed=WINDRES");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let manifest = dir.join("metis-flash-gui.exe.manifest");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("msvc") {
        for arg in [
            "/MANIFEST:EMBED".to_string(),
            format!("/MANIFESTINPUT:{}", manifest.display()),
            "/MANIFESTUAC:NO".to_string(),
        ] {
            println!("cargo:rustc-link-arg-bin=metis-flash-gui={arg}");
        }
        return;
    }
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| {
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
        format!("{arch}-w64-mingw32-windres")
    });
    let object = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("manifest.o");
    let status = std::process::Command::new(&windres)
        .arg("--input")
        .arg(dir.join("metis-flash-gui.rc"))
        .arg("--include-dir")
        .arg(&dir)
        .args(["--output-format=coff", "--output"])
        .arg(&object)
        .status()
        .unwrap_or_else(|e| {
            panic!("running {windres} (Debian: binutils-mingw-w64-x86-64; or set WINDRES): {e}")
        });
    assert!(
        status.success(),
        "{windres} failed on windows/metis-flash-gui.rc"
    );
    println!(
        "cargo:rustc-link-arg-bin=metis-flash-gui={}",
        object.display()
    );
}
