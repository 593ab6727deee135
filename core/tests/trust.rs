//! Trust: sign → verify, cosign's own fixtures, an independent verifier, and every
//! tampering refused with its own named failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use metis_core::trust::{
    self, sign, verify_index, verify_node, BlobContent, Descriptor, HeldArtifact, HeldBlob,
    HeldSignature, IndexEntry, KeyError, LabIndex, Metadata, OciManifest, PrivateKey, PublicKey,
    SeenRevisions, SignatureArtifact, SimpleSigning, Subject, TrustedKeys, VerifyError,
    OCI_MANIFEST_MEDIA_TYPE,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cosign");
const REGISTRY: &str = "registry.lab:5000/metis/nodes";

/// One key per test binary: generation is cheap, but a fixed key keeps failures readable.
fn lab_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(PrivateKey::generate)
}

fn pinned() -> TrustedKeys {
    TrustedKeys::new(vec![lab_key().public_key()])
}

/// A node artifact as the builder would publish it, and its signature.
struct Published {
    manifest: Vec<u8>,
    config: Vec<u8>,
    base: Vec<u8>,
    /// The patch layer lives in a file, as in the cache.
    patch: PathBuf,
    signature: SignatureArtifact,
}

const CONFIG_TYPE: &str = "application/vnd.metis.node.config.v1+json";
const BASE_TYPE: &str = "application/vnd.metis.base.v1+zstd";
const PATCH_TYPE: &str = "application/vnd.metis.patch.v1";

fn publish(dir: &Path, node: &str, revision: u64, key: &PrivateKey) -> Published {
    let config = format!(r#"{{"node":"{node}","class":"amd64-agents"}}"#).into_bytes();
    let base = vec![0x5a; 10_000];
    let patch_bytes = format!("patch for {node}").into_bytes();
    let patch = dir.join(format!("{node}-{revision}.patch"));
    std::fs::write(&patch, &patch_bytes).unwrap();
    let manifest = OciManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
        artifact_type: None,
        config: Descriptor::of(CONFIG_TYPE, &config),
        layers: vec![
            Descriptor::of(BASE_TYPE, &base),
            Descriptor::of(PATCH_TYPE, &patch_bytes),
        ],
        annotations: None,
    }
    .to_bytes();
    let meta = Metadata::node(node, "amd64-agents", revision, "2026-11-25T23:00:00Z");
    let signature = sign(
        &format!("{REGISTRY}/{node}"),
        &trust::sha256_digest(&manifest),
        Some(&meta),
        key,
    )
    .unwrap();
    Published {
        manifest,
        config,
        base,
        patch,
        signature,
    }
}

impl Published {
    fn blobs(&self) -> Vec<HeldBlob<'_>> {
        let m = OciManifest::parse(&self.manifest).unwrap();
        vec![
            HeldBlob {
                media_type: CONFIG_TYPE,
                digest: leak(m.config.digest),
                content: BlobContent::Bytes(&self.config),
            },
            HeldBlob {
                media_type: BASE_TYPE,
                digest: leak(m.layers[0].digest.clone()),
                content: BlobContent::Bytes(&self.base),
            },
            HeldBlob {
                media_type: PATCH_TYPE,
                digest: leak(m.layers[1].digest.clone()),
                content: BlobContent::File(&self.patch),
            },
        ]
    }

    /// Verifies as the flasher would for `node`.
    fn verify_as(
        &self,
        node: &str,
        cache: &Path,
        allow_downgrade: bool,
    ) -> Result<trust::Verified, VerifyError> {
        let payloads = [self.signature.payload.bytes.as_slice()];
        let signature = HeldSignature {
            manifest: &self.signature.manifest.bytes,
            payloads: &payloads,
        };
        let blobs = self.blobs();
        let artifact = HeldArtifact {
            manifest: &self.manifest,
            blobs: &blobs,
        };
        let mut seen = SeenRevisions::load(cache).unwrap();
        verify_node(
            &pinned(),
            &signature,
            &artifact,
            node,
            &mut seen,
            allow_downgrade,
        )
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn sign_then_verify_round_trip_records_revision() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "titan-db", 7, lab_key());
    let v = p
        .verify_as("titan-db", dir.path(), false)
        .expect("a good artifact verifies");
    assert_eq!(v.metadata.node.as_deref(), Some("titan-db"));
    assert_eq!(v.metadata.revision, 7);
    assert_eq!(v.manifest_digest, trust::sha256_digest(&p.manifest));
    assert_eq!(v.key_fingerprint, lab_key().public_key().fingerprint());
    assert_eq!(
        v.payload.critical.identity.docker_reference,
        format!("{REGISTRY}/titan-db")
    );
    let seen = SeenRevisions::load(dir.path()).unwrap();
    assert_eq!(seen.newest(Subject::Node("titan-db")), Some(7));
    assert!(dir.path().join("seen.json").is_file());

    // The pieces the registry module pushes are self-consistent and cosign-shaped.
    let sig = &p.signature;
    assert_eq!(
        sig.tag,
        format!("sha256-{}.sig", &trust::sha256_digest(&p.manifest)[7..])
    );
    let m = OciManifest::parse(&sig.manifest.bytes).unwrap();
    assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST_MEDIA_TYPE));
    assert_eq!(
        m.config.media_type,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(m.config.digest, sig.config.digest);
    assert_eq!(m.layers.len(), 1);
    assert_eq!(
        m.layers[0].media_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert_eq!(m.layers[0].digest, sig.payload.digest);
    assert_eq!(
        m.layers[0].annotations.as_ref().unwrap()["dev.cosignproject.cosign/signature"],
        sig.signature
    );
    assert_eq!(
        sig.manifest.digest,
        trust::sha256_digest(&sig.manifest.bytes)
    );
    assert_eq!(
        String::from_utf8(sig.config.bytes.clone()).unwrap(),
        format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
            sig.payload.digest
        )
    );
}

#[test]
fn signing_refuses_what_is_not_a_digest_or_repository() {
    let digest = trust::sha256_digest(b"m");
    assert!(matches!(
        sign("r/x", "sha256:abc", None, lab_key()),
        Err(trust::SignError::Digest(_))
    ));
    assert!(matches!(
        sign("r/x@sha256:00", &digest, None, lab_key()),
        Err(trust::SignError::Repository(_))
    ));
    assert!(matches!(
        sign("", &digest, None, lab_key()),
        Err(trust::SignError::Repository(_))
    ));
}

#[test]
fn signing_is_deterministic_except_for_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let a = publish(dir.path(), "titan-db", 3, lab_key());
    let b = publish(dir.path(), "titan-db", 3, lab_key());
    assert_eq!(a.signature.payload, b.signature.payload);
    assert_eq!(a.signature.config, b.signature.config);
    assert_eq!(a.signature.tag, b.signature.tag);
}

/// What each tampering must be refused with.
#[test]
fn every_tampering_is_refused_with_its_own_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let good = || publish(dir.path(), "titan-db", 10, lab_key());

    // A manifest byte.
    let mut p = good();
    let text = String::from_utf8(p.manifest.clone()).unwrap();
    p.manifest = text.replacen("patch.v1", "patch.v2", 1).into_bytes();
    assert_ne!(p.manifest, text.as_bytes());
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(e, VerifyError::ManifestDigestMismatch { .. }),
        "{e}"
    );

    // The config blob.
    let mut p = good();
    p.config.push(b' ');
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(&e, VerifyError::BlobDigestMismatch { media_type, .. } if media_type == CONFIG_TYPE),
        "{e}"
    );

    // A layer blob in memory, and one in a file.
    let mut p = good();
    p.base[4096] ^= 1;
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(&e, VerifyError::BlobDigestMismatch { media_type, .. } if media_type == BASE_TYPE),
        "{e}"
    );
    let p = good();
    std::fs::write(&p.patch, b"patch for titan-13").unwrap();
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(&e, VerifyError::BlobDigestMismatch { media_type, .. } if media_type == PATCH_TYPE),
        "{e}"
    );

    // A blob not held at all.
    let p = good();
    let payloads = [p.signature.payload.bytes.as_slice()];
    let blobs = &p.blobs()[..2];
    let mut seen = SeenRevisions::load(&cache).unwrap();
    let e = verify_node(
        &pinned(),
        &HeldSignature {
            manifest: &p.signature.manifest.bytes,
            payloads: &payloads,
        },
        &HeldArtifact {
            manifest: &p.manifest,
            blobs,
        },
        "titan-db",
        &mut seen,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::BlobMissing { .. }), "{e}");

    // The signature: another key's signature over the same payload.
    let mut p = good();
    let other = publish(dir.path(), "titan-db", 10, &PrivateKey::generate());
    p.signature = other.signature;
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(e, VerifyError::SignatureInvalid { keys: 1 }),
        "{e}"
    );

    // The signature annotation garbled.
    let mut p = good();
    let sig = p.signature.signature.clone();
    let text = String::from_utf8(p.signature.manifest.bytes.clone()).unwrap();
    p.signature.manifest.bytes = text.replace(&sig, &format!("!{}", &sig[1..])).into_bytes();
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(matches!(e, VerifyError::SignatureMalformed(_)), "{e}");

    // The payload's node name: the payload blob no longer is the one signed for…
    let mut p = good();
    let payload = String::from_utf8(p.signature.payload.bytes.clone()).unwrap();
    let forged = payload.replace("\"metis.node\":\"titan-db\"", "\"metis.node\":\"titan-13\"");
    assert_ne!(forged, payload);
    p.signature.payload.bytes = forged.clone().into_bytes();
    let e = p.verify_as("titan-13", &cache, false).unwrap_err();
    assert!(
        matches!(e, VerifyError::PayloadDigestMismatch { .. }),
        "{e}"
    );
    // …and when the signature manifest is rewritten to name it, the signature fails.
    let text = String::from_utf8(p.signature.manifest.bytes.clone()).unwrap();
    let old_digest = trust::sha256_digest(payload.as_bytes());
    let new_digest = trust::sha256_digest(forged.as_bytes());
    p.signature.manifest.bytes = text.replace(&old_digest, &new_digest).into_bytes();
    let e = p.verify_as("titan-13", &cache, false).unwrap_err();
    assert!(matches!(e, VerifyError::SignatureInvalid { .. }), "{e}");

    // A tag swap: titan-13's genuine artifact presented as titan-db.
    let p = publish(dir.path(), "titan-13", 10, lab_key());
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(&e, VerifyError::WrongNode { signed_for, expected } if signed_for == "titan-13" && expected == "titan-db"),
        "{e}"
    );

    // A key nobody pinned.
    let p = publish(dir.path(), "titan-db", 10, &PrivateKey::generate());
    let e = p.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(matches!(e, VerifyError::SignatureInvalid { .. }), "{e}");

    // None of the failures above recorded anything.
    assert_eq!(
        SeenRevisions::load(&cache)
            .unwrap()
            .newest(Subject::Node("titan-db")),
        None
    );

    // An older revision than one already verified: a rollback.
    good().verify_as("titan-db", &cache, false).unwrap();
    let old = publish(dir.path(), "titan-db", 9, lab_key());
    let e = old.verify_as("titan-db", &cache, false).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Rollback {
                revision: 9,
                seen: 10,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--allow-downgrade"));
    // Allowed deliberately, it verifies, and the newest seen stays 10.
    old.verify_as("titan-db", &cache, true).unwrap();
    assert_eq!(
        SeenRevisions::load(&cache)
            .unwrap()
            .newest(Subject::Node("titan-db")),
        Some(10)
    );
    // Other nodes are unaffected.
    publish(dir.path(), "titan-jh", 1, lab_key())
        .verify_as("titan-jh", &cache, false)
        .unwrap();
    let seen = SeenRevisions::load(&cache).unwrap();
    assert_eq!(seen.newest(Subject::Node("titan-jh")), Some(1));
    assert_eq!(seen.newest(Subject::Node("titan-db")), Some(10));
    // A newer revision raises the record.
    publish(dir.path(), "titan-db", 11, lab_key())
        .verify_as("titan-db", &cache, false)
        .unwrap();
    assert_eq!(
        SeenRevisions::load(&cache)
            .unwrap()
            .newest(Subject::Node("titan-db")),
        Some(11)
    );
}

#[test]
fn nothing_verifies_without_a_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "titan-db", 1, lab_key());
    let payloads = [p.signature.payload.bytes.as_slice()];
    let blobs = p.blobs();
    let mut seen = SeenRevisions::load(dir.path()).unwrap();
    let e = verify_node(
        &TrustedKeys::default(),
        &HeldSignature {
            manifest: &p.signature.manifest.bytes,
            payloads: &payloads,
        },
        &HeldArtifact {
            manifest: &p.manifest,
            blobs: &blobs,
        },
        "titan-db",
        &mut seen,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::NoTrustedKeys), "{e}");
}

fn signed_index(revision: u64) -> (trust::IndexArtifact, SignatureArtifact) {
    let mut index = LabIndex::new();
    index.nodes.insert(
        "titan-db".into(),
        IndexEntry {
            class: "amd64-agents".into(),
            digest: trust::sha256_digest(b"titan-db manifest"),
            revision,
        },
    );
    let artifact = index.to_artifact();
    let sig = sign(
        "registry.lab:5000/metis/index",
        &artifact.manifest.digest,
        Some(&Metadata::index(revision, "2026-11-25T23:00:00Z")),
        lab_key(),
    )
    .unwrap();
    (artifact, sig)
}

fn check_index(
    artifact: &trust::IndexArtifact,
    sig: &SignatureArtifact,
    cache: &Path,
    allow_downgrade: bool,
) -> Result<LabIndex, VerifyError> {
    let payloads = [sig.payload.bytes.as_slice()];
    let mut seen = SeenRevisions::load(cache).unwrap();
    verify_index(
        &pinned(),
        &HeldSignature {
            manifest: &sig.manifest.bytes,
            payloads: &payloads,
        },
        &artifact.manifest.bytes,
        &artifact.config.bytes,
        &artifact.layer.bytes,
        &mut seen,
        allow_downgrade,
    )
    .map(|(index, _)| index)
}

#[test]
fn lab_index_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (artifact, sig) = signed_index(5);
    let manifest = OciManifest::parse(&artifact.manifest.bytes).unwrap();
    assert_eq!(
        manifest.artifact_type.as_deref(),
        Some("application/vnd.metis.index.v1+json")
    );
    assert_eq!(artifact.config.bytes, b"{}");
    let index = check_index(&artifact, &sig, dir.path(), false).unwrap();
    assert_eq!(index.entry("titan-db").unwrap().revision, 5);
    assert_eq!(
        SeenRevisions::load(dir.path())
            .unwrap()
            .newest(Subject::Index),
        Some(5)
    );

    // The index document changed after signing.
    let mut tampered = artifact.clone();
    tampered.layer.bytes = String::from_utf8(tampered.layer.bytes)
        .unwrap()
        .replace("amd64", "arm64")
        .into_bytes();
    let e = check_index(&tampered, &sig, dir.path(), false).unwrap_err();
    assert!(matches!(e, VerifyError::BlobDigestMismatch { .. }), "{e}");

    // An older index.
    let (old, old_sig) = signed_index(4);
    let e = check_index(&old, &old_sig, dir.path(), false).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Rollback {
                revision: 4,
                seen: 5,
                ..
            }
        ),
        "{e}"
    );

    // A node signature is not an index signature, and the other way round.
    let node = publish(dir.path(), "titan-db", 6, lab_key());
    let node_sig_for_index = sign(
        "registry.lab:5000/metis/index",
        &artifact.manifest.digest,
        Some(&Metadata::node("titan-db", "amd64-agents", 6, "t")),
        lab_key(),
    )
    .unwrap();
    let e = check_index(&artifact, &node_sig_for_index, dir.path(), false).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::WrongKind {
                expected: "index",
                ..
            }
        ),
        "{e}"
    );
    let mut as_node = node;
    as_node.signature = sign(
        &format!("{REGISTRY}/titan-db"),
        &trust::sha256_digest(&as_node.manifest),
        Some(&Metadata::index(6, "t")),
        lab_key(),
    )
    .unwrap();
    let e = as_node
        .verify_as("titan-db", dir.path(), false)
        .unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::WrongKind {
                expected: "node",
                ..
            }
        ),
        "{e}"
    );

    // A plain cosign signature without Metis claims is not enough to flash.
    let mut plain = publish(dir.path(), "titan-db", 6, lab_key());
    plain.signature = sign(
        &format!("{REGISTRY}/titan-db"),
        &trust::sha256_digest(&plain.manifest),
        None,
        lab_key(),
    )
    .unwrap();
    let e = plain.verify_as("titan-db", dir.path(), false).unwrap_err();
    assert!(matches!(e, VerifyError::WrongKind { .. }), "{e}");
}

// ---- cosign's own bytes -------------------------------------------------------

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

#[test]
fn cosign_produced_signature_verifies() {
    use base64::Engine as _;
    let key = PublicKey::from_pem(&fixture("busybox.pub")).unwrap();
    let payload = fixture("busybox.payload.json");
    let der = base64::engine::general_purpose::STANDARD
        .decode(fixture("busybox.sig").trim())
        .unwrap();
    let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
    assert!(
        key.verifies(payload.as_bytes(), &sig),
        "cosign's signature must verify"
    );
    assert!(!key.verifies(payload.replace("busybox", "busyb0x").as_bytes(), &sig));

    // Our payload serialiser produces cosign's bytes exactly.
    let parsed = SimpleSigning::parse(payload.as_bytes()).unwrap();
    assert_eq!(parsed.to_bytes(), payload.as_bytes());

    // And the whole verification path accepts it once wrapped as cosign stores it.
    let payload_blob = trust::Blob::new(
        trust::SIMPLE_SIGNING_MEDIA_TYPE,
        payload.clone().into_bytes(),
    );
    let mut layer = Descriptor::of(trust::SIMPLE_SIGNING_MEDIA_TYPE, payload.as_bytes());
    layer.annotations = Some(
        [(
            trust::SIGNATURE_ANNOTATION.to_owned(),
            fixture("busybox.sig").trim().to_owned(),
        )]
        .into(),
    );
    let sig_manifest = OciManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
        artifact_type: None,
        config: Descriptor::of(trust::OCI_CONFIG_MEDIA_TYPE, b"{}"),
        layers: vec![layer],
        annotations: None,
    }
    .to_bytes();
    let payloads = [payload_blob.bytes.as_slice()];
    let held = HeldSignature {
        manifest: &sig_manifest,
        payloads: &payloads,
    };
    let keys = TrustedKeys::new(vec![key]);
    // The busybox manifest itself is not in the fixture: its digest is the signed claim.
    let e = trust::verify_signature(&keys, &held, b"not the busybox manifest").unwrap_err();
    assert!(
        matches!(&e, VerifyError::ManifestDigestMismatch { signed, .. } if signed == "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"),
        "{e}"
    );
    let e = trust::verify_signature(&pinned(), &held, b"").unwrap_err();
    assert!(matches!(e, VerifyError::SignatureInvalid { .. }), "{e}");
}

#[test]
fn cosign_generated_encrypted_keys_decrypt() {
    // Generated by `cosign generate-key-pair` with an empty password (sigstore-rs).
    let key = PrivateKey::from_encrypted_pem(&fixture("cosign-generated-empty-password.key"), b"")
        .unwrap();
    let sig = key.sign(b"hello");
    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
    assert!(key.public_key().verifies(b"hello", &sig));
    assert!(matches!(
        PrivateKey::from_encrypted_pem(&fixture("cosign-generated-empty-password.key"), b"x"),
        Err(KeyError::WrongPassword)
    ));
    // sigstore-rs's own, older label `ENCRYPTED COSIGN PRIVATE KEY`, N=32768, password 123.
    PrivateKey::from_encrypted_pem(&fixture("sigstore-rs-password-123.key"), b"123").unwrap();
    assert!(matches!(
        PrivateKey::from_encrypted_pem(&fixture("sigstore-rs-password-123.key"), b"124"),
        Err(KeyError::WrongPassword)
    ));
    // A public key where a private key is expected names the label.
    let e = PrivateKey::from_encrypted_pem(&fixture("busybox.pub"), b"").unwrap_err();
    assert!(matches!(e, KeyError::PemLabel { .. }), "{e}");
}

#[test]
fn generated_key_pair_files_round_trip_and_are_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let public = trust::generate_key_pair(dir.path(), b"demo").unwrap();
    let key_pem = std::fs::read_to_string(dir.path().join("cosign.key")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let key = PrivateKey::from_encrypted_pem(&key_pem, b"demo").unwrap();
    assert_eq!(key.public_key(), public);
    assert_eq!(
        PublicKey::read(&dir.path().join("cosign.pub")).unwrap(),
        public
    );
    assert_eq!(public.fingerprint().len(), 64);
    let e = trust::generate_key_pair(dir.path(), b"demo").unwrap_err();
    assert!(matches!(e, KeyError::Exists(_)), "{e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("cosign.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key must not be readable by others"
        );
    }
}

#[test]
fn pinning_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("trusted-keys");
    assert!(TrustedKeys::load_dir(&store).unwrap().is_empty());
    let pub_file = dir.path().join("metis.pub");
    std::fs::write(&pub_file, lab_key().public_key().to_pem()).unwrap();
    let key = TrustedKeys::pin(&store, &pub_file).unwrap();
    TrustedKeys::pin(&store, &pub_file).unwrap();
    TrustedKeys::pin(&store, &Path::new(FIXTURES).join("busybox.pub")).unwrap();
    let keys = TrustedKeys::load_dir(&store).unwrap();
    assert_eq!(keys.keys().len(), 2);
    assert!(keys.keys().contains(&key));
    std::fs::write(&pub_file, fixture("cosign-generated-empty-password.key")).unwrap();
    assert!(matches!(
        TrustedKeys::pin(&store, &pub_file),
        Err(KeyError::PemLabel { .. })
    ));
}

// ---- an independent verifier ----------------------------------------------------

/// Lays out what the registry would serve, for `tests/cosign_verify.py`.
fn run_python_verifier(p: &Published, key: &PublicKey, claims: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    std::fs::create_dir_all(blobs.join("sha256")).unwrap();
    for blob in [&p.signature.payload, &p.signature.config] {
        std::fs::write(blobs.join("sha256").join(&blob.digest[7..]), &blob.bytes).unwrap();
    }
    std::fs::write(dir.path().join("sig.json"), &p.signature.manifest.bytes).unwrap();
    std::fs::write(dir.path().join("image.json"), &p.manifest).unwrap();
    std::fs::write(dir.path().join("cosign.pub"), key.to_pem()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cosign_verify.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg("--key")
        .arg(dir.path().join("cosign.pub"))
        .arg("--signature-manifest")
        .arg(dir.path().join("sig.json"))
        .arg("--blobs")
        .arg(&blobs)
        .arg("--image-manifest")
        .arg(dir.path().join("image.json"));
    for c in claims {
        cmd.arg("-a").arg(c);
    }
    let out = cmd
        .output()
        .expect("python3 with the `cryptography` package is needed (scripts/install-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs python3-cryptography (Linux CI installs it)"
)]
fn independent_python_verifier_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "titan-db", 12, lab_key());
    let key = lab_key().public_key();
    let (ok, out) = run_python_verifier(&p, &key, &["metis.node=titan-db", "metis.revision=12"]);
    assert!(
        ok,
        "the independent verifier refused Metis's signature: {out}"
    );
    assert!(out.contains("Verified OK"), "{out}");

    // It refuses what Metis refuses.
    let (ok, out) = run_python_verifier(&p, &key, &["metis.node=titan-13"]);
    assert!(!ok, "wrong node accepted: {out}");
    let mut tampered = publish(dir.path(), "titan-db", 12, lab_key());
    tampered.manifest[10] ^= 1;
    let (ok, out) = run_python_verifier(&tampered, &key, &[]);
    assert!(
        !ok && out.contains("payload signs"),
        "tampered manifest accepted: {out}"
    );
    let other = PrivateKey::generate().public_key();
    let (ok, out) = run_python_verifier(&p, &other, &[]);
    assert!(
        !ok && out.contains("signature does not verify"),
        "wrong key accepted: {out}"
    );
}

#[test]
fn demo_keys_are_a_matching_cosign_pair_with_password_demo() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/demo-keys");
    let pem = std::fs::read_to_string(demo.join("cosign.key")).unwrap();
    let key = PrivateKey::from_encrypted_pem(&pem, b"demo").unwrap();
    assert_eq!(
        PublicKey::read(&demo.join("cosign.pub")).unwrap(),
        key.public_key()
    );
}

/// Runs `tests/cosign_verify.py key` on an encrypted private key.
fn python_key_check(key: &Path, password: &str, public: Option<&Path>) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cosign_verify.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg("key")
        .arg("--key")
        .arg(key)
        .env("COSIGN_PASSWORD", password);
    if let Some(p) = public {
        cmd.arg("--pub").arg(p);
    }
    let out = cmd
        .output()
        .expect("python3 with the `cryptography` package is needed (scripts/install-deps)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The Python decryption is checked against a key cosign wrote, then decrypts the key
/// Metis wrote: Metis's envelope is cosign's.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs python3-cryptography (Linux CI installs it)"
)]
fn independent_decryption_of_cosign_and_metis_keys() {
    let cosign_key = Path::new(FIXTURES).join("cosign-generated-empty-password.key");
    let rust = PrivateKey::from_encrypted_pem(&fixture("cosign-generated-empty-password.key"), b"")
        .unwrap()
        .public_key()
        .fingerprint();
    let (ok, out) = python_key_check(&cosign_key, "", None);
    assert!(ok && out.trim() == format!("Key OK {rust}"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let public = trust::generate_key_pair(dir.path(), b"s3cret").unwrap();
    let (ok, out) = python_key_check(
        &dir.path().join("cosign.key"),
        "s3cret",
        Some(&dir.path().join("cosign.pub")),
    );
    assert!(
        ok && out.trim() == format!("Key OK {}", public.fingerprint()),
        "{out}"
    );
    let (ok, out) = python_key_check(&dir.path().join("cosign.key"), "s3cre7", None);
    assert!(!ok && out.contains("authentication failed"), "{out}");
}
