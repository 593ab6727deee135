//! The operator's job end to end, as a new user would do it: the example lab is
//! published (signed, secrets sealed) into an `oci:` registry, `metis-flash pull`
//! caches a node, the registry goes away, and `metis-flash flash NODE --offline
//! --device /dev/loopN` writes a card that is byte for byte the node's image with
//! its secrets in the slot. A wrong key or a tampered artifact writes nothing.

mod lab;

use lab::{demo, flash, published, sha, Loop};

#[test]
fn offline_flash_of_a_signed_artifact_onto_a_loop_device() {
    let work = tempfile::tempdir().unwrap();
    let (inv_dir, reg_dir) = published(work.path(), &["titan-13"]);
    let cache = work.path().join("cache");
    let config = work.path().join("config");
    let reg = format!("oci:{}", reg_dir.display());
    let pubkey = demo("cosign.pub");
    let operator = demo("operator.agekey");

    // The key first: pull verifies the signature before any blob moves.
    let o = flash(&cache, &config, &["trust", "add", pubkey.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "trust add: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = flash(&cache, &config, &["pull", "titan-13", "--registry", &reg]);
    assert!(
        o.status.success(),
        "pull: {}",
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
    // The image holds the node's secrets in clear in its slot: owner-only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&img).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the --output image is {mode:o}");
    let size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        sha(&card, size),
        sha(&img, size),
        "the card differs from --output"
    );
    let inv = metis_core::lab::load(&inv_dir).unwrap();
    let reference = work.path().join("ref.img");
    let built =
        metis_core::build::node::write_node_image(&inv, "titan-13", &reference, None).unwrap();
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

/// Points `<repo>:latest` in the cache at `from`'s cached artifact and its signature,
/// as a registry serving one node's artifact under another node's tag would.
fn swap_tag(cache: &std::path::Path, from: &str, to: &str) {
    let layout = metis_core::oci::Layout::open_or_create(cache).unwrap();
    let latest = layout.resolve(from, "latest").unwrap().unwrap();
    let sig_tag = metis_core::trust::signature_tag(&latest.manifest.digest).unwrap();
    let sig = layout.resolve(from, &sig_tag).unwrap().unwrap();
    layout
        .set_ref(to, "latest", &latest.manifest, None)
        .unwrap();
    layout.set_ref(to, &sig_tag, &sig.manifest, None).unwrap();
}

/// Replaces the cached signature of `repo:latest` with one whose ECDSA signature has
/// one base64 character changed (still well-formed, no longer valid).
fn tamper_signature(cache: &std::path::Path, repo: &str) {
    let layout = metis_core::oci::Layout::open_or_create(cache).unwrap();
    let latest = layout.resolve(repo, "latest").unwrap().unwrap();
    let sig_tag = metis_core::trust::signature_tag(&latest.manifest.digest).unwrap();
    let sig = layout.resolve(repo, &sig_tag).unwrap().unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(&sig.manifest.digest).unwrap()).unwrap();
    let annotation =
        &mut manifest["layers"][0]["annotations"][metis_core::trust::SIGNATURE_ANNOTATION];
    let mut text: Vec<u8> = annotation.as_str().unwrap().bytes().collect();
    // A character of the DER's last integer: the DER stays well-formed.
    let at = text.iter().rposition(|c| *c != b'=').unwrap() - 3;
    text[at] = if text[at] == b'A' { b'B' } else { b'A' };
    *annotation = serde_json::Value::String(String::from_utf8(text).unwrap());
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = layout.put_blob_bytes(&bytes).unwrap();
    let descriptor = metis_core::oci::Descriptor {
        digest: digest.to_string(),
        size: bytes.len() as u64,
        ..sig.manifest.clone()
    };
    layout.set_ref(repo, &sig_tag, &descriptor, None).unwrap();
}

fn argv(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs a refused flash onto `dev` and checks: the verification exit code, the
/// failed check named, nothing written to the card.
fn assert_refused(
    cache: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
    card: &std::path::Path,
    check: &str,
) {
    let before = sha(card, 256 << 20);
    let o = flash(cache, config, args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{args:?} was not refused:\n{stderr}"
    );
    assert!(
        stderr.contains(check),
        "{args:?}: {check:?} not in:\n{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(!stderr.contains("insert and power on"), "{stderr}");
    assert_eq!(sha(card, 256 << 20), before, "{args:?} changed the card");
}

/// Tampering through the real binary: a tag swap, an older revision (also with a
/// fresh cache: the record of seen revisions is the operator's, not the cache's),
/// and a tampered signature are each refused with exit 3 before any byte is
/// written; --allow-downgrade accepts the older revision deliberately.
#[test]
fn tag_swap_rollback_and_tampered_signature_are_refused_through_the_binary() {
    let work = tempfile::tempdir().unwrap();
    // Revision 1 in one registry, revision 5 in another.
    let (inv_dir, old_reg) = published(work.path(), &["titan-13"]);
    let new_reg = work.path().join("registry-new");
    // titan-db too, so the lab index lists the node whose tag is swapped below.
    lab::publish_into(&inv_dir, &new_reg, &["titan-13", "titan-db"], Some(5));
    let (old_reg, new_reg) = (
        format!("oci:{}", old_reg.display()),
        format!("oci:{}", new_reg.display()),
    );
    let config = work.path().join("config");
    let (cache_new, cache_old) = (work.path().join("cache-new"), work.path().join("cache-old"));
    let o = flash(
        &cache_new,
        &config,
        &["trust", "add", demo("cosign.pub").to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let operator = demo("operator.agekey");
    let run = |registry: &str, node: &str, target: &[&str], extra: &[&str]| {
        let mut a = vec!["flash", node];
        a.extend_from_slice(target);
        a.extend([
            "--offline",
            "--registry",
            registry,
            "--identity",
            operator.to_str().unwrap(),
        ]);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };

    // Revision 5 is flashed: this laptop has now seen it.
    for (cache, reg) in [(&cache_new, &new_reg), (&cache_old, &old_reg)] {
        let o = flash(cache, &config, &["pull", "titan-13", "--registry", reg]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let img = work.path().join("new.img");
    let a = run(
        &new_reg,
        "titan-13",
        &["--output", img.to_str().unwrap()],
        &[],
    );
    let o = flash(&cache_new, &config, &argv(&a));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(config.join("metis/seen.json").is_file());
    assert!(!cache_new.join("trust/seen.json").exists());

    let card = work.path().join("card.raw");
    std::fs::write(&card, vec![0xA5u8; 256 << 20]).unwrap();
    let dev = Loop::attach(&card, &[]);
    let device = [
        "--device",
        dev.dev.as_str(),
        "--yes",
        "--force-non-removable",
    ];
    let refused = |cache: &std::path::Path, registry: &str, node: &str, check: &str| {
        let a = run(registry, node, &device, &[]);
        assert_refused(cache, &config, &argv(&a), &card, check);
    };

    // Revision 1 from a fresh cache that never saw revision 5: still a rollback.
    refused(&cache_old, &old_reg, "titan-13", "revision check failed");
    // The same with the record in the old place only (as an older metis-flash kept
    // it): it is migrated, and still refuses.
    let record = config.join("metis/seen.json");
    let legacy = cache_old.join("trust/seen.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::rename(&record, &legacy).unwrap();
    refused(&cache_old, &old_reg, "titan-13", "revision check failed");
    assert!(
        record.is_file() && !legacy.exists(),
        "the record was not migrated"
    );
    // Deliberately accepted with --allow-downgrade, over an existing
    // world-readable file, which ends up owner-only.
    let old_img = work.path().join("old.img");
    std::fs::write(&old_img, b"old").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&old_img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let a = run(
        &old_reg,
        "titan-13",
        &["--output", old_img.to_str().unwrap()],
        &["--allow-downgrade"],
    );
    let o = flash(&cache_old, &config, &argv(&a));
    assert!(
        o.status.success(),
        "--allow-downgrade: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mode = std::fs::metadata(&old_img).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an existing --output file was left {mode:o}");

    // titan-13's valid, signed artifact under titan-db's tag.
    swap_tag(&cache_new, "metis/nodes/titan-13", "metis/nodes/titan-db");
    refused(&cache_new, &new_reg, "titan-db", "node check failed");

    // One character of the signature changed.
    tamper_signature(&cache_new, "metis/nodes/titan-13");
    refused(&cache_new, &new_reg, "titan-13", "signature check failed");
}

/// `metis-flash pull NODE` caches the signed lab index (and its signature) with the
/// node, so `list --offline` works afterwards; without a pull, the offline error
/// names a command that caches the index. `list`'s `verifies` checks more than
/// the signature: another node's artifact under a node's tag, or a revision older
/// than one seen here, does not verify.
#[test]
fn pull_caches_the_signed_lab_index_for_offline_list() {
    let work = tempfile::tempdir().unwrap();
    let (_, reg_dir) = published(work.path(), &["titan-13", "titan-15"]);
    let reg = format!("oci:{}", reg_dir.display());
    let config = work.path().join("config");
    let pubkey = demo("cosign.pub");
    let o = flash(
        &work.path().join("cache"),
        &config,
        &["trust", "add", pubkey.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Nothing pulled yet: the hint names a command that caches the index.
    let empty = work.path().join("empty-cache");
    let o = flash(&empty, &config, &["list", "--offline", "--registry", &reg]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("`metis-flash list`"), "{stderr}");

    let cache = work.path().join("cache");
    let o = flash(
        &cache,
        &config,
        &["pull", "titan-13", "titan-15", "--registry", &reg],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "pull: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // The registry is gone: the list comes from what `pull` cached.
    std::fs::rename(&reg_dir, work.path().join("registry-gone")).unwrap();
    let list = || {
        let o = flash(
            &cache,
            &config,
            &["list", "--offline", "--registry", &reg, "--json"],
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "list --offline after pull: {stderr}");
        let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let row = |node: &str| {
            listed["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node"] == node)
                .unwrap_or_else(|| panic!("{node} not listed: {listed:#}"))
                .clone()
        };
        (row("titan-13"), row("titan-15"))
    };
    let (t13, t15) = list();
    for row in [&t13, &t15] {
        assert_eq!(row["cache"], "cached", "{row:#}");
        assert_eq!(row["verifies"], true, "{row:#}");
    }

    // titan-13's validly signed artifact under titan-15's tag: not titan-15's.
    swap_tag(&cache, "metis/nodes/titan-13", "metis/nodes/titan-15");
    let (t13, t15) = list();
    assert_eq!(t13["verifies"], true, "{t13:#}");
    assert_eq!(t15["cache"], "stale", "{t15:#}");
    assert_eq!(t15["verifies"], false, "{t15:#}");
    assert!(
        t15["problem"]
            .as_str()
            .unwrap()
            .contains("node check failed"),
        "{t15:#}"
    );
    // A newer titan-13 was seen here: the cached one would be refused as a rollback.
    std::fs::write(
        config.join("metis/seen.json"),
        r#"{"nodes": {"titan-13": 999}}"#,
    )
    .unwrap();
    let (t13, _) = list();
    assert_eq!(t13["verifies"], false, "{t13:#}");
    assert!(
        t13["problem"]
            .as_str()
            .unwrap()
            .contains("revision check failed"),
        "{t13:#}"
    );
}

/// The example lab's DEMO signing key and DEMO operator identities (age and SSH)
/// are fine with an `oci:` or loopback registry, and warned about loudly with any
/// other.
#[test]
fn demo_key_and_demo_identities_are_warned_about_off_a_test_registry() {
    let work = tempfile::tempdir().unwrap();
    let (_, reg_dir) = published(work.path(), &["titan-13"]);
    let reg = format!("oci:{}", reg_dir.display());
    let (cache, config) = (work.path().join("cache"), work.path().join("config"));
    let pubkey = demo("cosign.pub");
    for args in [
        vec!["trust", "add", pubkey.to_str().unwrap()],
        vec!["pull", "titan-13", "--registry", &reg],
    ] {
        let o = flash(&cache, &config, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let run = |registry: &str, identity: &str| {
        let img = work.path().join("titan-13.img");
        let identity = demo(identity);
        let o = flash(
            &cache,
            &config,
            &[
                "titan-13",
                "--offline",
                "--registry",
                registry,
                "--output",
                img.to_str().unwrap(),
                "--identity",
                identity.to_str().unwrap(),
            ],
        );
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    // The registry the example lab is meant for: no warning.
    let (ok, stderr) = run(&reg, "operator.agekey");
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");

    // The same cached artifact, for a lab whose registry is a real host.
    let (ok, stderr) = run("registry.lab.example/metis", "operator.agekey");
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("signed with the example lab's DEMO key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "DEMO identity (age18n6fdqnkkqsadk73fr8mneqn6cjat0ys7w6glyr8pv7fta3jq9yq4fgwa5)"
        ),
        "{stderr}"
    );
    // The demo operator SSH key is recognised too (from its public half, in clear in
    // the key file).
    let (_, stderr) = run("registry.lab.example/metis", "operator_ssh");
    assert!(
        stderr.contains("DEMO identity (ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZNhwignj2qWyV"),
        "{stderr}"
    );
}
