//! Trust before bytes: `oci::pull_verified` shows the verifier the manifest
//! and signature, fetched within `oci::MAX_SMALL_BYTES`, before a single blob
//! moves; manifests are capped and blobs bounded by their descriptors; TLS
//! and connection failures say what they are. Against the real registry
//! (`docker-registry`, TLS + htpasswd on 127.0.0.1), and, for what a real
//! registry never does (lie about a length, send without end), against a
//! small hostile HTTP server on loopback written here.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metis_core::oci::{
    self, CredentialSource, Credentials, Descriptor, ImageManifest, Layout, OciError, Progress,
    PullOptions, PullVerifiedError, Registry, RegistryOptions, SignedHead, MAX_SMALL_BYTES,
    MEDIA_TYPE_BASE, MEDIA_TYPE_IMAGE_MANIFEST, MEDIA_TYPE_NODE_CONFIG, MEDIA_TYPE_PATCH,
};
use metis_core::trust;
use metis_tests::registry::{Auth, ServerCert, TestRegistry, PASSWORD, USER};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn options(reg: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        ca_file: Some(reg.ca_file()),
        credentials: Some(Credentials::basic(
            CredentialSource::Environment,
            USER.into(),
            PASSWORD.into(),
        )),
        ..Default::default()
    }
}

fn counters(registry: &Registry) -> Arc<oci::Counters> {
    match registry {
        Registry::Remote(r) => r.counters.clone(),
        Registry::Layout(_) => panic!("a remote registry was expected"),
    }
}

/// The verifier's own refusal, as the flasher's engine would have one.
#[derive(Debug, PartialEq, Eq)]
struct Unsigned;

fn refuse_unsigned(head: &SignedHead) -> Result<(), Unsigned> {
    match head.signature_manifest {
        Some(_) => Ok(()),
        None => Err(Unsigned),
    }
}

fn pull_opts() -> PullOptions {
    PullOptions {
        attempts: 1,
        ..Default::default()
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Whether the cache has anything under `incoming/` (a partial download).
fn has_partial(cache: &Layout) -> bool {
    std::fs::read_dir(cache.dir().join("incoming"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Starts the peak-RSS count afresh (Linux: `5` to `/proc/self/clear_refs`);
/// `false` where the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The registry access log's request lines (`GET /v2/… HTTP/1.1`), in order.
fn requests(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .lines()
        .filter_map(|l| Some(l.split_once('"')?.1.split_once('"')?.0.to_owned()))
        .filter(|r| r.starts_with("GET ") || r.starts_with("HEAD "))
        .collect()
}

/// Bytes the registry says it sent for request lines containing `needle`
/// (the combined log's size field after the status).
fn bytes_sent(reg: &TestRegistry, needle: &str) -> u64 {
    reg.log()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let after = l.split_once("\" ")?.1;
            after.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Pushes a manifest naming `config` and `layers` (already in the registry)
/// at `tag`; returns its digest.
fn push_manifest(
    registry: &Registry,
    repository: &str,
    tag: &str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
) -> String {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
        artifact_type: Some(oci::ARTIFACT_TYPE_NODE.into()),
        config,
        layers,
        annotations,
    };
    let (bytes, digest) = manifest.to_bytes();
    oci::block_on(registry.push_manifest_raw(repository, tag, &bytes, MEDIA_TYPE_IMAGE_MANIFEST))
        .unwrap_or_else(|e| panic!("pushing the manifest {repository}:{tag}: {e}"));
    digest
}

fn push_config(registry: &Registry, repository: &str, config: &[u8]) -> Descriptor {
    oci::block_on(registry.push_blob_bytes(repository, config)).unwrap();
    Descriptor::of_bytes(MEDIA_TYPE_NODE_CONFIG, config)
}

#[test]
fn unsigned_manifest_naming_1_gib_is_refused_before_a_byte_of_the_layer_moves() {
    let reg = TestRegistry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repository = "metis/nodes/big";
    let pusher = Registry::open(&reg.host(), &options(&reg)).unwrap();

    // A real 1 GiB layer in the registry: a sparse file of zeros, pushed with
    // Metis's own streaming upload.
    let layer = work.path().join("layer");
    std::fs::File::create(&layer).unwrap().set_len(GIB).unwrap();
    let layer_digest = oci::hash_file(&layer).unwrap();
    oci::block_on(pusher.push_blob_file(repository, &layer_digest, GIB, &layer, &Progress::none()))
        .unwrap();
    assert_eq!(reg.stored_copies(&layer_digest.to_string()), 1);
    let config = push_config(&pusher, repository, br#"{"node":"big"}"#);
    push_manifest(
        &pusher,
        repository,
        "latest",
        config,
        vec![Descriptor {
            media_type: MEDIA_TYPE_BASE.into(),
            digest: layer_digest.to_string(),
            size: GIB,
            annotations: BTreeMap::new(),
        }],
        BTreeMap::new(),
    );
    drop(pusher);

    let registry = Registry::open(&reg.host(), &options(&reg)).unwrap();
    let cache = Layout::open_or_create(&work.path().join("cache")).unwrap();
    let before_cache = files_under(cache.dir());
    let log_before = requests(&reg).len();
    let reset = reset_peak_rss();
    let rss_before = peak_rss_kib();
    let mut seen = None;
    let result = oci::block_on(oci::pull_verified(
        &registry,
        &cache,
        repository,
        "latest",
        &pull_opts(),
        |head| {
            seen = Some(head.clone());
            refuse_unsigned(head)
        },
    ));
    let rss_after = peak_rss_kib();
    match result {
        Err(PullVerifiedError::Refused(Unsigned)) => {}
        other => panic!("expected the verifier's refusal, got {other:?}"),
    }
    let head = seen.expect("the verifier was called");
    assert_eq!(head.signature_manifest, None);
    assert!(head.payloads.is_empty());
    assert_eq!(head.digest, oci::sha256_digest(&head.manifest));

    // What moved: two manifest requests (the tag, the missing signature),
    // no blob request, a few KiB of body.
    let c = counters(&registry);
    let downloaded = c.downloaded_bytes.load(Ordering::Relaxed);
    assert_eq!(c.blob_requests.load(Ordering::Relaxed), 0);
    assert_eq!(c.manifest_requests.load(Ordering::Relaxed), 2);
    assert!(downloaded <= 4 * KIB, "{downloaded} bytes downloaded");
    let new_requests = requests(&reg)[log_before..].to_vec();
    assert!(
        !new_requests.iter().any(|r| r.contains("/blobs/")),
        "no blob may be requested before the verifier agrees: {new_requests:?}"
    );
    let sent = bytes_sent(&reg, &format!("{repository}/blobs/{layer_digest}"));
    assert_eq!(sent, 0, "the registry sent {sent} bytes of the layer");

    // Nothing in the cache: no blob, no partial download, no tag.
    assert_eq!(files_under(cache.dir()), before_cache);
    assert!(!has_partial(&cache));
    assert!(cache.refs().unwrap().is_empty());
    let grew = rss_after.saturating_sub(rss_before);
    eprintln!(
        "1 GiB unsigned layer: {downloaded} bytes downloaded, peak RSS {rss_after} KiB \
         ({grew} KiB above the {rss_before} KiB before the pull{})",
        if reset {
            ", peak reset"
        } else {
            ", peak could not be reset"
        }
    );
    if reset {
        assert!(grew < 64 * 1024, "peak RSS grew by {grew} KiB");
    }
}

#[test]
fn signed_pull_verifies_before_any_blob_request_then_caches_the_signature() {
    let reg = TestRegistry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repository = "metis/nodes/titan-db";
    let registry = Registry::open(&reg.host(), &options(&reg)).unwrap();
    let base = work.path().join("base");
    std::fs::write(&base, vec![0x5a; (3 * MIB) as usize]).unwrap();
    let base_digest = oci::hash_file(&base).unwrap();
    oci::block_on(registry.push_blob_file(
        repository,
        &base_digest,
        3 * MIB,
        &base,
        &Progress::none(),
    ))
    .unwrap();
    let patch = b"patch bytes".to_vec();
    oci::block_on(registry.push_blob_bytes(repository, &patch)).unwrap();
    let config = push_config(&registry, repository, br#"{"node":"titan-db"}"#);
    let digest = push_manifest(
        &registry,
        repository,
        "7",
        config.clone(),
        vec![
            Descriptor {
                media_type: MEDIA_TYPE_BASE.into(),
                digest: base_digest.to_string(),
                size: 3 * MIB,
                annotations: BTreeMap::new(),
            },
            Descriptor::of_bytes(MEDIA_TYPE_PATCH, &patch),
        ],
        BTreeMap::from([("dev.metis.node".to_owned(), "titan-db".to_owned())]),
    );
    let key = trust::PrivateKey::generate();
    let meta = trust::Metadata::node("titan-db", "rpi5", 7, "2026-12-03T00:00:00Z");
    let sig = trust::sign(
        &format!("{}/{repository}", reg.host()),
        &digest,
        Some(&meta),
        &key,
    )
    .unwrap();
    oci::block_on(registry.push_blob_bytes(repository, &sig.payload.bytes)).unwrap();
    oci::block_on(registry.push_blob_bytes(repository, &sig.config.bytes)).unwrap();
    oci::block_on(registry.push_manifest_raw(
        repository,
        &sig.tag,
        &sig.manifest.bytes,
        trust::OCI_MANIFEST_MEDIA_TYPE,
    ))
    .unwrap();
    let keys = trust::TrustedKeys::new(vec![key.public_key()]);

    let registry = Registry::open(&reg.host(), &options(&reg)).unwrap();
    let c = counters(&registry);
    let cache = Layout::open_or_create(&work.path().join("cache")).unwrap();
    let log_before = requests(&reg).len();
    let at_verify = Mutex::new(None);
    let pulled = oci::block_on(oci::pull_verified(
        &registry,
        &cache,
        repository,
        "7",
        &pull_opts(),
        |head| {
            *at_verify.lock().unwrap() = Some((
                requests(&reg).len(),
                c.blob_requests.load(Ordering::Relaxed),
                files_under(cache.dir()),
            ));
            let payloads: Vec<&[u8]> = head.payloads.iter().map(Vec::as_slice).collect();
            let manifest = head.signature_manifest.as_deref().ok_or("unsigned")?;
            trust::verify_signature(
                &keys,
                &trust::HeldSignature {
                    manifest,
                    payloads: &payloads,
                },
                &head.manifest,
            )
            .map(drop)
            .map_err(|_| "bad signature")
        },
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(pulled.digest, digest);
    assert_eq!(pulled.downloaded_bytes, 3 * MIB + patch.len() as u64 + 19);

    // Order: when the verifier ran, only the signature payload had been
    // fetched as a blob, and nothing was in the cache yet.
    let (log_at_verify, blobs_at_verify, cache_at_verify) =
        at_verify.into_inner().unwrap().expect("verifier called");
    assert_eq!(blobs_at_verify, 1, "only the signature payload");
    let all = requests(&reg);
    let before: Vec<_> = all[log_before..log_at_verify].to_vec();
    let after: Vec<_> = all[log_at_verify..].to_vec();
    for d in [&base_digest.to_string(), &config.digest] {
        assert!(
            !before.iter().any(|r| r.contains(d.as_str())),
            "{d} requested before the verifier ran: {before:?}"
        );
        assert!(
            after.iter().any(|r| r.contains(d.as_str())),
            "{d} not requested after it: {after:?}"
        );
    }
    assert!(before
        .iter()
        .any(|r| r.contains(&format!("blobs/{}", sig.payload.digest))));
    assert!(
        cache_at_verify
            .iter()
            .all(|f| f == "oci-layout" || f == "index.json"),
        "{cache_at_verify:?}"
    );

    // The cache holds the artifact and its signature, as the offline flash
    // reads it: the `.sig` tag, its manifest, payloads and config.
    assert!(cache.verify().unwrap().is_empty());
    let sig_ref = oci::cached(&cache, repository, &sig.tag)
        .unwrap()
        .expect("signature cached");
    assert_eq!(sig_ref.manifest.digest, sig.manifest.digest);
    let sig_manifest = cache.read_blob(&sig_ref.manifest.digest).unwrap();
    let payloads: Vec<Vec<u8>> = trust::signature_payloads(&sig_manifest)
        .unwrap()
        .iter()
        .map(|d| cache.read_blob(&d.digest).unwrap())
        .collect();
    let payloads: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let node_ref = oci::cached(&cache, repository, "7").unwrap().unwrap();
    trust::verify_signature(
        &keys,
        &trust::HeldSignature {
            manifest: &sig_manifest,
            payloads: &payloads,
        },
        &cache.read_blob(&node_ref.manifest.digest).unwrap(),
    )
    .expect("the cached signature verifies offline");
    assert!(cache.has_blob(&sig.config.digest, None));

    // Again: the blobs are cached, nothing large moves.
    let again = oci::block_on(oci::pull_verified(
        &registry,
        &cache,
        repository,
        "7",
        &pull_opts(),
        |_| Ok::<(), Unsigned>(()),
    ))
    .unwrap();
    assert_eq!(again.downloaded_bytes, 0);
}

#[test]
fn blob_larger_than_its_descriptor_is_refused_by_its_announced_length() {
    let reg = TestRegistry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repository = "metis/nodes/liar";
    let registry = Registry::open(&reg.host(), &options(&reg)).unwrap();
    let layer = work.path().join("layer");
    std::fs::write(&layer, vec![1u8; (3 * MIB) as usize]).unwrap();
    let digest = oci::hash_file(&layer).unwrap();
    oci::block_on(registry.push_blob_file(repository, &digest, 3 * MIB, &layer, &Progress::none()))
        .unwrap();
    let config = push_config(&registry, repository, br#"{"node":"liar"}"#);
    // The descriptor says 1 MiB; the registry holds 3 MiB under that digest.
    push_manifest(
        &registry,
        repository,
        "latest",
        config,
        vec![Descriptor {
            media_type: MEDIA_TYPE_BASE.into(),
            digest: digest.to_string(),
            size: MIB,
            annotations: BTreeMap::new(),
        }],
        BTreeMap::new(),
    );
    let registry = Registry::open(&reg.host(), &options(&reg)).unwrap();
    let cache = Layout::open_or_create(&work.path().join("cache")).unwrap();
    let err = oci::block_on(oci::pull_into(
        &registry,
        &cache,
        repository,
        "latest",
        &pull_opts(),
    ))
    .unwrap_err();
    match &err {
        OciError::SizeMismatch {
            expected,
            actual,
            at_least: false,
            ..
        } => {
            assert_eq!((*expected, *actual), (MIB, 3 * MIB));
        }
        other => panic!("expected a size mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("is 3145728 bytes but the manifest says 1048576"),
        "{text}"
    );
    let downloaded = counters(&registry).downloaded_bytes.load(Ordering::Relaxed);
    // The manifest and the 15-byte config; not a byte of the 3 MiB.
    assert!(downloaded < 4 * KIB, "{downloaded} bytes downloaded");
    assert!(!cache.has_blob(&digest.to_string(), None));
    assert!(!has_partial(&cache), "{:?}", files_under(cache.dir()));
    assert!(oci::cached(&cache, repository, "latest").unwrap().is_none());
}

#[test]
fn tls_certificate_problems_are_named_in_plain_words() {
    let pull = |host: &str, options: &RegistryOptions| {
        let registry = Registry::open(host, options).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cache = Layout::open_or_create(cache.path()).unwrap();
        oci::block_on(oci::pull_into(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &pull_opts(),
        ))
        .unwrap_err()
    };
    let expect_tls = |err: OciError, words: &str| {
        let text = err.to_string();
        assert!(matches!(err, OciError::Tls { .. }), "{err:?}");
        assert!(!err.is_unreachable() && !err.is_transient(), "{text}");
        assert!(text.contains(words), "{text}");
        assert!(!text.contains("--offline"), "{text}");
        eprintln!("{text}");
    };

    // The lab CA certificate served as the server certificate.
    let ca_served = TestRegistry::start_serving(Auth::Htpasswd, ServerCert::CaItself).unwrap();
    expect_tls(
        pull(&ca_served.host(), &options(&ca_served)),
        "the registry's certificate is a CA certificate used as a server certificate: issue \
         a server certificate from your CA",
    );

    let expired = TestRegistry::start_serving(Auth::Htpasswd, ServerCert::Expired).unwrap();
    expect_tls(
        pull(&expired.host(), &options(&expired)),
        "the registry's certificate has expired",
    );

    let reg = TestRegistry::start().unwrap();
    // Without the lab CA.
    let mut no_ca = options(&reg);
    no_ca.ca_file = None;
    expect_tls(
        pull(&reg.host(), &no_ca),
        "is not signed by a CA this machine trusts: pass the lab CA",
    );
    // A name the certificate does not carry (it names IP 127.0.0.1).
    let by_name = reg.host().replace("127.0.0.1", "localhost");
    expect_tls(
        pull(&by_name, &options(&reg)),
        "the registry's certificate is not issued for localhost:",
    );
}

#[test]
fn connection_refused_and_unknown_host_are_unreachable_without_flasher_advice() {
    let port = metis_tests::registry::free_port().unwrap();
    for host in [
        format!("127.0.0.1:{port}"),
        "metis-no-such-registry.invalid:5000".to_owned(),
    ] {
        let registry = Registry::open(
            &host,
            &RegistryOptions {
                credentials: Some(Credentials::anonymous()),
                ..Default::default()
            },
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cache = Layout::open_or_create(cache.path()).unwrap();
        let err = oci::block_on(oci::pull_verified(
            &registry,
            &cache,
            "metis/nodes/a",
            "latest",
            &pull_opts(),
            refuse_unsigned,
        ))
        .unwrap_err();
        let PullVerifiedError::Oci(err) = err else {
            panic!("{err:?}")
        };
        assert!(err.is_unreachable(), "{host}: {err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("cannot reach {host}")), "{text}");
        assert!(!text.contains("--offline"), "{text}");
    }
}

// --- A hostile registry: what a real one never does. ---

/// How the hostile server answers one path.
#[derive(Clone)]
enum Reply {
    /// `200` with these bytes and a `Content-Length` of `announced`.
    Announced { bytes: Vec<u8>, announced: u64 },
    /// `200` with these bytes and no `Content-Length` (the body ends when
    /// the connection closes).
    Unannounced(Vec<u8>),
    /// `200`, no `Content-Length`, bytes without end until the client hangs up.
    Endless,
}

/// A plain-HTTP "registry" on 127.0.0.1 answering `/v2/` and the given paths
/// (`404` otherwise), one connection per request. Counts the body bytes it
/// managed to write.
struct Hostile {
    port: u16,
    written: Arc<AtomicU64>,
}

impl Hostile {
    fn start(routes: Vec<(String, Reply)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let written = Arc::new(AtomicU64::new(0));
        let count = written.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let routes = routes.clone();
                let count = count.clone();
                std::thread::spawn(move || serve(stream, &routes, &count));
            }
        });
        Hostile { port, written }
    }

    fn registry(&self) -> Registry {
        Registry::open(
            &format!("127.0.0.1:{}", self.port),
            &RegistryOptions {
                insecure_http: true,
                credentials: Some(Credentials::anonymous()),
                ..Default::default()
            },
        )
        .unwrap()
    }
}

fn serve(stream: std::net::TcpStream, routes: &[(String, Reply)], written: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut out = stream;
    let head = |len: Option<u64>| {
        let mut h = "HTTP/1.1 200 OK\r\nConnection: close\r\n\
                     Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
            .to_owned();
        if let Some(len) = len {
            h.push_str(&format!("Content-Length: {len}\r\n"));
        }
        h.push_str("\r\n");
        h
    };
    if path == "/v2/" {
        let _ = out.write_all(head(Some(2)).as_bytes());
        let _ = out.write_all(b"{}");
        return;
    }
    let Some((_, reply)) = routes.iter().find(|(p, _)| *p == path) else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let body = |out: &mut std::net::TcpStream, bytes: &[u8]| {
        for chunk in bytes.chunks(64 << 10) {
            if out.write_all(chunk).is_err() {
                return;
            }
            written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    };
    match reply {
        Reply::Announced { bytes, announced } => {
            let _ = out.write_all(head(Some(*announced)).as_bytes());
            body(&mut out, bytes);
        }
        Reply::Unannounced(bytes) => {
            let _ = out.write_all(head(None).as_bytes());
            body(&mut out, bytes);
        }
        Reply::Endless => {
            let _ = out.write_all(head(None).as_bytes());
            let chunk = vec![b' '; 64 << 10];
            while out.write_all(&chunk).is_ok() {
                written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn manifest_over_the_cap_is_refused_without_reading_it() {
    let big = vec![b' '; (MAX_SMALL_BYTES + MIB) as usize];
    let hostile = Hostile::start(vec![
        (
            "/v2/metis/nodes/announced/manifests/latest".into(),
            Reply::Announced {
                announced: big.len() as u64,
                bytes: big.clone(),
            },
        ),
        (
            "/v2/metis/nodes/unannounced/manifests/latest".into(),
            Reply::Unannounced(big),
        ),
        (
            "/v2/metis/nodes/endless/manifests/latest".into(),
            Reply::Endless,
        ),
    ]);
    for (node, announced) in [
        ("announced", true),
        ("unannounced", false),
        ("endless", false),
    ] {
        let registry = hostile.registry();
        let work = tempfile::tempdir().unwrap();
        let cache = Layout::open_or_create(work.path()).unwrap();
        let mut called = false;
        let err = oci::block_on(oci::pull_verified(
            &registry,
            &cache,
            &format!("metis/nodes/{node}"),
            "latest",
            &pull_opts(),
            |_| {
                called = true;
                Ok::<(), Unsigned>(())
            },
        ))
        .unwrap_err();
        assert!(!called, "{node}: the verifier saw an oversized manifest");
        let PullVerifiedError::Oci(err) = err else {
            panic!("{err:?}")
        };
        let downloaded = counters(&registry).downloaded_bytes.load(Ordering::Relaxed);
        match &err {
            OciError::TooLarge {
                size,
                at_least,
                cap,
                ..
            } => {
                assert_eq!(*cap, MAX_SMALL_BYTES);
                assert_eq!(*at_least, !announced, "{node}");
                if announced {
                    assert_eq!(*size, MAX_SMALL_BYTES + MIB);
                    assert_eq!(downloaded, 0, "{node}: read before refusing");
                } else {
                    assert!(*size > MAX_SMALL_BYTES);
                }
            }
            other => panic!("{node}: expected TooLarge, got {other:?}"),
        }
        // At most the cap and one read past it.
        assert!(
            downloaded <= MAX_SMALL_BYTES + 512 * KIB,
            "{node}: {downloaded} bytes read"
        );
        let text = err.to_string();
        assert!(
            text.contains("manifest latest in 127.0.0.1:")
                && text.contains(&format!("more than the {MAX_SMALL_BYTES} bytes")),
            "{text}"
        );
        eprintln!("{node} manifest: refused after reading {downloaded} bytes: {text}");
        assert!(files_under(cache.dir())
            .iter()
            .all(|f| f == "oci-layout" || f == "index.json"));
    }
    eprintln!(
        "the hostile server wrote {} bytes in all (socket buffers included)",
        hostile.written.load(Ordering::Relaxed)
    );
}

#[test]
fn blob_sending_more_than_its_descriptor_is_cut_off_at_the_descriptor_size() {
    let config = br#"{"node":"x"}"#.to_vec();
    let layer = vec![7u8; (2 * MIB) as usize];
    let manifest = |layer_size: u64| {
        ImageManifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_IMAGE_MANIFEST.into(),
            artifact_type: None,
            config: Descriptor::of_bytes(MEDIA_TYPE_NODE_CONFIG, &config),
            layers: vec![Descriptor {
                size: layer_size,
                ..Descriptor::of_bytes(MEDIA_TYPE_BASE, &layer)
            }],
            annotations: BTreeMap::new(),
        }
        .to_bytes()
        .0
    };
    let layer_digest = oci::sha256_digest(&layer);
    let config_digest = oci::sha256_digest(&config);
    // The manifest says the layer is 256 KiB; the server sends bytes without
    // end for it, or 2 MiB without announcing a length.
    let small = 256 * KIB;
    let hostile = Hostile::start(vec![
        (
            "/v2/metis/nodes/endless/manifests/latest".into(),
            Reply::Unannounced(manifest(small)),
        ),
        (
            format!("/v2/metis/nodes/endless/blobs/{layer_digest}"),
            Reply::Endless,
        ),
        (
            format!("/v2/metis/nodes/endless/blobs/{config_digest}"),
            Reply::Unannounced(config.clone()),
        ),
        (
            "/v2/metis/nodes/unannounced/manifests/latest".into(),
            Reply::Unannounced(manifest(small)),
        ),
        (
            format!("/v2/metis/nodes/unannounced/blobs/{layer_digest}"),
            Reply::Unannounced(layer.clone()),
        ),
        (
            format!("/v2/metis/nodes/unannounced/blobs/{config_digest}"),
            Reply::Unannounced(config.clone()),
        ),
    ]);
    for node in ["endless", "unannounced"] {
        let registry = hostile.registry();
        let work = tempfile::tempdir().unwrap();
        let cache = Layout::open_or_create(work.path()).unwrap();
        let err = oci::block_on(oci::pull_verified(
            &registry,
            &cache,
            &format!("metis/nodes/{node}"),
            "latest",
            &PullOptions {
                parallel: 1,
                attempts: 1,
                ..Default::default()
            },
            |_| Ok::<(), Unsigned>(()),
        ))
        .unwrap_err();
        let PullVerifiedError::Oci(err) = err else {
            panic!("{err:?}")
        };
        match &err {
            OciError::SizeMismatch {
                digest,
                expected,
                actual,
                at_least: true,
                ..
            } => {
                assert_eq!(digest, &layer_digest);
                assert_eq!(*expected, small);
                assert!(*actual > small, "{node}: {actual}");
            }
            other => panic!("{node}: expected a size mismatch, got {other:?}"),
        }
        let downloaded = counters(&registry).downloaded_bytes.load(Ordering::Relaxed);
        // Manifest + config + the descriptor's size + one read buffer.
        assert!(
            downloaded <= small + 2 * KIB + 512 * KIB,
            "{node}: {downloaded} bytes read for a {small}-byte layer"
        );
        eprintln!(
            "{node} blob: stopped after reading {downloaded} bytes in all for a {small}-byte layer"
        );
        assert!(!cache.has_blob(&layer_digest, None));
        assert!(!has_partial(&cache), "{node}: partial left");
        assert!(cache.refs().unwrap().is_empty());
    }
}
