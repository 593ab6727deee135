//! `metis-build golden import`: only an image whose digest is the one given
//! and which keeps the golden-image contract for its class is kept; --pin
//! points the class at it. (The boot chain test imports the bootable
//! stand-ins this way and boots what comes of them.)

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
    let inv_loaded = metis_core::inventory::load(&inv).unwrap();
    let (path, pinned_sha) =
        metis_core::image::node::golden_path(&inv_loaded, "amd64-agents").unwrap();
    assert_eq!((path, pinned_sha), (inv.join(&kept), sha));
}
