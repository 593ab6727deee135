//! A new operator's laptop, through the real binaries: a fresh HOME, no
//! inventory, no flags after a one-time `metis-flash setup lab.metis` with the
//! profile `metis-build operator-profile` exported. Then flashing to a file and
//! to a loop device, `pull --all` and an offline `list`; an existing `--output`
//! file left as it was after a failed flash; and a node artifact older than the
//! one the verified lab index lists refused on a laptop that never flashed it.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lab::{
    demo, export_profile, fingerprint, point_inventory_at, publish_into, published, sbin_path, sha,
    Loop,
};
use metis_core::oci::Layout;

/// A laptop: its own HOME (config and cache under it), an empty working
/// directory, none of the developer's METIS_* or XDG_* variables.
struct Laptop {
    home: PathBuf,
    cwd: PathBuf,
}

impl Laptop {
    fn new(dir: &Path) -> Self {
        let home = dir.join("home");
        let cwd = dir.join("desk");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        Laptop { home, cwd }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-flash"));
        cmd.args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", sbin_path())
            .stdin(Stdio::null());
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{args:?}:\n{stderr}");
        stderr
    }

    fn config(&self) -> PathBuf {
        self.home.join(".config/metis")
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn setup_from_a_profile_then_flash_with_no_flags() {
    let work = tempfile::tempdir().unwrap();
    let (inv_dir, reg_dir) = published(work.path(), &["titan-13", "titan-db"]);
    point_inventory_at(&inv_dir, &reg_dir);
    let profile = work.path().join("lab.metis");
    export_profile(&inv_dir, &profile);
    let laptop = Laptop::new(&work.path().join("laptop"));
    let profile_arg = profile.to_str().unwrap();
    let identity = demo("operator.agekey");

    // Before setup: the plain command says what to do.
    let o = laptop.run(&["titan-13", "--output", "t13.img"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("metis-flash setup lab.metis"),
        "{}",
        text(&o)
    );

    // Without a terminal the keys must be expected by fingerprint; a wrong one
    // saves nothing.
    let o = laptop.run(&["setup", profile_arg]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--expect-fingerprint"), "{}", text(&o));
    let o = laptop.run(&[
        "setup",
        profile_arg,
        "--yes",
        "--expect-fingerprint",
        &"0".repeat(64),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!laptop.config().join("settings.json").exists());

    let fp = fingerprint(&profile);
    let stderr = laptop.ok(&[
        "setup",
        profile_arg,
        "--identity",
        identity.to_str().unwrap(),
        "--yes",
        "--expect-fingerprint",
        &fp.to_uppercase(),
    ]);
    assert!(
        stderr.contains(&fp),
        "the fingerprint was not shown:\n{stderr}"
    );
    assert!(laptop.config().join("settings.json").is_file());
    assert!(laptop
        .config()
        .join("trusted-keys")
        .join(format!("{fp}.pub"))
        .is_file());

    // No flag but the target.
    let stderr = laptop.ok(&["titan-13", "--output", "t13.img"]);
    assert!(stderr.contains("read back and verified"), "{stderr}");
    assert!(stderr.contains("lab index revision"), "{stderr}");
    let t13 = laptop.cwd.join("t13.img");
    let size = std::fs::metadata(&t13).unwrap().len();

    // The same card as with every flag given by hand and another config.
    let by_hand = work.path().join("by-hand.img");
    let o = Command::new(env!("CARGO_BIN_EXE_metis-flash"))
        .args(["titan-13", "--output"])
        .arg(&by_hand)
        .args(["--registry", &format!("oci:{}", reg_dir.display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", identity.to_str().unwrap()])
        .env("XDG_CONFIG_HOME", work.path().join("by-hand-config"))
        .env("METIS_CACHE", work.path().join("by-hand-cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha(&t13, size), sha(&by_hand, size));

    // A loop device: only the device and the override a loop device needs.
    let card = work.path().join("card.raw");
    std::fs::write(&card, vec![0xA5u8; (size + (8 << 20)) as usize]).unwrap();
    let dev = Loop::attach(&card, &[]);
    let stderr = laptop.ok(&[
        "titan-13",
        "--device",
        &dev.dev,
        "--yes",
        "--force-non-removable",
    ]);
    assert!(stderr.contains("insert and power on"), "{stderr}");
    assert_eq!(sha(&card, size), sha(&t13, size));

    // Every node of the verified index into the cache, then listed offline.
    laptop.ok(&["pull", "--all"]);
    let o = laptop.run(&["list", "--offline", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes = listed["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{listed:#}");
    for n in nodes {
        assert_eq!(n["cache"], "cached", "{listed:#}");
        assert_eq!(n["verifies"], true, "{listed:#}");
    }
    // Offline, from the cache alone (the registry is gone).
    std::fs::rename(&reg_dir, work.path().join("registry-gone")).unwrap();
    let stderr = laptop.ok(&["titan-db", "--offline", "--output", "db.img"]);
    assert!(
        stderr.contains("fetched"),
        "the index's age was not stated:\n{stderr}"
    );
}

#[test]
fn a_failed_flash_leaves_an_existing_output_file_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let (_, reg_dir) = published(work.path(), &["titan-13"]);
    let registry = format!("oci:{}", reg_dir.display());
    let cache = work.path().join("cache");
    let config = work.path().join("config");
    let run = |output: &Path, identity: &str| {
        Command::new(env!("CARGO_BIN_EXE_metis-flash"))
            .args(["titan-13", "--output"])
            .arg(output)
            .args(["--registry", &registry])
            .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
            .args(["--identity", demo(identity).to_str().unwrap()])
            .env("XDG_CONFIG_HOME", &config)
            .env("METIS_CACHE", &cache)
            .env("PATH", sbin_path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // A small filesystem: the old card image fits, the new one does not, so the
    // flash fails part-way through writing.
    let small = work.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&small)
        .env("PATH", sbin_path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let old = small.join("titan-13.img");
    let old_bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&old, &old_bytes).unwrap();

    let o = run(&old, "operator.agekey");
    assert_eq!(o.status.code(), Some(5), "not an I/O error:\n{}", text(&o));
    assert_eq!(
        std::fs::read(&old).unwrap(),
        old_bytes,
        "the old image changed"
    );
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "a temporary file was left behind: {left:?}");

    // A failure before writing (a key that is not an operator's) leaves it too.
    let o = run(&old, "builder.agekey");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(&old).unwrap(), old_bytes);

    // And a successful flash replaces it, 0600.
    let big = work.path().join("titan-13.img");
    std::fs::write(&big, b"old").unwrap();
    let o = run(&big, "operator.agekey");
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::metadata(&big).unwrap().len() > 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&big).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// Copies `repository:tag` of one image layout (manifest, blobs, signature) into
/// another, as a registry that serves an old build under `latest` would.
fn copy_artifact(from: &Layout, to: &Layout, repository: &str, tag: &str) {
    let r = from.resolve(repository, tag).unwrap().unwrap();
    let sig_tag = metis_core::trust::signature_tag(&r.manifest.digest).unwrap();
    let sig = from.resolve(repository, &sig_tag).unwrap().unwrap();
    for manifest in [&r.manifest, &sig.manifest] {
        let bytes = from.read_blob(&manifest.digest).unwrap();
        to.put_blob_bytes(&bytes).unwrap();
        for blob in from.manifest(&manifest.digest).unwrap().blobs() {
            let digest = blob.digest.parse().unwrap();
            to.put_blob_file(&from.blob_path(&blob.digest).unwrap(), &digest)
                .unwrap();
        }
    }
    to.set_ref(repository, tag, &r.manifest, None).unwrap();
    to.set_ref(repository, &sig_tag, &sig.manifest, None)
        .unwrap();
}

#[test]
fn an_artifact_older_than_the_verified_index_lists_is_refused_on_a_fresh_laptop() {
    let work = tempfile::tempdir().unwrap();
    // Revision 1 of titan-13, then revision 5 (and its lab index) in another registry.
    let (inv_dir, old_reg) = published(work.path(), &["titan-13"]);
    let new_reg = work.path().join("registry-new");
    publish_into(&inv_dir, &new_reg, &["titan-13"], Some(5));
    // The new registry's titan-13:latest is rolled back to revision 1; its lab
    // index still lists revision 5.
    let (old, new) = (
        Layout::open_or_create(&old_reg).unwrap(),
        Layout::open_or_create(&new_reg).unwrap(),
    );
    copy_artifact(&old, &new, "metis/nodes/titan-13", "latest");

    let laptop = Laptop::new(&work.path().join("laptop"));
    let key = demo("cosign.pub");
    let identity = demo("operator.agekey");
    let reg = format!("oci:{}", new_reg.display());
    laptop.ok(&[
        "setup",
        "--registry",
        &reg,
        "--trust-key",
        key.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--yes",
        "--expect-fingerprint",
        metis_core::trust::DEMO_KEY_FINGERPRINT,
    ]);
    // This laptop never flashed titan-13; it has only seen the index.
    laptop.ok(&["list"]);
    let o = laptop.run(&["titan-13", "--output", "t13.img"]);
    let stderr = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the rollback was not refused:\n{stderr}"
    );
    assert!(stderr.contains("older than revision 5"), "{stderr}");
    assert!(!laptop.cwd.join("t13.img").exists());
    // Refused from its signed revision, before any of its blobs was fetched.
    let cache = Layout::open_or_create(&laptop.home.join(".cache/metis")).unwrap();
    assert!(cache
        .resolve("metis/nodes/titan-13", "latest")
        .unwrap()
        .is_none());
    // Deliberately, loudly.
    let stderr = laptop.ok(&["titan-13", "--output", "t13.img", "--allow-downgrade"]);
    assert!(stderr.contains("DOWNGRADE"), "{stderr}");
    // Offline, from the cache (which now holds revision 1): refused the same way.
    let o = laptop.run(&["titan-13", "--offline", "--output", "offline.img"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("older than revision 5"), "{}", text(&o));
    // The node list says why the cached artifact would not be written.
    let o = laptop.run(&["list", "--offline", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t13 = &listed["nodes"][0];
    assert_eq!(
        (&t13["node"], &t13["verifies"]),
        (&"titan-13".into(), &false.into()),
        "{listed:#}"
    );
    assert!(
        t13["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("revision 1, older than revision 5"),
        "{listed:#}"
    );
    // The index revision seen never goes backwards.
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(laptop.config().join("seen.json")).unwrap()).unwrap();
    assert_eq!(seen["index"], 5, "{seen}");
    // An older index from the old registry is refused too.
    let old_reg_arg = format!("oci:{}", old_reg.display());
    let o = laptop.run(&[
        "titan-13",
        "--registry",
        &old_reg_arg,
        "--output",
        "old.img",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("lab index revision 1 is older"),
        "{}",
        text(&o)
    );
}

/// An `oci:` registry whose `titan-13:latest` is an unsigned manifest naming a
/// real 1 GiB layer (a sparse file): returns the registry directory.
fn unsigned_gib_registry(dir: &Path) -> PathBuf {
    use metis_core::oci::{Descriptor, ImageManifest};
    let reg = dir.join("hostile");
    let layout = Layout::open_or_create(&reg).unwrap();
    // The layer: 1 GiB of zeros, sparse, placed where the layout keeps blobs.
    let staging = dir.join("layer");
    std::fs::File::create(&staging)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let digest = metis_core::oci::hash_file(&staging).unwrap().to_string();
    std::fs::rename(&staging, layout.blob_path(&digest).unwrap()).unwrap();
    let config = br#"{"version":1}"#;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: metis_core::oci::MEDIA_TYPE_IMAGE_MANIFEST.into(),
        artifact_type: Some(metis_core::oci::ARTIFACT_TYPE_NODE.into()),
        config: Descriptor::of_bytes(metis_core::oci::MEDIA_TYPE_NODE_CONFIG, config),
        layers: vec![Descriptor {
            media_type: metis_core::oci::MEDIA_TYPE_BASE.into(),
            digest,
            size: 1 << 30,
            annotations: Default::default(),
        }],
        annotations: Default::default(),
    };
    layout.put_blob_bytes(config).unwrap();
    let (bytes, _) = manifest.to_bytes();
    let manifest_digest = layout.put_blob_bytes(&bytes).unwrap();
    let descriptor = Descriptor {
        media_type: metis_core::oci::MEDIA_TYPE_IMAGE_MANIFEST.into(),
        digest: manifest_digest.to_string(),
        size: bytes.len() as u64,
        annotations: Default::default(),
    };
    layout
        .set_ref("metis/nodes/titan-13", "latest", &descriptor, None)
        .unwrap();
    reg
}

/// Bytes under `dir`, counting what is allocated (a sparse copy counts little,
/// so count the apparent size too).
fn apparent_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let meta = e.metadata().unwrap();
            total += if meta.is_dir() {
                apparent_bytes(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

#[test]
fn an_unsigned_gib_layer_is_refused_before_any_of_it_moves() {
    let work = tempfile::tempdir().unwrap();
    let reg = unsigned_gib_registry(work.path());
    let cache = work.path().join("cache");
    let times = work.path().join("time.txt");
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&times)
        .arg(env!("CARGO_BIN_EXE_metis-flash"))
        .args(["titan-13", "--output"])
        .arg(work.path().join("t13.img"))
        .args(["--registry", &format!("oci:{}", reg.display())])
        .args(["--trust-key", demo("cosign.pub").to_str().unwrap()])
        .args(["--identity", demo("operator.agekey").to_str().unwrap()])
        .env("XDG_CONFIG_HOME", work.path().join("config"))
        .env("METIS_CACHE", &cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&o);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("has no signature"), "{stderr}");
    // Nothing of the layer reached the cache, not even a partial download.
    let cached = apparent_bytes(&cache);
    assert!(
        cached < 64 << 10,
        "{cached} bytes in the cache after the refusal"
    );
    assert!(!work.path().join("t13.img").exists());
    let rss = std::fs::read_to_string(&times)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("refused with {cached} bytes cached, peak RSS {rss} KiB");
}
