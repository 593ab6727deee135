//! The secrets bundle: its format read back with GNU tar, determinism, size
//! limit, what a node must have, and that no secret ever reaches the seed.

mod common;

use std::process::Command;

use common::*;
use metis_core::render::{self, paths, RenderError, SshKeyType, SLOT_SIZE};
use zeroize::Zeroizing;

#[test]
fn no_secret_value_appears_in_any_seed_file() {
    for (inv, name, _keep) in every_node() {
        let s = secrets(&inv, &name);
        let values = secret_values(&s);
        let r = render::render(&inv, &name).unwrap();
        let slot = render::bundle(&inv, &name, &s).unwrap();
        let slot_text = String::from_utf8_lossy(&slot);
        let mut in_bundle = 0;
        for v in &values {
            for (path, bytes) in &r.seed {
                assert!(
                    !String::from_utf8_lossy(bytes).contains(v.as_str()),
                    "{name}: a secret is in seed file {path}"
                );
            }
            for f in &r.root_files {
                assert!(!String::from_utf8_lossy(&f.content).contains(v.as_str()));
            }
            for e in r.root_edits.iter().chain(&r.seed_edits) {
                assert!(!e.value.contains(v.as_str()));
            }
            // The check can fail: the same values are in the bundle.
            if slot_text.contains(v.as_str()) {
                in_bundle += 1;
            }
        }
        let node = &inv.nodes[&name];
        let expected = values.len()
            - if node.role == metis_core::inventory::Role::None {
                3 // token, node password and registry password stay out
            } else if inv.lab.registry.host.starts_with("oci:") {
                1 // no registry, no registry password
            } else {
                0
            };
        assert_eq!(in_bundle, expected, "{name}");
    }
}

#[test]
fn bundle_is_a_deterministic_ustar_archive_of_the_slot_size() {
    let (_tmp, inv) = variant();
    let s = secrets(&inv, VARIANT_NODE);
    let a = render::bundle(&inv, VARIANT_NODE, &s).unwrap();
    let b = render::bundle(&inv, VARIANT_NODE, &s).unwrap();
    assert_eq!(*a, *b, "same secrets, same bytes");
    assert_eq!(a.len() as u64, SLOT_SIZE);

    let dir = tempfile::tempdir().unwrap();
    let slot = dir.path().join("slot");
    std::fs::write(&slot, &*a).unwrap();
    let listing = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--utc", "-tvf"])
            .arg(&slot),
    );
    let listing = String::from_utf8(listing.stdout).unwrap();
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l[5]).collect();
    assert_eq!(
        names,
        [
            "manifest",
            "files/etc/ssh/ssh_host_ed25519_key",
            "files/etc/ssh/ssh_host_ed25519_key.pub",
            "files/etc/ssh/ssh_host_ecdsa_key",
            "files/etc/ssh/ssh_host_ecdsa_key.pub",
            "files/etc/ssh/ssh_host_rsa_key",
            "files/etc/ssh/ssh_host_rsa_key.pub",
            "files/etc/rancher/node/password",
            "files/etc/rancher/k3s/token",
            "files/etc/rancher/k3s/registries.yaml",
            "files/etc/lab/api-key",
        ]
    );
    for l in &lines {
        assert_eq!(l[1], "0/0", "{l:?}");
        assert_eq!(&l[3..5], ["1970-01-01", "00:00"], "{l:?}");
        let want = if l[5].ends_with(".pub") {
            "-rw-r--r--"
        } else {
            "-rw-------"
        };
        assert_eq!(l[0], want, "{l:?}");
    }

    let manifest = run_ok(Command::new("tar").arg("-xOf").arg(&slot).arg("manifest"));
    assert_eq!(
        String::from_utf8(manifest.stdout).unwrap(),
        format!(
            "metis-bundle 1\nnode {VARIANT_NODE}\n\
             file 0600 root:root /etc/ssh/ssh_host_ed25519_key\n\
             file 0644 root:root /etc/ssh/ssh_host_ed25519_key.pub\n\
             file 0600 root:root /etc/ssh/ssh_host_ecdsa_key\n\
             file 0644 root:root /etc/ssh/ssh_host_ecdsa_key.pub\n\
             file 0600 root:root /etc/ssh/ssh_host_rsa_key\n\
             file 0644 root:root /etc/ssh/ssh_host_rsa_key.pub\n\
             file 0600 root:root /etc/rancher/node/password\n\
             file 0600 root:root /etc/rancher/k3s/token\n\
             file 0600 root:root /etc/rancher/k3s/registries.yaml\n\
             file 0600 ops:ops /etc/lab/api-key\n"
        )
    );
    // Another key order in the input: same bundle.
    let mut reordered = secrets(&inv, VARIANT_NODE);
    reordered.ssh_host_keys.reverse();
    assert_eq!(*render::bundle(&inv, VARIANT_NODE, &reordered).unwrap(), *a);
    // Different secrets: different bundle.
    let mut other = secrets(&inv, VARIANT_NODE);
    other.k3s_token = Some(Zeroizing::new("another-token".into()));
    assert_ne!(*render::bundle(&inv, VARIANT_NODE, &other).unwrap(), *a);
}

#[test]
fn an_all_zero_slot_is_an_empty_archive() {
    let dir = tempfile::tempdir().unwrap();
    let slot = dir.path().join("slot");
    std::fs::write(&slot, vec![0u8; SLOT_SIZE as usize]).unwrap();
    let out = run_ok(Command::new("tar").arg("-tf").arg(&slot));
    assert!(out.stdout.is_empty());
}

#[test]
fn registries_yaml_without_ca_or_auth_is_mirrors_only() {
    let (_tmp, dir) = copy_example(|dir| {
        replace(
            &dir.join("metis.yaml"),
            "host: oci:../out/registry",
            "host: harbor.lab.home.arpa:8443",
        );
    });
    let inv = metis_core::lab::load(&dir).unwrap();
    let mut s = secrets(&inv, "titan-04");
    s.registry_auth = None;
    let slot = render::bundle(&inv, "titan-04", &s).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("slot"), &*slot).unwrap();
    let out = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(tmp.path().join("slot"))
            .arg(format!("files{}", paths::REGISTRIES)),
    );
    let reg = yaml(&out.stdout);
    assert_eq!(
        reg,
        serde_json::json!({"mirrors": {"harbor.lab.home.arpa:8443": {"endpoint": ["https://harbor.lab.home.arpa:8443"]}}})
    );
}

#[test]
fn a_bundle_larger_than_the_slot_is_an_error_naming_the_size() {
    let (_tmp, inv) = variant();
    let mut s = secrets(&inv, VARIANT_NODE);
    s.extra
        .insert("lab_api_key".into(), Zeroizing::new(vec![b'x'; 70 * 1024]));
    let err = render::bundle(&inv, VARIANT_NODE, &s).unwrap_err();
    let msg = err.to_string();
    let RenderError::BundleTooLarge { size, limit, .. } = err else {
        panic!("{msg}");
    };
    assert_eq!(limit, SLOT_SIZE);
    assert!(size > 70 * 1024, "{size}");
    assert!(
        msg.contains(&format!(
            "is {size} bytes, more than the 65536-byte secrets slot"
        )),
        "{msg}"
    );
}

#[test]
fn missing_and_malformed_secrets_are_errors_that_never_show_the_value() {
    let inv = example();
    let check = |name: &str, edit: &dyn Fn(&mut render::NodeSecrets), want: &str| {
        let mut s = secrets(&inv, name);
        edit(&mut s);
        let err = render::bundle(&inv, name, &s).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
        for v in secret_values(&secrets(&inv, name)) {
            assert!(!err.contains(&v), "error shows a secret: {err}");
        }
    };
    check("titan-13", &|s| s.k3s_token = None, "k3s join token");
    check("titan-0a", &|s| s.node_password = None, "node password");
    check("titan-13", &|s| s.ssh_host_keys.clear(), "SSH host keys");
    check(
        "titan-13",
        &|s| {
            let t = s.k3s_token.take().unwrap();
            s.k3s_token = Some(Zeroizing::new(format!("{}\nsecond line", *t)));
        },
        "k3s token must be one non-empty line",
    );
    check(
        "titan-13",
        &|s| {
            s.ssh_host_keys[0].private_pem =
                Zeroizing::new(format!("not a key {}", *s.ssh_host_keys[0].private_pem))
        },
        "ed25519 SSH host private key is not a PEM private key",
    );
    check(
        "titan-13",
        &|s| s.ssh_host_keys[1].key_type = SshKeyType::Ed25519,
        "two ed25519 SSH host keys",
    );
    check(
        "titan-13",
        &|s| s.ssh_host_keys[0].public = "ssh-rsa AAAA".into(),
        "ed25519 SSH host public key",
    );
    let (_tmp, variant) = variant();
    let mut s = secrets(&variant, VARIANT_NODE);
    s.extra.clear();
    let err = render::bundle(&variant, VARIANT_NODE, &s)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`lab_api_key` (for hook file /etc/lab/api-key)"),
        "{err}"
    );
}

#[test]
fn role_none_needs_only_host_keys() {
    let inv = example();
    let mut s = secrets(&inv, "atlas");
    s.k3s_token = None;
    s.node_password = None;
    s.registry_auth = None;
    let slot = render::bundle(&inv, "atlas", &s).unwrap();
    let text = String::from_utf8_lossy(&slot);
    assert!(text.contains("files/etc/ssh/ssh_host_ed25519_key"));
    assert!(!text.contains("files/etc/rancher"));
}

#[test]
fn bundle_of_an_unknown_node_is_an_error() {
    let inv = example();
    let err = render::bundle(&inv, "titan-404", &secrets(&inv, "titan-04")).unwrap_err();
    assert!(matches!(err, RenderError::UnknownNode { .. }), "{err:?}");
}
