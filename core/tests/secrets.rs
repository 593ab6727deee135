//! The secrets stage with real keys: bundles sealed to x25519, ssh-ed25519,
//! ssh-rsa and passphrase-protected identities open with each and only with
//! them; the real `age` CLI and our code read each other's files; the
//! digest of sealed sources is a digest of ciphertext.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, example_dir};
use metis_core::inventory;
use metis_core::render::SLOT_SIZE;
use metis_core::secrets::{self, Identities, SecretsError, Source};

fn demo_key(name: &str) -> PathBuf {
    example_dir().join("demo-keys").join(name)
}

fn ssh_keygen(dir: &Path, name: &str, kind: &[&str], passphrase: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(kind)
        .args(["-q", "-N", passphrase, "-C", "op@test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn recipient_of(agekey: &Path) -> String {
    let text = std::fs::read_to_string(agekey).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap();
    line.trim().to_string()
}

/// A copy of the example lab whose operators are `recipients`.
fn lab_with_operators(tmp: &Path, recipients: &[String]) -> inventory::Inventory {
    let dir = tmp.join("inventory");
    copy_dir(&example_dir(), &dir);
    let lab = dir.join("metis.yaml");
    let text = std::fs::read_to_string(&lab).unwrap();
    let demo = recipient_of(&demo_key("operator.agekey"));
    let list = recipients
        .iter()
        .map(|r| format!("    - {r}"))
        .collect::<Vec<_>>()
        .join("\n");
    let start = text.find(&format!("    - {demo}")).unwrap();
    let end = start + text[start..].find('\n').unwrap();
    std::fs::write(&lab, format!("{}{list}{}", &text[..start], &text[end..])).unwrap();
    metis_core::lab::load(&dir).unwrap()
}

fn builder() -> Identities {
    Identities::from_file(&demo_key("builder.agekey")).unwrap()
}

#[test]
fn bundles_open_with_each_operator_key_type_and_not_with_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (ed, ed_pub) = ssh_keygen(tmp.path(), "id_ed25519", &["-t", "ed25519"], "");
    let (rsa, rsa_pub) = ssh_keygen(tmp.path(), "id_rsa", &["-t", "rsa", "-b", "2048"], "");
    let (outsider, _) = ssh_keygen(tmp.path(), "outsider", &["-t", "ed25519"], "");
    let x25519 = demo_key("operator.agekey");
    let inv = lab_with_operators(
        tmp.path(),
        &[recipient_of(&x25519), ed_pub.clone(), rsa_pub.clone()],
    );
    let sealed = secrets::seal_node_bundle(&inv, "titan-13", &builder()).unwrap();
    for id in [&x25519, &ed, &rsa] {
        let slot = secrets::open_node_bundle(&sealed, &Identities::from_file(id).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", id.display()));
        assert_eq!(slot.len() as u64, SLOT_SIZE);
        assert_eq!(&slot[257..262], b"ustar", "the slot is the ustar bundle");
    }
    // The CI builder is not an operator: it must not open a bundle.
    for id in [&demo_key("builder.agekey"), &outsider] {
        let e =
            secrets::open_node_bundle(&sealed, &Identities::from_file(id).unwrap()).unwrap_err();
        assert!(
            matches!(e, SecretsError::NotARecipient { .. }),
            "{}: {e}",
            id.display()
        );
        let msg = e.to_string();
        assert!(
            msg.contains(
                "this card's secrets are not encrypted to your key (you are not a recipient)"
            ) && msg.contains("operators.recipients"),
            "{msg}"
        );
    }
    // A corrupted bundle is an error, not garbage.
    let mut bad = sealed.clone();
    let n = bad.len();
    bad[n - 10] ^= 0x55;
    let e = secrets::open_node_bundle(&bad, &Identities::from_file(&x25519).unwrap()).unwrap_err();
    assert!(matches!(e, SecretsError::Corrupt { .. }), "{e}");
}

/// One test for everything that reads `METIS_IDENTITY_PASSPHRASE`, so no
/// other test races on the environment.
#[test]
fn passphrase_protected_identities_open_bundles() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    // An age identity file encrypted with a passphrase (what `age -p` makes).
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let id_text = {
        use age::secrecy::ExposeSecret;
        format!("{}\n", id.to_string().expose_secret())
    };
    let mut enc = Vec::new();
    {
        let e = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
            "correct horse".to_string(),
        ));
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut enc, age::armor::Format::AsciiArmor)
                .unwrap();
        let mut w = e.wrap_output(armored).unwrap();
        w.write_all(id_text.as_bytes()).unwrap();
        w.finish().unwrap().finish().unwrap();
    }
    let protected = tmp.path().join("identity.txt");
    std::fs::write(&protected, &enc).unwrap();
    // An SSH key with a passphrase.
    let (ssh, ssh_pub) = ssh_keygen(
        tmp.path(),
        "id_ed25519",
        &["-t", "ed25519"],
        "correct horse",
    );
    let inv = lab_with_operators(tmp.path(), &[recipient, ssh_pub]);
    let sealed = secrets::seal_node_bundle(&inv, "titan-db", &builder()).unwrap();

    std::env::set_var(secrets::PASSPHRASE_ENV, "correct horse");
    for f in [&protected, &ssh] {
        let ids = Identities::from_file(f).unwrap();
        let slot = secrets::open_node_bundle(&sealed, &ids)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(slot.len() as u64, SLOT_SIZE);
    }
    std::env::set_var(secrets::PASSPHRASE_ENV, "wrong");
    let e = Identities::from_file(&protected).unwrap_err();
    assert!(matches!(e, SecretsError::WrongPassphrase { .. }), "{e}");
    let e = Identities::from_file(&ssh).unwrap_err();
    assert!(matches!(e, SecretsError::WrongPassphrase { .. }), "{e}");
    assert!(!e.to_string().contains("wrong\""), "{e}");
    std::env::remove_var(secrets::PASSPHRASE_ENV);
}

#[test]
fn the_age_cli_decrypts_our_sealed_sources_and_bundles() {
    let inv = metis_core::lab::load(&example_dir()).unwrap();
    // Sealed sources: the builder and the operator can read them.
    for key in ["builder.agekey", "operator.agekey"] {
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(demo_key(key))
            .arg(secrets::sealed_path(&inv, "titan-13"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let source = Source::from_plaintext(&out.stdout, "titan-13").unwrap();
        assert_eq!(source.ssh_host_keys.len(), 3);
        assert!(source.node_password.is_some());
    }
    // A bundle: the operator can, the builder cannot.
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle.age");
    std::fs::write(
        &bundle,
        secrets::seal_node_bundle(&inv, "titan-13", &builder()).unwrap(),
    )
    .unwrap();
    let run = |key: &str| {
        Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(demo_key(key))
            .arg(&bundle)
            .output()
            .unwrap()
    };
    let ok = run("operator.agekey");
    assert!(ok.status.success());
    assert_eq!(ok.stdout.len() as u64, SLOT_SIZE);
    assert!(!run("builder.agekey").status.success());
}

#[test]
fn we_decrypt_what_the_age_cli_encrypts_armored_and_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.json");
    let mut s = Source::new();
    s.k3s_token = Some(secrets::Secret::new("K10-from-age-cli".into()));
    std::fs::write(&plain, &*s.to_plaintext()).unwrap();
    let recipient = recipient_of(&demo_key("builder.agekey"));
    for armor in [true, false] {
        let out = tmp.path().join(format!("c-{armor}.age"));
        let mut cmd = Command::new("age");
        cmd.arg("-r").arg(&recipient);
        if armor {
            cmd.arg("-a");
        }
        assert!(cmd
            .arg("-o")
            .arg(&out)
            .arg(&plain)
            .status()
            .unwrap()
            .success());
        let ct = std::fs::read(&out).unwrap();
        assert_eq!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), armor);
        let back = secrets::open(&ct, &builder(), "test", "hint").unwrap();
        assert_eq!(Source::from_plaintext(&back, "t").unwrap(), s);
        // An SSH recipient, decrypted with the demo operator SSH key.
        let out = tmp.path().join(format!("s-{armor}.age"));
        let mut cmd = Command::new("age");
        cmd.arg("-R").arg(demo_key("operator_ssh.pub"));
        if armor {
            cmd.arg("-a");
        }
        assert!(cmd
            .arg("-o")
            .arg(&out)
            .arg(&plain)
            .status()
            .unwrap()
            .success());
        let ssh = Identities::from_file(&demo_key("operator_ssh")).unwrap();
        let back = secrets::open(&std::fs::read(&out).unwrap(), &ssh, "test", "hint").unwrap();
        assert_eq!(Source::from_plaintext(&back, "t").unwrap(), s);
    }
}

#[test]
fn sealed_digest_is_over_ciphertext_and_changes_on_rekey() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inventory");
    copy_dir(&example_dir(), &dir);
    let inv = metis_core::lab::load(&dir).unwrap();
    let before = secrets::sealed_digest(&inv, "titan-13").unwrap();
    assert!(before.starts_with("sha256:") && before.len() == 7 + 64);
    assert_ne!(before, secrets::sealed_digest(&inv, "titan-12").unwrap());
    // Same plaintext, new ciphertext: the digest follows the ciphertext.
    let plain_before = secrets::open(
        &std::fs::read(secrets::sealed_path(&inv, "titan-13")).unwrap(),
        &builder(),
        "t",
        "h",
    )
    .unwrap();
    secrets::rekey(&inv, &builder()).unwrap();
    let after = secrets::sealed_digest(&inv, "titan-13").unwrap();
    assert_ne!(before, after);
    let plain_after = secrets::open(
        &std::fs::read(secrets::sealed_path(&inv, "titan-13")).unwrap(),
        &builder(),
        "t",
        "h",
    )
    .unwrap();
    assert_eq!(*plain_before, *plain_after);
    use sha2::Digest;
    assert!(!after.contains(&hex::encode(sha2::Sha256::digest(&*plain_after))));
}

#[test]
fn debug_and_errors_never_show_values() {
    let marker = "LEAKMARKER-debug-7f3a";
    let mut s = Source::new();
    s.node_password = Some(secrets::Secret::new(marker.into()));
    s.files
        .insert("api".into(), secrets::Secret::new(marker.into()));
    assert!(!format!("{s:?}").contains(marker));
    let ns = Source::merge_into_node_secrets(&s, &Source::new());
    assert!(!format!("{ns:?}").contains(marker));
    // A type error in a plaintext must not quote the value.
    let bad = format!("{{\"metis_secrets\": 1, \"node_password\": [\"{marker}\"]}}");
    let e = Source::from_plaintext(bad.as_bytes(), "x").unwrap_err();
    assert!(!format!("{e} {e:?}").contains(marker), "{e}");
    let bad = format!("{{\"metis_secrets\": 1, \"{marker}\": 1}}");
    let e = Source::from_plaintext(bad.as_bytes(), "x").unwrap_err();
    assert!(!format!("{e} {e:?}").contains(marker), "{e}");
    assert!(!format!("{:?}", builder()).contains("AGE-SECRET-KEY"));
}

#[test]
fn check_names_a_node_without_sealed_secrets_and_the_command_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inventory");
    copy_dir(&example_dir(), &dir);
    std::fs::remove_file(dir.join("secrets/titan-13.age")).unwrap();
    std::fs::remove_file(dir.join("secrets/cluster.age")).unwrap();
    let checked = metis_core::lab::check(&dir);
    assert!(checked.inventory.is_none());
    // The copy has no golden images either; those findings are not this test's.
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == inventory::Severity::Error)
        .filter(|d| !d.message.contains("golden image"))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let node = errors
        .iter()
        .find(|d| d.file == Path::new("nodes/titan-13.yaml"))
        .expect("an error at the node's file");
    assert_eq!(node.line, 0);
    assert!(
        node.message.contains("secrets/titan-13.age"),
        "{}",
        node.message
    );
    assert!(
        node.hint
            .as_deref()
            .unwrap()
            .contains("metis-build secrets init"),
        "{node:?}"
    );
    assert!(errors
        .iter()
        .any(|d| d.file == Path::new("metis.yaml") && d.message.contains("secrets/cluster.age")));
    // What `secrets` works from loads all the same.
    metis_core::lab::load_for_sealing(&dir).unwrap();

    // `cluster` is the lab-wide sealed file, never a node.
    std::fs::copy(
        dir.join("nodes/titan-13.yaml"),
        dir.join("nodes/cluster.yaml"),
    )
    .unwrap();
    let checked = metis_core::lab::check(&dir);
    assert!(checked
        .diagnostics
        .iter()
        .any(|d| d.file == Path::new("nodes/cluster.yaml")
            && d.message.contains("cannot be named `cluster`")));
}

#[test]
fn demo_recipients_warn_outside_test_registries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inventory");
    copy_dir(&example_dir(), &dir);
    let warnings = |dir: &Path| -> Vec<String> {
        metis_core::lab::check(dir)
            .diagnostics
            .iter()
            .filter(|d| d.severity == inventory::Severity::Warning)
            .map(|d| d.message.clone())
            .filter(|m| m.contains("age recipient"))
            .collect()
    };
    assert!(warnings(&dir).is_empty(), "oci: registry: no warning");
    let lab = dir.join("metis.yaml");
    let text = std::fs::read_to_string(&lab).unwrap();
    std::fs::write(
        &lab,
        text.replacen("host: oci:../out/registry", "host: harbor.lab.home.arpa", 1),
    )
    .unwrap();
    let w = warnings(&dir);
    assert!(
        w.iter().any(|m| m.contains("DEMO operator age recipient")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("DEMO builder age recipient")),
        "{w:?}"
    );
    // Without demo-keys/ there is nothing to compare with.
    std::fs::remove_dir_all(dir.join("demo-keys")).unwrap();
    // (the signing key path is demo-keys/cosign.pub: its own error, not ours)
    assert!(warnings(&dir).is_empty());
}
