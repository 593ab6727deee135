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
/// directory, PATH of the system only.
struct Laptop {
    home: PathBuf,
    cwd: PathBuf,
    flash: PathBuf,
}

impl Laptop {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.flash)
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
    let listed = std::fs::read_to_string(&sums).unwrap();
    let mut files = Vec::new();
    for line in listed.lines() {
        let (digest, file) = line.split_once("  ").expect("sha256sum's format");
        assert_eq!(sha256_hex(&dist.join(file)), digest, "{file}");
        files.push(file.to_string());
    }
    assert!(files.contains(&name), "{files:?}");
    assert!(files.contains(&format!("{name}.tar.gz")), "{files:?}");
    // One byte changed anywhere: neither verifier accepts it.
    let mut bytes = listed.clone().into_bytes();
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

    // The archive: the binary, the operator's README and INSTALL, completions
    // for four shells, man pages.
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let o = Command::new("tar")
        .arg("-xzf")
        .arg(dist.join(format!("{name}.tar.gz")))
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar: {}", text(&o));
    let top = unpacked.join(&name);
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
        sha256_hex(&dist.join(&name))
    );
    let readme = std::fs::read_to_string(top.join("README.md")).unwrap();
    assert!(readme.contains("metis-flash setup lab.metis"), "{readme}");
    assert!(readme.contains("| 3 | verification failed"), "{readme}");

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

    // The laptop: the binary alone in an empty directory.
    let laptop = Laptop {
        home: work.path().join("home"),
        cwd: work.path().join("desk"),
        flash: work.path().join("bin/metis-flash"),
    };
    for dir in [&laptop.home, &laptop.cwd] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(laptop.flash.parent().unwrap()).unwrap();
    std::fs::copy(dist.join(&name), &laptop.flash).unwrap();

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
    let (inv_dir, reg_dir) = published(work.path(), &["titan-13"]);
    point_inventory_at(&inv_dir, &reg_dir);
    let profile = work.path().join("lab.metis");
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
    let by_debug = work.path().join("debug.img");
    let o = Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args(["titan-13", "--output"])
        .arg(&by_debug)
        .args(["--registry", &format!("oci:{}", reg_dir.display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", identity.to_str().unwrap()])
        .env("XDG_CONFIG_HOME", work.path().join("debug-config"))
        .env("METIS_CACHE", work.path().join("debug-cache"))
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
        "the release flasher wrote a different card than the debug build"
    );
}
