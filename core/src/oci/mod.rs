//! Moving node artifacts over OCI: publishing to a registry, pulling into the
//! offline cache, streaming and in bounded memory.
//!
//! A registry is either a real one spoken to over HTTPS ([`Remote`], through
//! `oci-client`) or an OCI image-layout directory (`oci:DIR`, [`Layout`]) —
//! the same [`Registry`] either way, so an air-gapped lab can carry its
//! artifacts on a USB stick. The cache is an image layout too. The layout of
//! repositories and the manifest format are described in `docs/registry.md`.
//!
//! The work is async (tokio); [`block_on`] runs it from synchronous code on
//! one shared runtime.

mod auth;
mod error;
mod layout;
mod manifest;
#[cfg(feature = "build")]
mod publish;
mod pull;
mod registry;
mod remote;

pub use auth::{Auth, CredentialSource, Credentials, ENV_PASSWORD, ENV_USERNAME};
pub use error::OciError;
pub use layout::{hash_file, ref_name, Layout, LayoutRef, FETCHED, REF_NAME};
pub use manifest::{
    node_manifest, sha256_digest, sha256_hex, Descriptor, ImageManifest, ManifestError, NodeLayers,
    NodeProvenance,
};
#[cfg(feature = "build")]
pub use publish::{publish_artifact, publish_node_artifact, LayerFile, Published};
pub use pull::{
    age_of, cache_dir, cached, pull_into, pull_verified, PullOptions, PullVerifiedError, Pulled,
    SignedHead, ENV_CACHE,
};
#[cfg(all(feature = "build", feature = "signing"))]
pub(crate) use registry::retry;
pub use registry::{BlobStream, Progress, ProgressEvent, Registry, RegistryOptions};
pub use remote::{Counters, Remote};

/// The most Metis reads into memory of content that is small by nature:
/// manifests, signature manifests, simple-signing payloads and config blobs
/// (a Metis node manifest is ~1 KiB, its config a few KiB; a registry caps
/// manifests at 4 MiB too). Anything announced larger is refused before it is
/// read, and reading stops as soon as more arrives, so a hostile registry
/// cannot make a pull hold more than this in memory for one of them.
pub const MAX_SMALL_BYTES: u64 = 4 << 20;

/// OCI image manifest media type.
pub const MEDIA_TYPE_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Artifact type of a node artifact.
pub const ARTIFACT_TYPE_NODE: &str = "application/vnd.metis.node-image.v1";
/// Media type of the node config blob (JSON, never empty).
pub const MEDIA_TYPE_NODE_CONFIG: &str = "application/vnd.metis.node.config.v1+json";
/// Media type of a class golden base (zstd seekable format).
pub const MEDIA_TYPE_BASE: &str = "application/vnd.metis.base.v1.zstd-seekable";
/// Media type of a node patch.
pub const MEDIA_TYPE_PATCH: &str = "application/vnd.metis.patch.v1+zstd";
/// Media type of a node's age-encrypted secrets.
pub const MEDIA_TYPE_SECRETS: &str = "application/vnd.metis.secrets.v1.age";

/// `<prefix>/nodes/<node>`: where a node's artifacts live.
pub fn node_repository(prefix: &str, node: &str) -> String {
    join(prefix, &format!("nodes/{node}"))
}

/// `<prefix>/golden/<class>`: where a class's golden base is shared from.
pub fn golden_repository(prefix: &str, class: &str) -> String {
    join(prefix, &format!("golden/{class}"))
}

/// `<prefix>/index`: the lab index (tag `latest`).
pub fn index_repository(prefix: &str) -> String {
    join(prefix, "index")
}

fn join(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// How long to wait for a connection, and for each read, on every HTTP request.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub(crate) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An HTTP client set up as all of Metis's are: its user agent and timeouts
/// (add CA certificates before building it).
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("metis/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
}

/// Runs `future` to completion on Metis's shared tokio runtime (created on
/// first use). Registry clients keep connection pools tied to this runtime,
/// so every call into them must go through it.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_name("metis-oci")
                .enable_all()
                .build()
                .expect("starting the tokio runtime")
        })
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        assert_eq!(node_repository("metis", "titan-db"), "metis/nodes/titan-db");
        assert_eq!(
            golden_repository("/lab/metis/", "rpi5"),
            "lab/metis/golden/rpi5"
        );
        assert_eq!(index_repository(""), "index");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let opts = RegistryOptions {
            insecure_http: true,
            credentials: Some(Credentials::anonymous()),
            ..Default::default()
        };
        let err = Registry::open("harbor.lab.home.arpa", &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only allowed to a loopback registry"), "{err}");
        assert!(Registry::open("127.0.0.1:5000", &opts).is_ok());
        let err = Registry::open("oci:", &opts).unwrap_err().to_string();
        assert!(err.contains("expected oci:DIR"), "{err}");
    }

    #[test]
    #[cfg(feature = "build")]
    fn layout_round_trip_through_registry() {
        let dir = tempfile::tempdir().unwrap();
        let stick = dir.path().join("stick");
        let registry = Registry::open(
            &format!("oci:{}", stick.display()),
            &RegistryOptions::default(),
        )
        .unwrap();
        let layer = dir.path().join("base");
        std::fs::write(&layer, vec![7u8; 3 << 20]).unwrap();
        let layers = [LayerFile {
            media_type: MEDIA_TYPE_BASE.into(),
            path: layer.clone(),
            shared_in: Some("metis/golden/c".into()),
            digest: None,
        }];
        let published = block_on(publish_node_artifact(
            &registry,
            "metis/nodes/a",
            &["1".into(), "latest".into()],
            br#"{"node":"a"}"#,
            &layers,
            &Default::default(),
            &Progress::none(),
        ))
        .unwrap();
        let cache = Layout::open_or_create(&dir.path().join("cache")).unwrap();
        let pulled = block_on(pull_into(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &PullOptions::default(),
        ))
        .unwrap();
        assert_eq!(pulled.digest, published.digest);
        assert_eq!(pulled.downloaded_bytes, (3 << 20) + 12);
        let base = cache.blob_path(&pulled.manifest.layers[0].digest).unwrap();
        assert_eq!(std::fs::read(base).unwrap(), std::fs::read(&layer).unwrap());
        assert!(cache.verify().unwrap().is_empty());
        let r = cached(&cache, "metis/nodes/a", "latest").unwrap().unwrap();
        assert!(age_of(r.fetched.as_deref().unwrap()).is_some());
        // A second pull downloads nothing.
        let again = block_on(pull_into(
            &registry,
            &cache,
            "metis/nodes/a",
            "1",
            &PullOptions::default(),
        ))
        .unwrap();
        assert_eq!(again.downloaded_bytes, 0);
    }

    /// A small node artifact published into an `oci:` layout; its digest and
    /// the digest of its large layer.
    #[cfg(feature = "build")]
    fn published(dir: &std::path::Path, registry: &Registry) -> (String, String) {
        let layer = dir.join("base");
        std::fs::write(&layer, vec![9u8; 1 << 20]).unwrap();
        let published = block_on(publish_node_artifact(
            registry,
            "metis/nodes/a",
            &["latest".into()],
            br#"{"node":"a"}"#,
            &[LayerFile {
                media_type: MEDIA_TYPE_BASE.into(),
                path: layer.clone(),
                shared_in: None,
                digest: None,
            }],
            &Default::default(),
            &Progress::none(),
        ))
        .unwrap();
        (published.digest, hash_file(&layer).unwrap().to_string())
    }

    #[cfg(all(feature = "signing", feature = "build"))]
    #[test]
    fn pull_verified_from_a_layout_verifies_before_blobs_and_caches_the_signature() {
        use crate::trust;
        let dir = tempfile::tempdir().unwrap();
        let stick = dir.path().join("stick");
        let registry = Registry::open(
            &format!("oci:{}", stick.display()),
            &RegistryOptions::default(),
        )
        .unwrap();
        let (digest, layer) = published(dir.path(), &registry);
        let cache = Layout::open_or_create(&dir.path().join("cache")).unwrap();
        let unsigned = |head: &SignedHead| match head.signature_manifest {
            Some(_) => Ok(()),
            None => Err("unsigned"),
        };

        // Unsigned: refused by the verifier, nothing cached.
        let err = block_on(pull_verified(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &PullOptions::default(),
            unsigned,
        ))
        .unwrap_err();
        assert!(
            matches!(err, PullVerifiedError::Refused("unsigned")),
            "{err:?}"
        );
        assert!(cache.refs().unwrap().is_empty());
        assert!(!cache.has_blob(&layer, None));

        // Signed: the verifier sees the payload, then everything is cached.
        let key = trust::PrivateKey::generate();
        let meta = trust::Metadata::node("a", "c", 1, "2026-12-03T00:00:00Z");
        let sig = trust::sign("stick/metis/nodes/a", &digest, Some(&meta), &key).unwrap();
        for blob in [&sig.payload, &sig.config] {
            block_on(registry.push_blob_bytes("metis/nodes/a", &blob.bytes)).unwrap();
        }
        block_on(registry.push_manifest_raw(
            "metis/nodes/a",
            &sig.tag,
            &sig.manifest.bytes,
            MEDIA_TYPE_IMAGE_MANIFEST,
        ))
        .unwrap();
        let keys = trust::TrustedKeys::new(vec![key.public_key()]);
        let pulled = block_on(pull_verified(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &PullOptions::default(),
            |head| {
                assert!(!cache.has_blob(&layer, None), "a blob before verifying");
                let payloads: Vec<&[u8]> = head.payloads.iter().map(Vec::as_slice).collect();
                trust::verify_signature(
                    &keys,
                    &trust::HeldSignature {
                        manifest: head.signature_manifest.as_deref().unwrap(),
                        payloads: &payloads,
                    },
                    &head.manifest,
                )
                .map(drop)
            },
        ))
        .unwrap();
        assert_eq!(pulled.digest, digest);
        assert!(cache.has_blob(&layer, Some(1 << 20)));
        let sig_ref = cached(&cache, "metis/nodes/a", &sig.tag).unwrap().unwrap();
        assert_eq!(sig_ref.manifest.digest, sig.manifest.digest);
        assert!(cache.has_blob(&sig.payload.digest, None));
        assert!(cache.has_blob(&sig.config.digest, None));
        assert!(cache.verify().unwrap().is_empty());
    }

    #[cfg(feature = "build")]
    #[test]
    fn signature_payloads_over_the_cap_together_are_refused_before_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let stick = dir.path().join("stick");
        let registry = Registry::open(
            &format!("oci:{}", stick.display()),
            &RegistryOptions::default(),
        )
        .unwrap();
        let (digest, _) = published(dir.path(), &registry);
        // Two 3 MiB "payloads": each within the cap, together over it.
        let Registry::Layout(stick) = &registry else {
            unreachable!()
        };
        let payloads: Vec<Descriptor> = [1u8, 2]
            .iter()
            .map(|&b| {
                let bytes = vec![b; 3 << 20];
                stick.put_blob_bytes(&bytes).unwrap();
                Descriptor::of_bytes(crate::trust::SIMPLE_SIGNING_MEDIA_TYPE, &bytes)
            })
            .collect();
        let (sig, _) = ImageManifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
            artifact_type: None,
            config: Descriptor::of_bytes("application/vnd.oci.image.config.v1+json", b"{}"),
            layers: payloads,
            annotations: Default::default(),
        }
        .to_bytes();
        let tag = crate::trust::signature_tag(&digest).unwrap();
        block_on(registry.push_manifest_raw(
            "metis/nodes/a",
            &tag,
            &sig,
            MEDIA_TYPE_IMAGE_MANIFEST,
        ))
        .unwrap();
        let cache = Layout::open_or_create(&dir.path().join("cache")).unwrap();
        let err = block_on(pull_verified(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &PullOptions::default(),
            |_| -> Result<(), ()> { panic!("verifier called") },
        ))
        .unwrap_err();
        match err {
            PullVerifiedError::Oci(OciError::TooLarge { size, cap, .. }) => {
                assert_eq!((size, cap), (6 << 20, MAX_SMALL_BYTES));
            }
            other => panic!("{other:?}"),
        }
    }
}
