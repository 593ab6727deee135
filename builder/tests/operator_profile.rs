//! `metis-build operator-profile`: the profile of the example lab parses as
//! metis-flash will parse it, names an absolute `oci:` directory, carries the
//! CA and keys of a real lab, warns about the DEMO key, and never carries a
//! secret, whatever secrets the builder's environment holds.

use std::path::Path;
use std::process::{Command, Output};

use metis_core::profile::LabProfile;
use metis_tests::{workspace_root, DemoBuilderEnv};

/// A self-signed certificate (`openssl req -x509`, P-256, CN "Metis test lab CA").
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBjjCCATWgAwIBAgIUQvzKvU3wMOIYKM0/1w5hRCUuIbswCgYIKoZIzj0EAwIw\nHDEaMBgGA1UEAwwRTWV0aXMgdGVzdCBsYWIgQ0EwIBcNMjYxMjAzMDc1MDI1WhgP\nMjEyNjExMDkwNzUwMjVaMBwxGjAYBgNVBAMMEU1ldGlzIHRlc3QgbGFiIENBMFkw\nEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaP3qcZ85kqvF9HjjBf7eUaETtRJjIh/9\nrdTHTJazhxWcjSIPOs0GGV0vIr7ocbCTPaMVxL7BQI0vbw6PnYtseqNTMFEwHQYD\nVR0OBBYEFFKJEdzP5BUXArJo0rTbjotDUhh7MB8GA1UdIwQYMBaAFFKJEdzP5BUX\nArJo0rTbjotDUhh7MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg\nHFsWX2ikSj+wIQ1XyS1b0EKPFBO0ZeLgiED0p1vqQzkCIF7PEXxMkqzvk2kbDewx\nwKVbKGs6HyHsqbyP2bZfHlZk\n-----END CERTIFICATE-----\n";

fn operator_profile(inventory: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .arg("operator-profile")
        .arg("--inventory")
        .arg(inventory)
        .args(extra)
        // The builder's secrets are in its environment in CI: none may leak.
        .demo_builder_env()
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every line of a secret file long enough to be recognised.
fn secret_lines() -> Vec<String> {
    let demo = workspace_root().join("inventory/demo-keys");
    let mut lines = Vec::new();
    for file in [
        "cosign.key",
        "builder.agekey",
        "operator.agekey",
        "operator_ssh",
    ] {
        let body = std::fs::read_to_string(demo.join(file)).unwrap();
        lines.extend(
            body.lines()
                .map(str::trim)
                .filter(|l| l.len() >= 16 && !l.starts_with("-----") && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    assert!(lines.len() > 4, "the demo secrets were read: {lines:?}");
    lines
}

/// No line of a secret file in `output`.
fn assert_no_secret_line(output: &str) {
    for line in secret_lines() {
        assert!(
            !output.contains(&line),
            "a line of a secret file is in the output:\n{output}"
        );
    }
}

/// Nothing secret in a profile: no private block or identity of any kind.
fn assert_no_secret(profile: &str) {
    for word in [
        "PRIVATE KEY",
        "AGE-SECRET-KEY",
        "OPENSSH PRIVATE",
        "password",
        "identity",
    ] {
        assert!(
            !profile.to_lowercase().contains(&word.to_lowercase()),
            "the profile holds `{word}`:\n{profile}"
        );
    }
    assert_no_secret_line(profile);
}

#[test]
fn the_example_labs_profile() {
    let root = workspace_root().canonicalize().unwrap();
    let out = operator_profile(&workspace_root().join("inventory"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // oci: is a test registry: the DEMO key draws no warning there.
    assert_eq!(text(&out.stderr), "");
    let json = text(&out.stdout);
    let profile = LabProfile::parse(json.as_bytes()).unwrap();
    assert_eq!(profile.to_json(), json, "stable bytes");
    assert_eq!(profile.lab, "lab.home.arpa");
    assert_eq!(
        profile.registry,
        format!("oci:{}", root.join("out/registry").display())
    );
    assert_eq!(profile.prefix, "metis");
    assert_eq!(profile.ca_certificate, None);
    let keys = profile.keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].fingerprint(),
        metis_core::trust::DEMO_KEY_FINGERPRINT
    );
    assert_no_secret(&json);
}

#[test]
fn a_real_labs_profile_carries_its_ca_and_warns_about_the_demo_key() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("inventory");
    metis_tests::copy_example_inventory(&inv);
    let lab = inv.join("metis.yaml");
    let yaml = std::fs::read_to_string(&lab).unwrap().replacen(
        "  host: oci:../out/registry\n",
        "  host: harbor.lab.home.arpa:8443\n  ca_file: lab-ca.pem\n",
        1,
    );
    std::fs::write(&lab, yaml).unwrap();
    std::fs::write(inv.join("lab-ca.pem"), CA).unwrap();

    let out = operator_profile(&inv, &["--lab", "Home lab"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    let profile = LabProfile::parse(json.as_bytes()).unwrap();
    assert_eq!(profile.lab, "Home lab");
    assert_eq!(profile.registry, "harbor.lab.home.arpa:8443");
    assert_eq!(profile.ca_certificate.as_deref(), Some(CA));
    assert_no_secret(&json);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains("demo-keys/cosign.pub is the example lab's DEMO signing key")
            && stderr.contains("harbor.lab.home.arpa:8443")
            && stderr.contains("generate the lab's own keys"),
        "{stderr}"
    );

    // A private key where the CA belongs is refused, naming the file; the
    // key never reaches stdout.
    let private = std::fs::read_to_string(inv.join("demo-keys/cosign.key")).unwrap();
    std::fs::write(inv.join("lab-ca.pem"), format!("{CA}{private}")).unwrap();
    let out = operator_profile(&inv, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("lab-ca.pem is not a PEM CA certificate")
            && stderr.contains("ENCRYPTED SIGSTORE PRIVATE KEY")
            && stderr.contains("never at a key"),
        "{stderr}"
    );
    assert_no_secret_line(&stderr);
    std::fs::write(inv.join("lab-ca.pem"), CA).unwrap();

    // So is a private key listed as a public key.
    let yaml = std::fs::read_to_string(&lab).unwrap().replacen(
        "demo-keys/cosign.pub",
        "demo-keys/cosign.key",
        1,
    );
    std::fs::write(&lab, yaml).unwrap();
    let out = operator_profile(&inv, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cosign.key is not a cosign public key")
            && stderr.contains("signing.public_keys"),
        "{stderr}"
    );
    assert_no_secret_line(&stderr);
}
