//! `metis-build golden import`: only an image whose digest is the one given
//! and which keeps the golden-image contract for its class is kept; --pin
//! points the class at it. (The boot chain test imports the bootable
//! stand-ins this way and boots what comes of them.)

use metis_tests::DemoBuilderEnv;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_core::image::golden::file_sha256;
use metis_tests::{golden, tool};

fn lab() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("metis-golden-import-")
        .tempdir()
        .unwrap();
    let inv = dir.path().join("inventory");
    metis_tests::copy_example_inventory(&inv);
    golden::generate_standins(&inv.join("golden")).unwrap();
    (dir, inv)
}

fn import(inv: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .args(["golden", "import"])
        .args(args)
        .arg("--inventory")
        .arg(inv)
        .env("PATH", tool::search_path())
        .output()
        .unwrap()
}

fn golden_dir(inv: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(inv.join("golden"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_image_that_breaks_the_contract_or_its_digest_is_not_kept() {
    let (_dir, inv) = lab();
    let before = golden_dir(&inv);
    let class_file = std::fs::read_to_string(inv.join("classes/rpi5-ubuntu.yaml")).unwrap();
    // The plain stand-in has the layout but no cloud-init and no k3s.
    let image = inv.join("golden/rpi-ubuntu.img");
    let sha = file_sha256(&image).unwrap();
    let o = import(
        &inv,
        &[
            "rpi5-ubuntu",
            image.to_str().unwrap(),
            "--sha256",
            &sha,
            "--pin",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for expected in [
        "cannot be class `rpi5-ubuntu`'s golden image",
        "cloud-init is not installed (rule 3): no /usr/bin/cloud-init",
        "k3s is not installed (rule 4): no /usr/local/bin/k3s",
        "nothing was kept",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }

    // Another digest than the file's: refused before anything is read into the store.
    let mut wrong = sha.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let o = import(
        &inv,
        &["rpi5-ubuntu", image.to_str().unwrap(), "--sha256", &wrong],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("has sha256 {sha}, not the {wrong} you gave")),
        "{stderr}"
    );

    // The wrong layout for the class: the amd64 stand-in has no system-boot.
    let amd64 = inv.join("golden/amd64.img");
    let o = import(
        &inv,
        &[
            "rpi5-ubuntu",
            amd64.to_str().unwrap(),
            "--sha256",
            &file_sha256(&amd64).unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("seed partition:"), "{stderr}");
    assert!(stderr.contains("system-boot"), "{stderr}");

    let o = import(
        &inv,
        &["no-such-class", image.to_str().unwrap(), "--sha256", &sha],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no class `no-such-class`"), "{stderr}");
    assert!(stderr.contains("rpi5-ubuntu"), "{stderr}");

    assert_eq!(golden_dir(&inv), before, "a refused import left a file");
    assert_eq!(
        std::fs::read_to_string(inv.join("classes/rpi5-ubuntu.yaml")).unwrap(),
        class_file,
        "a refused import changed the class"
    );
}

#[test]
fn a_prepared_image_is_kept_once_and_pinned() {
    let (_dir, inv) = lab();
    let image = golden::bootable().unwrap().amd64().image;
    let sha = file_sha256(&image).unwrap();
    let args = ["amd64-agents", image.to_str().unwrap(), "--sha256", &sha];

    // Without --pin: the block to paste on stdout, the class untouched.
    let class_file = inv.join("classes/amd64-agents.yaml");
    let before = std::fs::read_to_string(&class_file).unwrap();
    let o = import(&inv, &args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let kept = format!("golden/amd64-agents-{}.img", &sha[..12]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("golden:\n  path: {kept}\n  sha256: {sha}\n")
    );
    assert_eq!(std::fs::read_to_string(&class_file).unwrap(), before);
    assert_eq!(file_sha256(&inv.join(&kept)).unwrap(), sha);

    // Again, with --pin: nothing copied, the class pinned, the inventory checks.
    let mut pinned = args.to_vec();
    pinned.push("--pin");
    let o = import(&inv, &pinned);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("already kept"), "{stderr}");
    let after = std::fs::read_to_string(&class_file).unwrap();
    assert!(
        after.contains(&format!("  path: {kept}\n  sha256: {sha}\n")),
        "{after}"
    );
    assert!(after.contains("seed:\n  label: CIDATA"), "{after}");
    let inv_loaded = metis_core::lab::load(&inv).unwrap();
    let (path, pinned_sha) =
        metis_core::build::node::golden_path(&inv_loaded, "amd64-agents").unwrap();
    assert_eq!((path, pinned_sha), (inv.join(&kept), sha));
}

/// CI has no golden image in git: `golden import --push --pin` stores the
/// checked image in the lab registry and pins the class to it by digest;
/// `publish` then pulls it from there (the base it would upload is the blob
/// already stored, so nothing is uploaded again) and the node flashes.
#[test]
fn a_golden_image_pushed_to_the_registry_is_what_publish_builds_from() {
    use metis_tests::registry::{TestRegistry, PASSWORD, USER};
    let (dir, inv) = lab();
    let image = golden::bootable().unwrap().amd64().image;
    let sha = file_sha256(&image).unwrap();
    let registry = TestRegistry::start().unwrap();
    let reg = format!("{}/metis", registry.host());
    let ca = registry.ca_file();
    let demo = metis_tests::workspace_root().join("inventory/demo-keys");
    let metis_build = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_metis-build"))
            .args(args)
            .arg("--inventory")
            .arg(&inv)
            .args(["--registry", &reg, "--ca-file", ca.to_str().unwrap()])
            .env("PATH", tool::search_path())
            .env("METIS_REGISTRY_USERNAME", USER)
            .env("METIS_REGISTRY_PASSWORD", PASSWORD)
            .demo_builder_env()
            .output()
            .unwrap()
    };

    let o = metis_build(&[
        "golden",
        "import",
        "amd64-agents",
        image.to_str().unwrap(),
        "--sha256",
        &sha,
        "--push",
        "--pin",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let class = std::fs::read_to_string(inv.join("classes/amd64-agents.yaml")).unwrap();
    let pinned = format!(
        "  oci: {}/metis/golden/amd64-agents@sha256:",
        registry.host()
    );
    assert!(class.contains(&pinned), "{class}");
    assert!(!class.contains("  path: "), "{class}");

    // What CI has: the inventory without the image.
    for e in std::fs::read_dir(inv.join("golden")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("amd64-agents-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let work = dir.path().join("work");
    let o = metis_build(&[
        "publish",
        "titan-db",
        "--json",
        "--key",
        demo.join("cosign.key").to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["base_bytes_uploaded"], 0, "{report}");
    let db = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "titan-db")
        .unwrap();
    assert_eq!(db["status"], "built", "{report}");
    // The golden image it built from is the imported one, byte for byte.
    assert_eq!(
        file_sha256(&work.join("golden-raw").join(format!(
            "{}.img",
            file_sha256(&find_blob_of_size(&work.join("golden-raw/oci"))).unwrap()
        )))
        .unwrap(),
        sha
    );

    // A class pinned to a digest the registry does not have fails by name.
    let bad = class.replace(
        &class[class.find("@sha256:").unwrap() + 8..][..64],
        &"0".repeat(64),
    );
    std::fs::write(inv.join("classes/amd64-agents.yaml"), bad).unwrap();
    let o = metis_build(&[
        "publish",
        "titan-db",
        "--key",
        demo.join("cosign.key").to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("amd64-agents"), "{stderr}");
}

/// The largest blob of an image layout: a golden artifact's base layer.
fn find_blob_of_size(layout: &Path) -> PathBuf {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// A class pinned by `url:` + `sha256:` is downloaded (from a loopback HTTP
/// server here), checked, kept by digest and reused: its card is the card
/// the same image pinned by path gives, and a wrong digest keeps nothing.
#[test]
fn a_golden_image_pinned_by_url_is_downloaded_checked_and_kept() {
    let (dir, inv) = lab();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let render = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_metis-build"))
            .args(["render", "titan-04", "--image"])
            .arg(out)
            .arg("--inventory")
            .arg(&inv)
            .env("PATH", tool::search_path())
            .env("TMPDIR", &tmp)
            .output()
            .unwrap()
    };
    let by_path = dir.path().join("by-path.img");
    let o = render(&by_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Serve the class's image, zstd-compressed, on loopback.
    let srv = dir.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    tool::run(
        tool::command("zstd")
            .args(["-q", "-3", "-o"])
            .arg(srv.join("rpi.img.zst"))
            .arg(inv.join("golden/rpi-ubuntu.img")),
    )
    .unwrap();
    let sha = file_sha256(&srv.join("rpi.img.zst")).unwrap();
    let port = metis_tests::registry::free_port().unwrap();
    let log = dir.path().join("http.log");
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&srv)
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(&mut server);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let class_file = inv.join("classes/rpi5-ubuntu.yaml");
    let class = std::fs::read_to_string(&class_file).unwrap();
    let pin = |sha: &str| {
        let mut out = String::new();
        for line in class.lines() {
            if line.starts_with("  path: ") {
                out.push_str(&format!("  url: http://127.0.0.1:{port}/rpi.img.zst\n"));
            } else if line.starts_with("  sha256: ") {
                out.push_str(&format!("  sha256: {sha}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&class_file, out).unwrap();
    };
    let gets = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("\"GET /rpi.img.zst")
            .count()
    };

    pin(&sha);
    let by_url = dir.path().join("by-url.img");
    for _ in 0..2 {
        let o = render(&by_url);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        gets(),
        1,
        "the second build downloaded again:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        std::fs::read(&by_url).unwrap() == std::fs::read(&by_path).unwrap(),
        "the card from the downloaded image differs from the card from the file"
    );

    // A digest the file does not have: refused, naming the URL; nothing kept.
    let wrong = "0".repeat(64);
    pin(&wrong);
    let o = render(&dir.path().join("wrong.img"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/rpi.img.zst")) && stderr.contains(&sha),
        "{stderr}"
    );
    let kept: Vec<_> = std::fs::read_dir(tmp.join("metis-golden-downloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, vec![format!("{sha}.download")], "{kept:?}");
}
