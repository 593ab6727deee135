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
//! Then the same release on a fresh Debian VM with no Rust (QEMU, the boot
//! tests' amd64 stand-in): docs/install.md's steps run there by cloud-init,
//! from checking the signature with openssl to a node flashed onto a card in a
//! USB card reader, which must be the debug build's card.
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

/// The debug build's card of `node` from the `oci:` registry `reg_dir`, made
/// by hand into `work/debug.img` with its own config and cache; returns the
/// image and its size.
fn debug_card(work: &Path, reg_dir: &Path, node: &str) -> (PathBuf, u64) {
    let by_debug = work.join("debug.img");
    let o = Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args([node, "--output"])
        .arg(&by_debug)
        .args(["--registry", &format!("oci:{}", reg_dir.display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", demo("operator.agekey").to_str().unwrap()])
        .env("XDG_CONFIG_HOME", work.join("debug-config"))
        .env("METIS_CACHE", work.join("debug-cache"))
        .env("PATH", sbin_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "debug flash: {}", text(&o));
    let size = std::fs::metadata(&by_debug).unwrap().len();
    (by_debug, size)
}

/// `readelf FLAG binary`'s output.
fn readelf(flag: &str, binary: &Path) -> String {
    let o = Command::new("readelf")
        .arg(flag)
        .arg(binary)
        .output()
        .unwrap();
    assert!(o.status.success(), "readelf {flag}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `binary` is an ELF for `machine` (readelf's `Machine:` line).
fn elf_for(binary: &Path, machine: &str) {
    let header = readelf("-h", binary);
    assert!(
        header
            .lines()
            .any(|l| l.trim_start().starts_with("Machine:") && l.trim_end().ends_with(machine)),
        "{} is not for {machine}:\n{header}",
        binary.display()
    );
}

/// `binary` is a static ELF for `machine`: no program interpreter (no loader
/// of the machine's) and no shared library.
fn static_elf(binary: &Path, machine: &str) {
    elf_for(binary, machine);
    let readelf = |flag: &str| readelf(flag, binary);
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
    let (by_debug, size) = debug_card(work, &reg_dir, "titan-13");
    let release_img = laptop.cwd.join("t13.img");
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

/// What docs/install.md tells a new operator to do, as one shell script run by
/// cloud-init on a Debian VM that has no Rust and no Metis: check the
/// download's signature with openssl and the files with sha256sum, unpack the
/// archive and put the flasher on the PATH, set the machine up from the lab
/// profile, list the disks, and flash a node to the USB card by typing its
/// name. `@VERSION@`, `@FINGERPRINT@` and `@NODE@` are filled in by the test.
/// Its transcript is /root/operator.log; its exit status /root/operator.status.
const OPERATOR_SCRIPT: &str = r#"#!/bin/sh
set -eux
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The operator's home, on the transfer disk: the download, the lab profile,
# the operator's key, and room for the flasher's cache.
mount /dev/vdb /home/operator
export HOME=/home/operator
cd "$HOME"
if command -v cargo rustc; then echo "this VM has Rust"; exit 1; fi

# 1. Check the download (the release key from the repository, not the download page).
cd Downloads
openssl pkey -pubin -in metis-release.pub -outform DER | sha256sum
base64 -d SHA256SUMS.sig > SHA256SUMS.sig.der
openssl dgst -sha256 -verify metis-release.pub -signature SHA256SUMS.sig.der SHA256SUMS
sha256sum --check --ignore-missing SHA256SUMS

# 2. Put it on the PATH.
tar -xzf metis-flash-@VERSION@-linux-x86_64.tar.gz
cd metis-flash-@VERSION@-linux-x86_64
install -m 0755 metis-flash /usr/local/bin/
install -m 0644 -D completions/metis-flash.bash /usr/share/bash-completion/completions/metis-flash
install -m 0644 -D -t /usr/local/share/man/man1 man/*.1
cd "$HOME"
metis-flash --version

# 3. Set the machine up once.
metis-flash setup Downloads/lab.metis --identity "$HOME/.ssh/operator.agekey" --yes --expect-fingerprint @FINGERPRINT@
metis-flash list

# 4. The first card: the card reader's disk, confirmed by typing the node's name.
metis-flash devices
metis-flash devices --json > devices.json
cat devices.json
echo @NODE@ | metis-flash @NODE@ --device /dev/sda
echo "operator: all steps done"
"#;

#[test]
fn a_new_operator_on_a_fresh_debian_vm_checks_the_download_and_flashes_a_usb_card() {
    let Some(dist) = release_dir() else { return };
    let name = format!("metis-flash-{VERSION}-linux-x86_64");
    let node = "titan-13";
    let golden = match metis_tests::golden::bootable() {
        Ok(images) => images.amd64(),
        Err(err) => {
            lab::skip_outside_ci(
                "release VM",
                &format!("no bootable Debian stand-in: {err:#}"),
            );
            return;
        }
    };
    let work = tempfile::Builder::new()
        .prefix("metis-release-vm.")
        .tempdir()
        .unwrap();
    let w = work.path();

    // The lab as the maintainer publishes it. The VM has no network to a
    // registry: it reads the lab from an `oci:` copy on its transfer disk.
    let (inv_dir, reg_dir) = published(w, &[node]);
    let guest_registry = Path::new("/home/operator/lab-registry");
    point_inventory_at(&inv_dir, guest_registry);
    let profile = w.join("lab.metis");
    export_profile(&inv_dir, &profile);

    // The transfer disk: the operator's home directory with the release as
    // downloaded (every file of the release directory), the release key, the
    // lab profile, the operator's own key and the lab's registry.
    let home = w.join("home");
    let downloads = home.join("Downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    for entry in std::fs::read_dir(&dist).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, downloads.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(demo("cosign.pub"), downloads.join("metis-release.pub")).unwrap();
    std::fs::copy(&profile, downloads.join("lab.metis")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join(".ssh/operator.agekey");
    std::fs::copy(demo("operator.agekey"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(&reg_dir)
        .arg(home.join("lab-registry"))
        .output()
        .unwrap();
    assert!(o.status.success(), "cp: {}", text(&o));
    let transfer = w.join("transfer.img");
    let o = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-L", "transfer", "-d"])
        .arg(&home)
        .arg(&transfer)
        .arg("1536M")
        .env("PATH", sbin_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "mke2fs: {}", text(&o));

    // The card: an empty 1 GiB card in a USB card reader.
    let card = w.join("card.img");
    std::fs::File::create(&card)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();

    // The VM: the Debian stand-in, seeded to run the operator's script once.
    let script = OPERATOR_SCRIPT
        .replace("@VERSION@", VERSION)
        .replace("@FINGERPRINT@", &fingerprint(&profile))
        .replace("@NODE@", node);
    let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
    let user_data = format!(
        "#cloud-config\n\
         hostname: laptop\n\
         write_files:\n  \
           - path: /root/operator.sh\n    \
             permissions: '0755'\n    \
             content: |\n{indented}\
         runcmd:\n  \
           - [mkdir, -p, /home/operator]\n  \
           - [sh, -c, 'sh /root/operator.sh > /root/operator.log 2>&1; echo $? > /root/operator.status']\n"
    );
    let vm = w.join("laptop.img");
    golden
        .seeded_copy(
            &[
                (
                    "meta-data",
                    "instance-id: laptop-1\nlocal-hostname: laptop\n",
                ),
                ("user-data", &user_data),
            ],
            Vec::new(),
            &vm,
        )
        .unwrap();
    let booted = metis_tests::qemu::boot_card_with_usb(
        &vm,
        &golden,
        "52:54:00:12:34:57",
        &[&transfer],
        &[&card],
    )
    .unwrap();
    eprintln!(
        "operator VM: cloud-init finished after {:.1?}, power-off took {:.1?}",
        booted.log.until_cloud_init_finished, booted.log.power_off
    );

    let log = booted.root_file("/root/operator.log");
    let status = booted.root_file("/root/operator.status");
    eprintln!("--- the operator's transcript ---\n{log}--- end of the transcript ---");
    if status.trim() != "0" {
        booted.fail(&format!(
            "the operator's script exited {}:\n{log}",
            status.trim()
        ));
    }
    for needle in [
        "Verified OK",
        &format!("{name}.tar.gz: OK"),
        &format!("{name}: OK"),
        &format!("metis-flash {VERSION} ("),
        "read back and verified",
        "insert and power on",
        "operator: all steps done",
    ] {
        if !log.contains(needle) {
            booted.fail(&format!(
                "the operator's transcript lacks {needle:?}:\n{log}"
            ));
        }
    }
    // The card reader's disk is what `devices` offers: a removable USB disk.
    let marker = "+ cat devices.json\n";
    let json_start = log.find(marker).map(|i| i + marker.len());
    let devices: serde_json::Value = json_start
        .and_then(|i| {
            let rest = &log[i..];
            let end = rest.find("\n+ ").unwrap_or(rest.len());
            serde_json::from_str(&rest[..end]).ok()
        })
        .unwrap_or_else(|| booted.fail(&format!("no devices JSON in the transcript:\n{log}")));
    let sda = devices
        .as_array()
        .and_then(|all| all.iter().find(|d| d["path"] == "/dev/sda"))
        .unwrap_or_else(|| booted.fail(&format!("`devices` did not list /dev/sda: {devices}")));
    assert_eq!(sda["bus"], "usb", "{sda}");
    assert_eq!(sda["removable"], true, "{sda}");
    // No secret in the transcript: not the operator's key.
    let key_file = std::fs::read_to_string(demo("operator.agekey")).unwrap();
    let secret = key_file
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(
        !log.contains(secret),
        "the operator's key is in the transcript"
    );

    // The card the VM wrote is the debug build's card of the same node.
    let (by_debug, size) = debug_card(w, &reg_dir, node);
    assert_eq!(
        sha(&card, size),
        sha(&by_debug, size),
        "the card flashed in the VM is not the debug build's card"
    );
}

/// The aarch64 GUI of `scripts/release VERSION` (not `--ci`): in its archive, an
/// AArch64 ELF that needs only the C library, libm and libgcc_s (its display
/// libraries are loaded at run time), and `--version` under qemu-aarch64 with
/// Debian's arm64 cross C library (`libc6-dev-arm64-cross`) is this version's.
/// Skipped with a message when the release, qemu-user or that library is not
/// there, in CI too (CI builds only the x86_64 flasher).
#[test]
fn the_aarch64_gui_is_an_aarch64_glibc_binary_that_starts_under_qemu_user() {
    let name = format!("metis-flash-{VERSION}-linux-aarch64");
    let Some(dist) = std::env::var_os("METIS_RELEASE_DIR").map(PathBuf::from) else {
        eprintln!("skipped: METIS_RELEASE_DIR is not set");
        return;
    };
    let archive = dist.join(format!("{name}.tar.gz"));
    let Some(qemu) = on_path("qemu-aarch64") else {
        eprintln!("skipped: no qemu-aarch64 on PATH (qemu-user; scripts/install-deps --release)");
        return;
    };
    let sysroot = Path::new("/usr/aarch64-linux-gnu");
    if !sysroot.join("lib/libc.so.6").is_file() {
        eprintln!(
            "skipped: no arm64 C library in {} (libc6-dev-arm64-cross)",
            sysroot.display()
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let o = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(work.path())
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!("skipped: no {} ({})", archive.display(), text(&o));
        return;
    }
    let gui = work.path().join(&name).join("metis-flash-gui");
    if !gui.is_file() {
        eprintln!(
            "skipped: {name}.tar.gz has no metis-flash-gui (`--only gui-linux-aarch64` builds it)"
        );
        return;
    }
    assert!(listed_files(&dist).contains(&format!("{name}.tar.gz")));

    elf_for(&gui, "AArch64");
    let needed: Vec<String> = readelf("-d", &gui)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_string()))
        .collect();
    for lib in &needed {
        assert!(
            ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-aarch64.so.1"].contains(&lib.as_str()),
            "the aarch64 GUI links {lib} (all: {needed:?}): a display library must be loaded at run time"
        );
    }

    let o = Command::new(qemu)
        .arg("-L")
        .arg(sysroot)
        .arg(&gui)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "--version under qemu-aarch64: {}",
        text(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(&format!("metis-flash-gui {VERSION} (")),
        "{out}"
    );
}
