//! What `metis-build publish` pushes is what cosign verifies: the node
//! manifest and the lab index are published to the real TLS + password test
//! registry, fetched back by skopeo (not by Metis) with their
//! `sha256-<hex>.sig` signature manifests and payload layers, and checked by
//! the independent verifier `tests/cosign_verify.py` (written from cosign's
//! spec, not from our code) with the lab's public key. One flipped byte in a
//! payload, a wrong claim or another key must be refused.

use metis_tests::DemoBuilderEnv;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_tests::registry::{TestRegistry, PASSWORD, USER};
use metis_tests::{tool, workspace_root};

const NODE: &str = "titan-13";
const REVISION: &str = "7";

fn demo(file: &str) -> PathBuf {
    workspace_root().join("inventory/demo-keys").join(file)
}

fn sha256_hex(bytes: &[u8]) -> String {
    // coreutils, not Metis's hashing: the check stays independent.
    let file = write_temp(bytes);
    let out = tool::run(Command::new("sha256sum").arg(file.path())).unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

/// skopeo against the test registry, trusting its CA and logging in.
fn skopeo(registry: &TestRegistry, args: &[&str]) -> Output {
    let creds = format!("{USER}:{PASSWORD}");
    let mut cmd = tool::command("skopeo");
    let (cert_flag, creds_flag) = if args[0] == "copy" {
        ("--src-cert-dir", "--src-creds")
    } else {
        ("--cert-dir", "--creds")
    };
    cmd.arg(args[0])
        .arg(cert_flag)
        .arg(registry.cert_dir())
        .arg(creds_flag)
        .arg(&creds)
        .args(&args[1..]);
    tool::run(&mut cmd).unwrap()
}

/// One signed artifact as the registry serves it, laid out for the verifier.
struct Fetched {
    dir: tempfile::TempDir,
    /// The payload layer's blob file.
    payload: PathBuf,
}

impl Fetched {
    /// Fetches `repository:tag`'s manifest, then its cosign signature
    /// manifest and blobs.
    fn get(registry: &TestRegistry, repository: &str, tag: &str) -> Fetched {
        let dir = tempfile::tempdir().unwrap();
        let base = format!("docker://{}/{repository}", registry.host());
        let image = skopeo(registry, &["inspect", "--raw", &format!("{base}:{tag}")]).stdout;
        std::fs::write(dir.path().join("image.json"), &image).unwrap();
        let sig_tag = format!("sha256-{}.sig", sha256_hex(&image));
        let sig = skopeo(
            registry,
            &["inspect", "--raw", &format!("{base}:{sig_tag}")],
        )
        .stdout;
        std::fs::write(dir.path().join("sig.json"), &sig).unwrap();
        // The blobs (payload layer and config), through skopeo's dir: transport.
        let copied = dir.path().join("copied");
        skopeo(
            registry,
            &[
                "copy",
                &format!("{base}:{sig_tag}"),
                &format!("dir:{}", copied.display()),
            ],
        );
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for e in std::fs::read_dir(&copied).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                std::fs::copy(e.path(), blobs.join(&name)).unwrap();
            }
        }
        let manifest: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(
            layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json",
            "{manifest:#}"
        );
        let payload = blobs.join(&layer["digest"].as_str().unwrap()["sha256:".len()..]);
        assert!(payload.is_file(), "skopeo did not fetch the payload layer");
        Fetched { dir, payload }
    }

    /// Runs `tests/cosign_verify.py` with `key` and the claims `-a K=V`.
    fn verify(&self, key: &Path, claims: &[&str]) -> (bool, String) {
        let d = self.dir.path();
        let mut cmd = Command::new("python3");
        cmd.arg(workspace_root().join("tests/cosign_verify.py"))
            .arg("--key")
            .arg(key)
            .arg("--signature-manifest")
            .arg(d.join("sig.json"))
            .arg("--blobs")
            .arg(d.join("blobs"))
            .arg("--image-manifest")
            .arg(d.join("image.json"));
        for c in claims {
            cmd.arg("-a").arg(c);
        }
        let out = cmd
            .output()
            .expect("python3 with the `cryptography` package (scripts/install-deps)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn cosigns_own_verifier_accepts_what_publish_pushed_and_refuses_a_flipped_byte() {
    let registry = TestRegistry::start().unwrap();
    let lab = tempfile::tempdir().unwrap();
    let inventory = lab.path().join("inventory");
    metis_tests::copy_example_inventory(&inventory);
    metis_tests::golden::generate_standins(&inventory.join("golden")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .args(["publish", NODE, "--revision", REVISION, "--inventory"])
        .arg(&inventory)
        .arg("--registry")
        .arg(format!("{}/metis", registry.host()))
        .arg("--ca-file")
        .arg(registry.ca_file())
        .arg("--key")
        .arg(demo("cosign.key"))
        .arg("--work-dir")
        .arg(lab.path().join("work"))
        .env("PATH", tool::search_path())
        .demo_builder_env()
        .env("METIS_REGISTRY_USERNAME", USER)
        .env("METIS_REGISTRY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = demo("cosign.pub");

    let node = Fetched::get(&registry, &format!("metis/nodes/{NODE}"), "latest");
    let claims = [
        &format!("metis.node={NODE}")[..],
        &format!("metis.revision={REVISION}"),
        "metis.kind=node",
    ];
    let (ok, text) = node.verify(&key, &claims);
    assert!(ok && text.contains("Verified OK"), "node: {text}");
    // The revision tag is the same manifest, so the same signature.
    let by_revision = Fetched::get(&registry, &format!("metis/nodes/{NODE}"), REVISION);
    let (ok, text) = by_revision.verify(&key, &claims);
    assert!(ok, "node by revision tag: {text}");
    let index = Fetched::get(&registry, "metis/index", "latest");
    let (ok, text) = index.verify(&key, &["metis.kind=index"]);
    assert!(ok && text.contains("Verified OK"), "lab index: {text}");

    // Refusals: a claim for another node, another key, one flipped byte.
    let (ok, text) = node.verify(&key, &["metis.node=titan-14"]);
    assert!(
        !ok && text.contains("metis.node"),
        "wrong node accepted: {text}"
    );
    let other = lab.path().join("other");
    let o = Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .args(["keys", "generate", "--out"])
        .arg(&other)
        .env("COSIGN_PASSWORD", "other")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (ok, text) = node.verify(&other.join("cosign.pub"), &claims);
    assert!(
        !ok && text.contains("signature does not verify"),
        "another key accepted: {text}"
    );
    let mut payload = std::fs::read(&node.payload).unwrap();
    let i = payload
        .windows(NODE.len())
        .position(|w| w == NODE.as_bytes())
        .expect("the payload names the node");
    payload[i + NODE.len() - 1] ^= 0x01; // titan-13 -> titan-12
    std::fs::write(&node.payload, &payload).unwrap();
    let (ok, text) = node.verify(&key, &[]);
    assert!(
        !ok && text.contains("does not match its descriptor"),
        "a flipped payload byte accepted: {text}"
    );
    // And with the descriptor fixed to the tampered bytes, the signature
    // itself must fail.
    let sig_path = node.dir.path().join("sig.json");
    let mut sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig_path).unwrap()).unwrap();
    let tampered_hex = sha256_hex(&payload);
    sig["layers"][0]["digest"] = format!("sha256:{tampered_hex}").into();
    std::fs::write(&sig_path, serde_json::to_vec(&sig).unwrap()).unwrap();
    std::fs::copy(
        &node.payload,
        node.dir.path().join("blobs/sha256").join(&tampered_hex),
    )
    .unwrap();
    let (ok, text) = node.verify(&key, &[]);
    assert!(
        !ok && text.contains("signature does not verify"),
        "a re-described tampered payload accepted: {text}"
    );
}
