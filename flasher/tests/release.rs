//! The release as an operator gets it (`scripts/release --ci`): the static
//! x86_64 Linux `metis-flash` and its archive, SHA256SUMS and its signature.
//! The signature verifies with the project's own verifier and with openssl, and
//! neither accepts SHA256SUMS with one byte changed; every listed file has its
//! checksum; the archive holds the operator README, completions and man pages;
//! `ldd` calls the binary static. Then, copied alone into an empty directory
//! and run with nothing of the developer's environment (no inventory, no Rust,
//! a fresh HOME): `--version` is this commit's, `setup` from a lab profile, and a
//! node flashed from an `oci:` registry to `--output` is the debug build's card.
//!
//! METIS_RELEASE_DIR names the directory `scripts/release --ci` printed (.ci/run
//! sets it). Without it the test is skipped with a message, except in CI (`CI`
//! set), where that is a failure.
//!
//! When that directory also holds the static aarch64 flasher (`scripts/release
//! VERSION`, not `--ci`) and `qemu-aarch64` (qemu-user) is on PATH, a second test
//! makes the same checks on it under user-mode emulation: its archive, a static
//! aarch64 ELF, `--version`, completions, setup and the same card as the debug
//! build. Without either it is skipped with a message, in CI too (CI builds only
//! x86_64).

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lab::{demo, export_profile, fingerprint, point_inventory_at, published, sbin_path, sha};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The release directory to test, or why there is none (a failure in CI).
fn release_dir() -> Option<PathBuf> {
    let reason = match std::env::var_os("METIS_RELEASE_DIR") {
        None => {
            "METIS_RELEASE_DIR is not set (`scripts/release --ci` prints the directory)".to_string()
        }
        Some(dir) if !Path::new(&dir).join("SHA256SUMS").is_file() => format!(
            "METIS_RELEASE_DIR={} has no SHA256SUMS",
            Path::new(&dir).display()
        ),
        Some(dir) => return Some(PathBuf::from(dir)),
    };
    lab::skip_outside_ci("release", &reason);
    None
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The signature checks: `metis-build verify-blob` and openssl (what an operator
/// without Metis runs, docs/install.md).
fn signature_verifies(sums: &Path, sig: &Path) -> (bool, bool) {
    let build = metis_tests::registry::workspace_binary("metis-build", "metis-build").unwrap();
    let ours = Command::new(build)
        .arg("verify-blob")
        .arg(sums)
        .arg("--key")
        .arg(demo("cosign.pub"))
        .arg("--signature")
        .arg(sig)
        .output()
        .unwrap();
    let der = sig.with_extension("der");
    let b64 = std::fs::read_to_string(sig).unwrap();
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(std::fs::File::open(sig).unwrap())
        .output()
        .unwrap();
    assert!(decoded.status.success(), "base64 -d {b64}");
    std::fs::write(&der, decoded.stdout).unwrap();
    let openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(demo("cosign.pub"))
        .arg("-signature")
        .arg(&der)
        .arg(sums)
        .output()
        .unwrap();
    (ours.status.success(), openssl.status.success())
}

fn sha256_hex(path: &Path) -> String {
    metis_core::digest::hash_file(path).unwrap().0.hex()
}

/// A laptop with no Rust and no Metis checkout: an empty HOME and working
/// directory, PATH of the system only. `runner` runs the binary (qemu-aarch64
/// for another architecture's).
struct Laptop {
    home: PathBuf,
    cwd: PathBuf,
    flash: PathBuf,
    runner: Option<PathBuf>,
}

impl Laptop {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = match &self.runner {
            Some(runner) => {
                let mut c = Command::new(runner);
                c.arg(&self.flash);
                c
            }
            None => Command::new(&self.flash),
        };
        command
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Every file SHA256SUMS lists has its checksum; returns the names.
fn listed_files(dist: &Path) -> Vec<String> {
    let listed = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let mut files = Vec::new();
    for line in listed.lines() {
        let (digest, file) = line.split_once("  ").expect("sha256sum's format");
        assert_eq!(sha256_hex(&dist.join(file)), digest, "{file}");
        files.push(file.to_string());
    }
    files
}

/// The archive `name.tar.gz` unpacked under `work`: the binary (the same as the
/// bare one published beside it), the operator's README and INSTALL,
/// completions for four shells, man pages. Returns its top directory.
fn archive(dist: &Path, work: &Path, name: &str) -> PathBuf {
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let o = Command::new("tar")
        .arg("-xzf")
        .arg(dist.join(format!("{name}.tar.gz")))
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar: {}", text(&o));
    let top = unpacked.join(name);
    for file in [
        "metis-flash",
        "README.md",
        "INSTALL.md",
        "completions/metis-flash.bash",
        "completions/_metis-flash",
        "completions/metis-flash.fish",
        "completions/_metis-flash.ps1",
        "man/metis-flash.1",
        "man/metis-flash-setup.1",
    ] {
        assert!(top.join(file).is_file(), "{name}.tar.gz has no {file}");
    }
    assert_eq!(
        sha256_hex(&top.join("metis-flash")),
        sha256_hex(&dist.join(name))
    );
    let readme = std::fs::read_to_string(top.join("README.md")).unwrap();
    assert!(readme.contains("metis-flash setup lab.metis"), "{readme}");
    assert!(readme.contains("| 3 | verification failed"), "{readme}");
    top
}

/// `binary` is a static ELF for `machine` (readelf's `Machine:` line): no
/// program interpreter (no loader of the machine's) and no shared library.
fn static_elf(binary: &Path, machine: &str) {
    let readelf = |flag: &str| {
        let o = Command::new("readelf")
            .arg(flag)
            .arg(binary)
            .output()
            .unwrap();
        assert!(o.status.success(), "readelf {flag}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let header = readelf("-h");
    assert!(
        header
            .lines()
            .any(|l| l.trim_start().starts_with("Machine:") && l.trim_end().ends_with(machine)),
        "{} is not for {machine}:\n{header}",
        binary.display()
    );
    let segments = readelf("-l");
    assert!(
        !segments.contains("INTERP"),
        "{} has a program interpreter:\n{segments}",
        binary.display()
    );
    let dynamic = readelf("-d");
    assert!(
        !dynamic.contains("(NEEDED)"),
        "{} needs shared libraries:\n{dynamic}",
        binary.display()
    );
}

/// The binary `dist/name` copied alone into an empty directory of `work` and
/// run (by `runner`, if any) with nothing of the developer's environment:
/// `--version` is this checkout's, its completions are the archive's (`top`),
/// `setup` takes a lab profile, and a node flashed from an `oci:` registry to
/// `--output` is byte-identical to the debug build's card.
fn flashes_the_debug_builds_card(
    dist: &Path,
    work: &Path,
    name: &str,
    top: &Path,
    runner: Option<PathBuf>,
) {
    let laptop = Laptop {
        home: work.join("home"),
        cwd: work.join("desk"),
        flash: work.join("bin/metis-flash"),
        runner,
    };
    for dir in [&laptop.home, &laptop.cwd] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(laptop.flash.parent().unwrap()).unwrap();
    std::fs::copy(dist.join(name), &laptop.flash).unwrap();

    // --version: this checkout's commit and date, as the debug build says them.
    let o = laptop.run(&["--version"]);
    assert!(o.status.success(), "--version: {}", text(&o));
    let debug = Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&debug.stdout),
        "the release was built from another commit than this checkout"
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("metis-flash {VERSION} (")));

    // Completions from the binary are the archive's.
    let o = laptop.run(&["completions", "bash"]);
    assert!(o.status.success(), "completions: {}", text(&o));
    assert_eq!(
        o.stdout,
        std::fs::read(top.join("completions/metis-flash.bash")).unwrap()
    );

    // setup from the lab profile the builder exported, then a flash by node name.
    let (inv_dir, reg_dir) = published(work, &["titan-13"]);
    point_inventory_at(&inv_dir, &reg_dir);
    let profile = work.join("lab.metis");
    export_profile(&inv_dir, &profile);
    let identity = demo("operator.agekey");
    let o = laptop.run(&[
        "setup",
        profile.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--yes",
        "--expect-fingerprint",
        &fingerprint(&profile),
    ]);
    assert!(o.status.success(), "setup: {}", text(&o));
    let o = laptop.run(&["titan-13", "--output", "t13.img"]);
    assert!(o.status.success(), "flash: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("read back and verified"),
        "{}",
        text(&o)
    );

    // The debug build's card from the same registry, by hand.
    let by_debug = work.join("debug.img");
    let o = Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args(["titan-13", "--output"])
        .arg(&by_debug)
        .args(["--registry", &format!("oci:{}", reg_dir.display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", identity.to_str().unwrap()])
        .env("XDG_CONFIG_HOME", work.join("debug-config"))
        .env("METIS_CACHE", work.join("debug-cache"))
        .env("PATH", sbin_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "debug flash: {}", text(&o));
    let release_img = laptop.cwd.join("t13.img");
    let size = std::fs::metadata(&by_debug).unwrap().len();
    assert_eq!(std::fs::metadata(&release_img).unwrap().len(), size);
    assert_eq!(
        sha(&release_img, size),
        sha(&by_debug, size),
        "the release flasher ({name}) wrote a different card than the debug build"
    );
}

#[test]
fn the_static_release_flasher_runs_from_an_empty_directory_and_flashes_the_same_card() {
    let Some(dist) = release_dir() else { return };
    let work = tempfile::tempdir().unwrap();
    let name = format!("metis-flash-{VERSION}-linux-x86_64");

    // SHA256SUMS: signed, and every file it lists matches it.
    let sums = dist.join("SHA256SUMS");
    let sig = dist.join("SHA256SUMS.sig");
    assert!(sig.is_file(), "{} is missing", sig.display());
    let copy = work.path().join("SHA256SUMS");
    std::fs::copy(&sums, &copy).unwrap();
    let copy_sig = work.path().join("SHA256SUMS.sig");
    std::fs::copy(&sig, &copy_sig).unwrap();
    assert_eq!(signature_verifies(&copy, &copy_sig), (true, true));
    let files = listed_files(&dist);
    assert!(files.contains(&name), "{files:?}");
    assert!(files.contains(&format!("{name}.tar.gz")), "{files:?}");
    // One byte changed anywhere: neither verifier accepts it.
    let mut bytes = std::fs::read(&sums).unwrap();
    for i in [0, bytes.len() / 2, bytes.len() - 2] {
        bytes[i] ^= 0x01;
        std::fs::write(&copy, &bytes).unwrap();
        assert_eq!(
            signature_verifies(&copy, &copy_sig),
            (false, false),
            "byte {i} flipped"
        );
        bytes[i] ^= 0x01;
    }

    let top = archive(&dist, work.path(), &name);

    // Static: no loader, no libc of the machine's.
    let o = Command::new("ldd").arg(dist.join(&name)).output().unwrap();
    let ldd = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd {name}: {ldd}"
    );
    static_elf(&dist.join(&name), "X86-64");

    flashes_the_debug_builds_card(&dist, work.path(), &name, &top, None);
}

/// `name` on PATH, as the shell would find it.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

#[test]
fn the_static_aarch64_release_flasher_flashes_the_same_card_under_qemu_user() {
    let name = format!("metis-flash-{VERSION}-linux-aarch64");
    // Never a failure when absent, in CI either: CI builds only x86_64.
    let Some(dist) = std::env::var_os("METIS_RELEASE_DIR").map(PathBuf::from) else {
        eprintln!("skipped: METIS_RELEASE_DIR is not set");
        return;
    };
    if !dist.join(&name).is_file() {
        eprintln!(
            "skipped: {} has no {name} (`scripts/release {VERSION}` builds it; `--ci` does not)",
            dist.display()
        );
        return;
    }
    let Some(qemu) = on_path("qemu-aarch64") else {
        eprintln!("skipped: no qemu-aarch64 on PATH to run {name} (qemu-user; scripts/install-deps --release)");
        return;
    };
    let work = tempfile::tempdir().unwrap();

    let files = listed_files(&dist);
    assert!(files.contains(&name), "{files:?}");
    assert!(files.contains(&format!("{name}.tar.gz")), "{files:?}");
    let top = archive(&dist, work.path(), &name);
    static_elf(&dist.join(&name), "AArch64");

    flashes_the_debug_builds_card(&dist, work.path(), &name, &top, Some(qemu));
}
