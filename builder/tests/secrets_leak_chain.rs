//! Leak sweep over the whole chain (issue 10): a copy of the example lab whose
//! sealed secrets are unique marker strings goes through every command of
//! both binaries — `metis-build check`, `nodes`, `plan`, `publish` (to an
//! `oci:` directory and to the real TLS + password test registry),
//! `push-artifact`, `render`, `golden import` (refused), `keys generate`, `secrets
//! digest|bundle`; `metis-flash trust`, `pull`, `list`, `cache ls|verify|prune`,
//! `devices`, `probe`, `flash --output` and `--device` (a loop device, as
//! root) — and their
//! failures (wrong identity, tampered blob, missing signing key, no trusted
//! key, wrong registry password, unknown node). Then no marker, raw, base64
//! or hex, may be in any stdout or stderr, nor in any file of the registry
//! (storage and log), the `oci:` directory, the flasher's cache and config,
//! the builder's work dirs, `$HOME` or `$TMPDIR` — zstd blobs decompressed —
//! except the one card image `flash --output` wrote, which must hold them.
//!
//! Neither binary has a verbosity flag or reads `RUST_LOG`; it is set to
//! `trace` anyway so that a logger added later is swept at its loudest.

use metis_tests::DemoBuilderEnv;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use metis_tests::registry::{workspace_binary, TestRegistry, PASSWORD, USER};
use metis_tests::workspace_root;

const NODE: &str = "titan-13";

fn demo(file: &str) -> PathBuf {
    workspace_root().join("inventory/demo-keys").join(file)
}

// --- The forms a marker could leak in ----------------------------------------

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What `marker` looks like raw, hex-encoded (both cases) and base64-encoded
/// (standard and URL-safe) at each of the three offsets it could sit at in a
/// longer encoded text: the characters that only depend on the marker.
fn needles(marker: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("raw".to_owned(), marker.as_bytes().to_vec())];
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone().into_bytes()));
    out.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    for (name, alphabet) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
        for offset in 0..3 {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(marker.as_bytes());
            let encoded = base64(&bytes, alphabet);
            // Skip the group the padding bytes share; drop a last partial
            // group, whose characters depend on what follows.
            let start = if offset == 0 { 0 } else { 4 };
            let end = bytes.len() / 3 * 4;
            out.push((
                format!("{name}@{offset}"),
                encoded.as_bytes()[start..end].to_vec(),
            ));
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn needles_find_a_marker_in_every_encoding_at_every_offset() {
    let marker = "LEAKCHAIN-0123456789abcdef-pw";
    let forms = needles(marker);
    for prefix in ["", "x", "xy", "xyz", "{\"password\":\""] {
        let text = format!("{prefix}{marker}\"}}");
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        for (what, encoded) in [
            ("raw", text.clone()),
            ("hex", hex.clone()),
            ("HEX", hex.to_uppercase()),
            ("base64", base64(text.as_bytes(), STANDARD)),
            ("base64url", base64(text.as_bytes(), URL_SAFE)),
        ] {
            assert!(
                forms.iter().any(|(_, n)| find(encoded.as_bytes(), n)),
                "{what} of {text:?} not found"
            );
        }
    }
    assert_eq!(
        base64(b"any carnal pleas", STANDARD),
        "YW55IGNhcm5hbCBwbGVhcw"
    );
}

// --- The sweep --------------------------------------------------------------

struct Chain {
    swept: tempfile::TempDir,
    inventory: PathBuf,
    markers: Vec<String>,
    outputs: Vec<(String, Output)>,
    flasher: PathBuf,
    registry: TestRegistry,
}

impl Chain {
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.swept.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn command(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("PATH", metis_tests::tool::search_path())
            .env("TMPDIR", self.dir("tmp"))
            .env("HOME", self.dir("home"))
            .env("XDG_CONFIG_HOME", self.dir("config"))
            .env("XDG_CACHE_HOME", self.dir("xdg-cache"))
            .env("XDG_RUNTIME_DIR", self.dir("runtime"))
            .env("DOCKER_CONFIG", self.dir("docker"))
            .env("METIS_CACHE", self.dir("cache"))
            .env("METIS_INVENTORY", &self.inventory)
            .demo_builder_env()
            .env("METIS_REGISTRY_USERNAME", USER)
            .env("METIS_REGISTRY_PASSWORD", PASSWORD)
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "full")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&mut self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.command(program, args, env).output().unwrap();
        let name = program.file_name().unwrap().to_string_lossy();
        self.outputs
            .push((format!("{name} {}", args.join(" ")), out.clone()));
        out
    }

    fn build(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run(Path::new(env!("CARGO_BIN_EXE_metis-build")), args, env)
    }

    fn flash(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let flasher = self.flasher.clone();
        self.run(&flasher, args, env)
    }

    fn must(out: &Output, what: &str) -> String {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{err}",
            out.status
        );
        err
    }

    fn must_fail(out: &Output, what: &str, says: &str) -> String {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what} should fail:\n{err}");
        assert!(
            err.to_lowercase().contains(&says.to_lowercase()),
            "{what}: expected `{says}` in:\n{err}"
        );
        err
    }
}

/// The plaintext sources sealed for the test: every kind of secret a marker.
fn seal_marker_sources(inventory: &Path, m: &dyn Fn(&str) -> String) {
    let inv = metis_core::lab::load_for_sealing(inventory).unwrap();
    let recipients = metis_core::secrets::source_recipients(&inv).unwrap();
    let node = serde_json::json!({
        "metis_secrets": 1,
        "ssh_host_keys": {"ed25519": {
            "private": format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", m("hostkey")),
            "public": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZNhwignj2qWyV/ozWUNzidvfL1ZmsM1n9tEYAYQyso root@titan-13",
        }},
        "node_password": m("pw"),
        "files": {"lab_api_key": m("file")},
    });
    let cluster = serde_json::json!({
        "metis_secrets": 1,
        "k3s_token": m("token"),
        "registry": {"username": "robot$lab", "password": m("registry")},
    });
    for (target, plain) in [(NODE, node), ("cluster", cluster)] {
        let sealed =
            metis_core::secrets::seal(&serde_json::to_vec(&plain).unwrap(), &recipients, true)
                .unwrap();
        std::fs::write(metis_core::secrets::sealed_path(&inv, target), sealed).unwrap();
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// The needles `grep -F` finds in `path`, and, when it is zstd (node patches,
/// class bases), in its decompressed bytes. grep, not a Rust loop: the sweep
/// reads a few hundred MiB.
fn grep_file(path: &Path, patterns: &Path) -> Vec<(String, String)> {
    let mut magic = [0u8; 4];
    let zstd = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x28, 0xb5, 0x2f, 0xfd];
    let mut found = Vec::new();
    let mut scans = vec![("raw", "grep -a -F -o -f \"$2\" -- \"$1\"")];
    if zstd {
        scans.push((
            "zstd -d",
            "zstd -dcq --no-check -- \"$1\" | grep -a -F -o -f \"$2\"",
        ));
    }
    for (how, script) in scans {
        let o = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {script}"), "bash"])
            .arg(path)
            .arg(patterns)
            .output()
            .unwrap();
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "scanning {} ({how}): {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        for hit in String::from_utf8_lossy(&o.stdout).lines() {
            found.push((how.to_owned(), hit.to_owned()));
        }
    }
    found
}

#[test]
fn no_secret_leaks_anywhere_in_the_build_publish_pull_flash_chain() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let stem = format!("LEAKCHAIN{:x}{:x}", nanos, std::process::id());
    let m = |what: &str| format!("{stem}-{what}");
    let kinds = ["hostkey", "pw", "file", "token", "registry"];

    let registry = TestRegistry::start().unwrap();
    let swept = tempfile::Builder::new()
        .prefix("metis-leak-chain-")
        .tempdir()
        .unwrap();
    let inventory = swept.path().join("inventory");
    metis_tests::copy_example_inventory(&inventory);
    metis_tests::golden::generate_standins(&inventory.join("golden")).unwrap();
    // A registry with credentials (loopback: no demo-key warning), the
    // operator's SSH key as a second recipient, and a secret hook file: every
    // kind of secret reaches the card, through both kinds of identity.
    let lab = inventory.join("metis.yaml");
    let ssh_recipient = std::fs::read_to_string(demo("operator_ssh.pub")).unwrap();
    let ssh_recipient = ssh_recipient.split_whitespace().take(2).collect::<Vec<_>>();
    let text = std::fs::read_to_string(&lab)
        .unwrap()
        .replacen("host: oci:../out/registry", "host: 127.0.0.1:5000", 1)
        .replacen(
            "operators:\n  recipients:\n",
            &format!(
                "operators:\n  recipients:\n    - {}\n",
                ssh_recipient.join(" ")
            ),
            1,
        );
    std::fs::write(&lab, text).unwrap();
    let node_file = inventory.join(format!("nodes/{NODE}.yaml"));
    let mut text = std::fs::read_to_string(&node_file).unwrap();
    text.push_str("hooks:\n  files:\n    - path: /etc/lab/api-key\n      secret: lab_api_key\n");
    std::fs::write(&node_file, text).unwrap();
    seal_marker_sources(&inventory, &m);

    let mut c = Chain {
        swept,
        inventory: inventory.clone(),
        markers: kinds.iter().map(|k| m(k)).collect(),
        outputs: Vec::new(),
        flasher: workspace_binary("metis-flash", "metis-flash").unwrap(),
        registry,
    };
    let oci = c.dir("oci-registry");
    let oci_loc = format!("oci:{}", oci.display());
    let reg_loc = format!("{}/metis", c.registry.host());
    let ca = c.registry.ca_file().display().to_string();
    let key = demo("cosign.key").display().to_string();
    let [work_oci, work_reg, work_fail, out, inputs] =
        ["work-oci", "work-reg", "work-fail", "out", "inputs"].map(|d| c.dir(d));
    let (work_oci, work_reg, work_fail) = (
        work_oci.display().to_string(),
        work_reg.display().to_string(),
        work_fail.display().to_string(),
    );
    let reg: &[&str] = &["--registry", &reg_loc, "--ca-file", &ca];
    let with = |base: &[&str], more: &[&str]| -> Vec<String> {
        base.iter()
            .chain(more)
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
    };
    macro_rules! args {
        ($($part:expr),* $(,)?) => {{
            let mut v: Vec<String> = Vec::new();
            $( v.extend(AsRef::<[String]>::as_ref(&$part).iter().cloned()); )*
            v
        }};
    }
    let s = |v: &[&str]| with(v, &[]);
    // A second CI identity that is no recipient of the sealed sources.
    let stranger = inputs.join("stranger.agekey");
    metis_tests::tool::run(Command::new("age-keygen").arg("-o").arg(&stranger)).unwrap();
    let stranger_key = std::fs::read_to_string(&stranger).unwrap();

    // --- metis-build -------------------------------------------------------
    let o = c.build(&["check"], &[]);
    Chain::must(&o, "check");
    let o = c.build(&["nodes", "--json"], &[]);
    Chain::must(&o, "nodes");
    let o = c.build(&["plan", "--registry", &oci_loc], &[]);
    Chain::must(&o, "plan oci:");
    let a = args!(s(&["plan", "--json"]), s(reg));
    let o = c.build(&as_strs(&a), &[]);
    Chain::must(&o, "plan (registry)");
    let o = c.build(
        &[
            "publish",
            NODE,
            "--json",
            "--registry",
            &oci_loc,
            "--key",
            &key,
            "--work-dir",
            &work_oci,
        ],
        &[],
    );
    Chain::must(&o, "publish oci:");
    let a = args!(
        s(&["publish", NODE, "--key", &key, "--work-dir", &work_reg]),
        s(reg)
    );
    let o = c.build(&as_strs(&a), &[]);
    Chain::must(&o, "publish (registry)");
    let a = args!(s(&["plan"]), s(reg));
    let o = c.build(&as_strs(&a), &[]);
    Chain::must(&o, "plan after publish");
    let o = c.build(&["secrets", "digest", NODE], &[]);
    Chain::must(&o, "secrets digest");
    let bundle = out.join("bundle.age").display().to_string();
    let o = c.build(&["secrets", "bundle", NODE, "--out", &bundle], &[]);
    Chain::must(&o, "secrets bundle");
    let render_out = out.join("render").display().to_string();
    let o = c.build(&["render", NODE, "--out", &render_out], &[]);
    Chain::must(&o, "render --out");
    let o = c.build(
        &[
            "golden",
            "import",
            "rpi4-armbian-longhorn",
            inventory.join("golden/armbian.img").to_str().unwrap(),
            "--sha256",
            "f64dfa2c8281601da60542a9ed3d0fdd37551e5452be14c93487fdad4f0df483",
        ],
        &[],
    );
    // The stand-ins have no cloud-init or k3s: refused, and swept all the same.
    Chain::must_fail(&o, "golden import of a stand-in", "contract");
    let keys = c.dir("keys").display().to_string();
    let o = c.build(&["keys", "generate", "--out", &keys], &[]);
    Chain::must(&o, "keys generate");
    let config = out.join("config.json");
    std::fs::write(&config, b"{\"leak\":\"sweep\"}").unwrap();
    let layer = format!("application/vnd.metis.secrets.v1.age={bundle}");
    let push = [
        "push-artifact",
        "--registry",
        &c.registry.host(),
        "--repository",
        "metis/leak/bundle",
        "--tag",
        "t1",
        "--config",
        config.to_str().unwrap(),
        "--layer",
        &layer,
        "--ca-file",
        &ca,
    ];
    let o = c.build(&push, &[]);
    Chain::must(&o, "push-artifact");

    // metis-build's failures.
    let a = args!(
        s(&["publish", NODE, "--work-dir", &work_fail, "--key"]),
        s(&[inputs.join("no-such-cosign.key").to_str().unwrap()]),
        s(reg)
    );
    let o = c.build(&as_strs(&a), &[]);
    Chain::must_fail(&o, "publish without its signing key", "no-such-cosign.key");
    let a = args!(
        s(&["publish", NODE, "--key", &key, "--work-dir", &work_fail]),
        s(&["--registry", &format!("{}/wrongpass", c.registry.host())]),
        s(&["--ca-file", &ca])
    );
    let o = c.build(
        &as_strs(&a),
        &[("METIS_REGISTRY_PASSWORD", "not-the-password")],
    );
    Chain::must_fail(&o, "publish, wrong registry password", "127.0.0.1");
    let a = args!(s(&["plan"]), s(reg));
    let o = c.build(
        &as_strs(&a),
        &[("METIS_REGISTRY_PASSWORD", "not-the-password")],
    );
    Chain::must_fail(&o, "plan, wrong registry password", "127.0.0.1");
    let o = c.build(&push, &[("METIS_REGISTRY_PASSWORD", "not-the-password")]);
    Chain::must_fail(&o, "push-artifact, wrong registry password", "127.0.0.1");
    let a = args!(
        s(&["publish", NODE, "--key", &key, "--work-dir", &work_fail]),
        s(&["--registry", &format!("{}/wrongid", c.registry.host())]),
        s(&["--ca-file", &ca])
    );
    let o = c.build(&as_strs(&a), &[("METIS_AGE_IDENTITY", &stranger_key)]);
    Chain::must_fail(
        &o,
        "publish, CI identity not a recipient",
        "not a recipient",
    );
    let a = args!(
        s(&[
            "publish",
            "titan-77",
            "--key",
            &key,
            "--work-dir",
            &work_fail
        ]),
        s(reg)
    );
    let o = c.build(&as_strs(&a), &[]);
    Chain::must_fail(&o, "publish of an unknown node", "titan-77");

    // --- metis-flash -------------------------------------------------------
    let trust = demo("cosign.pub").display().to_string();
    let o = c.flash(&["trust", "add", &trust], &[]);
    Chain::must(&o, "trust add");
    let o = c.flash(&["trust", "ls"], &[]);
    Chain::must(&o, "trust ls");
    let a = args!(s(&["pull", NODE]), s(reg));
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must(&o, "pull (registry)");
    let oci_cache = c.dir("cache-oci").display().to_string();
    let o = c.flash(
        &["pull", NODE, "--registry", &oci_loc, "--cache", &oci_cache],
        &[],
    );
    Chain::must(&o, "pull oci:");
    for list in [&["list"][..], &["list", "--json"], &["list", "--offline"]] {
        let a = args!(s(list), s(reg));
        let o = c.flash(&as_strs(&a), &[]);
        Chain::must(&o, &list.join(" "));
    }
    for cache in [
        &["cache", "ls"][..],
        &["cache", "ls", "--json"],
        &["cache", "verify"],
        &["cache", "prune"],
    ] {
        let o = c.flash(cache, &[]);
        Chain::must(&o, &cache.join(" "));
    }
    // This machine's disks (may be none), and a device that is not there.
    c.flash(&["devices", "--json"], &[]);
    let o = c.flash(&["probe", "/dev/metis-no-such-disk"], &[]);
    Chain::must_fail(&o, "probe of a missing device", "metis-no-such-disk");
    let card = out.join("card.img");
    let operator = demo("operator.agekey").display().to_string();
    let a = args!(
        s(&["flash", NODE, "--output", card.to_str().unwrap()]),
        s(&["--identity", &operator]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    let err = Chain::must(&o, "flash --output");
    assert!(err.contains("verified with key"), "{err}");
    // A card on a loop device (root only): its backing file, like the
    // --output images, holds the secrets and is not swept.
    let loop_card = out.join("loop-card.raw");
    let mut loop_dev = None;
    if std::fs::File::create(&loop_card)
        .and_then(|f| f.set_len(256 << 20))
        .is_ok()
    {
        if let Ok(o) = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&loop_card)
            .env("PATH", metis_tests::tool::search_path())
            .output()
        {
            if o.status.success() {
                loop_dev = Some(String::from_utf8(o.stdout).unwrap().trim().to_owned());
            }
        }
    }
    if let Some(dev) = &loop_dev {
        let a = args!(
            s(&[
                "flash",
                NODE,
                "--device",
                dev,
                "--yes",
                "--force-non-removable"
            ]),
            s(&["--identity", &operator]),
            s(reg)
        );
        let o = c.flash(&as_strs(&a), &[]);
        let _ = Command::new("losetup").args(["-d", dev]).status();
        let err = Chain::must(&o, "flash --device (loop)");
        assert!(err.contains("insert and power on"), "{err}");
    } else {
        eprintln!("note: no loop device (not root?): flash --device not swept");
    }
    // The operator's SSH key, from the cache alone.
    let ssh_key = inputs.join("operator_ssh");
    std::fs::copy(demo("operator_ssh"), &ssh_key).unwrap();
    std::fs::set_permissions(
        &ssh_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let card_ssh = out.join("card-ssh.img");
    let a = args!(
        s(&[
            "flash",
            NODE,
            "--offline",
            "--output",
            card_ssh.to_str().unwrap()
        ]),
        s(&["--identity", ssh_key.to_str().unwrap()]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must(&o, "flash --offline --output with the SSH identity");

    // metis-flash's failures; their --output files are swept like the rest.
    let refused = |name: &str| out.join(name).display().to_string();
    let a = args!(
        s(&["flash", NODE, "--output", &refused("wrong-id.img")]),
        s(&["--identity", demo("builder.agekey").to_str().unwrap()]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must_fail(
        &o,
        "flash with a key that is no operator's",
        "not a recipient",
    );
    let a = args!(
        s(&["flash", NODE, "--output", &refused("stranger.img")]),
        s(&["--identity", stranger.to_str().unwrap()]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must_fail(&o, "flash with a stranger's key", "not a recipient");
    // A tampered secrets layer in a copy of the cache.
    let tampered = c.dir("cache-tampered");
    let mut cached = Vec::new();
    files_under(&c.dir("cache"), &mut cached);
    for f in &cached {
        let to = tampered.join(f.strip_prefix(c.dir("cache")).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(f, &to).unwrap();
    }
    let manifest_of = |cache: &Path| -> serde_json::Value {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("nodes/{NODE}:")))
            })
            .expect("the node in the cache's index.json")
            .clone();
        let hex = entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(cache.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let manifest = manifest_of(&tampered);
    let secrets_layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.metis.secrets.v1.age")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let blob = tampered.join("blobs/sha256").join(&secrets_layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let tampered_s = tampered.display().to_string();
    let a = args!(
        s(&["flash", NODE, "--offline", "--cache", &tampered_s]),
        s(&[
            "--output",
            &refused("tampered.img"),
            "--identity",
            &operator
        ]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must_fail(
        &o,
        "flash of a tampered secrets layer",
        &secrets_layer[..12],
    );
    let o = c.flash(&["cache", "verify", "--cache", &tampered_s], &[]);
    Chain::must_fail(&o, "cache verify of a tampered cache", &secrets_layer[..12]);
    // No trusted key: an empty config dir and no --trust-key.
    let empty_config = c.dir("config-empty").display().to_string();
    let a = args!(
        s(&["flash", NODE, "--output", &refused("untrusted.img")]),
        s(&["--identity", &operator]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[("XDG_CONFIG_HOME", &empty_config)]);
    Chain::must_fail(&o, "flash with no trusted key", "trust");
    // Wrong registry password, into an empty cache so it must fetch.
    let fresh_cache = c.dir("cache-fresh").display().to_string();
    let a = args!(s(&["pull", NODE, "--cache", &fresh_cache]), s(reg));
    let o = c.flash(
        &as_strs(&a),
        &[("METIS_REGISTRY_PASSWORD", "not-the-password")],
    );
    Chain::must_fail(&o, "pull, wrong registry password", "127.0.0.1");
    let a = args!(
        s(&["flash", NODE, "--cache", &fresh_cache]),
        s(&[
            "--output",
            &refused("wrongpass.img"),
            "--identity",
            &operator
        ]),
        s(reg)
    );
    let o = c.flash(
        &as_strs(&a),
        &[("METIS_REGISTRY_PASSWORD", "not-the-password")],
    );
    Chain::must_fail(&o, "flash, wrong registry password", "127.0.0.1");
    // Unknown node.
    let a = args!(s(&["pull", "titan-77"]), s(reg));
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must_fail(&o, "pull of an unknown node", "titan-77");
    let a = args!(
        s(&["flash", "titan-77", "--output", &refused("unknown.img")]),
        s(&["--identity", &operator]),
        s(reg)
    );
    let o = c.flash(&as_strs(&a), &[]);
    Chain::must_fail(&o, "flash of an unknown node", "titan-77");

    // --- The secrets did flow: both cards hold every marker in clear. ------
    let mut cards = vec![&card, &card_ssh];
    if loop_dev.is_some() {
        cards.push(&loop_card);
    }
    for img in &cards {
        for marker in &c.markers {
            let o = Command::new("grep")
                .args(["-q", "-a", "-F", "-e", marker])
                .arg(img)
                .status()
                .unwrap();
            assert!(o.success(), "{marker} is not on the card {}", img.display());
        }
    }
    // The --output images hold secrets in clear: owner-only (metis-flash
    // creates them 0600).
    for img in [&card, &card_ssh] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(img).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} holds secrets", img.display());
    }

    // --- The sweep --------------------------------------------------------
    let forms: Vec<(String, String, Vec<u8>)> = c
        .markers
        .iter()
        .flat_map(|m| {
            needles(m)
                .into_iter()
                .map(move |(form, n)| (m.clone(), form, n))
        })
        .collect();
    let mut leaks = Vec::new();
    for (cmd, o) in &c.outputs {
        for (stream, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            for (marker, form, needle) in &forms {
                if find(bytes, needle) {
                    leaks.push(format!("`{cmd}` {stream}: {marker} ({form})"));
                }
            }
        }
    }
    let patterns = c.dir("patterns").join("needles.txt");
    let mut listed = String::new();
    for (_, _, needle) in &forms {
        listed.push_str(std::str::from_utf8(needle).unwrap());
        listed.push('\n');
    }
    std::fs::write(&patterns, listed).unwrap();
    let mut all = Vec::new();
    files_under(c.swept.path(), &mut all);
    files_under(c.registry.dir(), &mut all);
    let golden = inventory.join("golden");
    let mut scanned = 0;
    for f in &all {
        // The card images hold the secrets in their slot by design; the
        // golden stand-ins are inputs, large, and compressed into the bases
        // that are swept; the needle list is the test's own.
        if cards.contains(&f) || f.starts_with(&golden) || f == &patterns {
            continue;
        }
        scanned += 1;
        for (how, hit) in grep_file(f, &patterns) {
            let (marker, form, _) = forms
                .iter()
                .find(|(_, _, n)| n == hit.as_bytes())
                .expect("grep -o prints a needle");
            leaks.push(format!("{} ({how}): {marker} ({form})", f.display()));
        }
    }
    assert!(leaks.is_empty(), "secrets in clear:\n{}", leaks.join("\n"));
    // The sweep saw what it claims: registry blobs, the oci: layout, caches, work dirs.
    for (what, dir) in [
        ("registry storage", c.registry.storage()),
        ("oci: registry", oci.clone()),
        ("flasher cache", c.dir("cache")),
        ("builder work dir", PathBuf::from(&work_reg)),
    ] {
        assert!(
            all.iter().any(|f| f.starts_with(&dir)),
            "nothing swept in the {what} ({})",
            dir.display()
        );
    }
    assert!(scanned > 50, "only {scanned} files swept");
    assert!(
        c.outputs.len() > 35,
        "only {} commands run",
        c.outputs.len()
    );
    let mut left = Vec::new();
    files_under(&c.dir("tmp"), &mut left);
    files_under(&c.dir("runtime"), &mut left);
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}
