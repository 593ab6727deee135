//! The operator's job end to end, as a new user would do it: the example lab is
//! published (signed, secrets sealed) into an `oci:` registry, `metis-flash pull`
//! caches a node, the registry goes away, and `metis-flash flash NODE --offline
//! --device /dev/loopN` writes a card that is byte for byte the node's image with
//! its secrets in the slot. A wrong key or a tampered artifact writes nothing.

mod lab;

use lab::{demo, flash, published, sha, Loop};
use metis_core::inventory;

#[test]
fn offline_flash_of_a_signed_artifact_onto_a_loop_device() {
    let work = tempfile::tempdir().unwrap();
    let (inv_dir, reg_dir) = published(work.path(), &["titan-13"]);
    let cache = work.path().join("cache");
    let config = work.path().join("config");
    let reg = format!("oci:{}", reg_dir.display());
    let pubkey = demo("cosign.pub");
    let operator = demo("operator.agekey");

    let o = flash(&cache, &config, &["pull", "titan-13", "--registry", &reg]);
    assert!(
        o.status.success(),
        "pull: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = flash(&cache, &config, &["trust", "add", pubkey.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "trust add: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The signed lab index lists the node as cached, with a signature that verifies.
    let o = flash(&cache, &config, &["list", "--registry", &reg, "--json"]);
    assert!(
        o.status.success(),
        "list: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t13 = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "titan-13")
        .unwrap();
    assert_eq!(t13["cache"], "cached", "{listed:#}");
    assert_eq!(t13["verifies"], true, "{listed:#}");
    // The registry is gone: everything below works from the cache alone.
    std::fs::rename(&reg_dir, work.path().join("registry-gone")).unwrap();

    // The card: a loop device over a file holding old data.
    let card = work.path().join("card.raw");
    std::fs::write(&card, vec![0xA5u8; 256 << 20]).unwrap();
    let dev = Loop::attach(&card, &[]);
    let untouched = sha(&card, 256 << 20);

    let common = [
        "--offline",
        "--registry",
        reg.as_str(),
        "--inventory",
        inv_dir.to_str().unwrap(),
    ];
    // A key that is not an operator's (the CI builder's) opens nothing and writes nothing.
    let wrong = demo("builder.agekey");
    let mut args = vec![
        "flash",
        "titan-13",
        "--device",
        dev.dev.as_str(),
        "--yes",
        "--force-non-removable",
    ];
    args.extend_from_slice(&common);
    let mut a = args.clone();
    a.extend(["--identity", wrong.to_str().unwrap()]);
    let o = flash(&cache, &config, &a);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a wrong identity flashed:\n{stderr}");
    assert!(
        stderr.contains("not a recipient") || stderr.contains("not encrypted to your key"),
        "{stderr}"
    );
    assert!(!stderr.contains("insert and power on"));
    assert_eq!(
        sha(&card, 256 << 20),
        untouched,
        "a refused flash changed the card"
    );

    // The real flash.
    let mut a = args.clone();
    a.extend(["--identity", operator.to_str().unwrap()]);
    let o = flash(&cache, &config, &a);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "flash failed:\n{stderr}");
    assert!(stderr.contains("insert and power on"), "{stderr}");
    assert!(stderr.contains("verified with key"), "{stderr}");

    // --output gives the same bytes; both are the node's image with its secrets in the slot.
    let img = work.path().join("titan-13.img");
    let mut a = vec!["flash", "titan-13", "--output", img.to_str().unwrap()];
    a.extend_from_slice(&common);
    a.extend(["--identity", operator.to_str().unwrap()]);
    let o = flash(&cache, &config, &a);
    assert!(
        o.status.success(),
        "flash --output: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        sha(&card, size),
        sha(&img, size),
        "the card differs from --output"
    );
    let inv = inventory::load(&inv_dir).unwrap();
    let reference = work.path().join("ref.img");
    let built =
        metis_core::image::node::write_node_image(&inv, "titan-13", &reference, None).unwrap();
    let (slot_at, slot_len) = (
        built.personalised.slot.offset as usize,
        built.personalised.slot.len as usize,
    );
    let (a, b) = (
        std::fs::read(&reference).unwrap(),
        std::fs::read(&img).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    assert!(
        a[..slot_at] == b[..slot_at] && a[slot_at + slot_len..] == b[slot_at + slot_len..],
        "outside the slot the card is not the node's image"
    );
    assert!(
        b[slot_at..slot_at + slot_len].iter().any(|x| *x != 0),
        "the secrets slot is empty"
    );
    // The slot holds the node's bundle (a tar archive; the boot tests check its content).
    assert!(
        b[slot_at..slot_at + 512]
            .windows(8)
            .any(|w| w == b"manifest"),
        "slot does not hold a bundle"
    );

    // Tampered: one byte of the cached patch changed → refused, card untouched.
    std::fs::write(&card, vec![0x5Au8; 256 << 20]).unwrap();
    let before = sha(&card, 256 << 20);
    let layout = metis_core::oci::Layout::open_or_create(&cache).unwrap();
    let r = layout
        .resolve("metis/nodes/titan-13", "latest")
        .unwrap()
        .unwrap();
    let m = layout.manifest(&r.manifest.digest).unwrap();
    let patch = m
        .layers
        .iter()
        .find(|l| l.media_type == metis_core::oci::MEDIA_TYPE_PATCH)
        .unwrap();
    let p = layout.blob_path(&patch.digest).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let mut a = args.clone();
    a.extend(["--identity", operator.to_str().unwrap()]);
    let o = flash(&cache, &config, &a);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a tampered artifact was not refused:\n{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(
        sha(&card, 256 << 20),
        before,
        "a refused flash changed the card"
    );
}
