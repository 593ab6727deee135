//! The whole chain, with the project's own commands only: a card Metis
//! publishes and flashes boots under QEMU and the node comes up as itself.
//!
//! The lab is a copy of the example inventory whose classes are given the
//! bootable stand-ins (`tests/golden/gen.sh --bootable`) with
//! `metis-build golden import --pin`, and whose test nodes get their own
//! sealed secrets (real SSH host keys, unique marker strings) sealed to the
//! demo keys. Each scenario starts a real registry on loopback (TLS +
//! password), runs `metis-build publish NODE` with the demo signing key,
//! `metis-flash pull NODE`, stops the registry, and runs
//! `metis-flash flash NODE --offline --device /dev/loopN` with the demo
//! operator identity onto a loop device over a card file. The card file is
//! then booted with the node's own MAC and checked offline: identity,
//! network, SSH host keys from the sealed source, node password and token,
//! k3s in its role, journald and kubelet limits, the bootstrap status, the
//! zeroed slot, Longhorn disk handling and that a reboot changes nothing.
//! titan-04's card is then flashed again with a newer build (the registry
//! back, online this time) and first boot runs again; a byte of the patch
//! changed in the registry's storage is refused and leaves the card as it was.
//!
//! There is no bootable Armbian stand-in: the Armbian Longhorn class is laid
//! out here as the Ubuntu-for-Raspberry-Pi stand-in (seed `system-boot`, root
//! `writable`, `os: ubuntu`), so its node's seed, bootstrap and disk handling
//! are tested, not Armbian's own first-run. docs/testing.md says more.
//!
//! Expectations come from the inventory, not from the render, and every
//! check names what was expected and what the node has.

use metis_tests::DemoBuilderEnv;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex, OnceLock};

use anyhow::{bail, ensure, Context, Result};
use metis_core::inventory::{self, Inventory, Role};
use metis_core::render;
use metis_tests::golden::{self, BootableImage, BootableImages};
use metis_tests::qemu::{self, BootedCard};
use metis_tests::registry::{workspace_binary, TestRegistry, PASSWORD, USER};
use metis_tests::{tool, workspace_root};

/// The lab's registry in `metis.yaml`, so the bundle carries a
/// `registries.yaml` with credentials (the example lab's `oci:` directory gets
/// none). Publish is given the loopback test registry with `--registry`, and a
/// node pulls through the registry it was published to, so that is what the
/// booted nodes name. Nothing connects to either from a guest: its network is
/// QEMU's `restrict=on`.
const REGISTRY_HOST: &str = "harbor.lab.home.arpa";

/// How long the k3s phase waits for a missing Longhorn disk in these boots
/// (the class's 90 s would only make the no-disk boot slower). Not less: on a
/// loaded 2-core host a TCG guest's udev once started 20 s after systemd began
/// waiting for the disk that *was* attached, so the mount and k3s were held
/// back on the reboot (uptime 45 s → 66 s).
const DISK_TIMEOUT_SEC: u32 = 60;

/// The k3s stand-in's record directory (tests/golden/gen.sh).
const STANDIN: &str = "/var/lib/metis-k3s-standin";

/// The nodes the scenarios flash; each gets its own sealed test secrets.
const TEST_NODES: [&str; 3] = ["titan-04", "titan-db", "titan-13"];

// --- The test lab ------------------------------------------------------------

/// A copy of the example inventory whose classes are the bootable stand-ins.
struct Lab {
    dir: PathBuf,
    inv: Inventory,
    images: BootableImages,
    /// The secrets sealed for each of [`TEST_NODES`].
    secrets: BTreeMap<&'static str, TestSecrets>,
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| make_lab().expect("setting up the boot-test inventory"))
}

fn demo(file: &str) -> PathBuf {
    workspace_root().join("inventory/demo-keys").join(file)
}

/// `metis-build ARGS --inventory DIR` with the CI's secrets in its environment.
fn metis_build(inv: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .args(args)
        .arg("--inventory")
        .arg(inv)
        .env("PATH", tool::search_path())
        .demo_builder_env()
        .env("METIS_REGISTRY_USERNAME", USER)
        .env("METIS_REGISTRY_PASSWORD", PASSWORD)
        .output()?)
}

/// Runs `metis-build ARGS`; its stderr, or an error naming the step.
fn metis_build_ok(inv: &Path, args: &[&str]) -> Result<String> {
    let out = metis_build(inv, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.success(),
        "`metis-build {}` failed:\n{stderr}",
        args.join(" ")
    );
    Ok(stderr)
}

fn make_lab() -> Result<Lab> {
    let images = golden::bootable()?;
    // A static outlives the test run, so the lab (with its copies of the golden
    // images) lives in the target directory and the next run replaces it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-chain-lab");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    metis_tests::copy_example_inventory(&dir);
    let classes = dir.join("classes");
    // No bootable Armbian stand-in: lay the Longhorn class out as the
    // Ubuntu-for-Raspberry-Pi one (its golden image is imported below).
    std::fs::write(
        classes.join("rpi4-armbian-longhorn.yaml"),
        format!(
            "description: Raspberry Pi 4 Longhorn workers, laid out as the bootable rpi-ubuntu stand-in (boot tests)\n\
             architecture: arm64\n\
             os: ubuntu\n\
             golden:\n  path: golden/not-imported-yet.img\n  sha256: {}\n\
             seed:\n  label: system-boot\n  filesystem: vfat\n\
             root:\n  label: writable\n\
             k3s: true\n\
             defaults:\n  disk_timeout_sec: {DISK_TIMEOUT_SEC}\n",
            "0".repeat(64)
        ),
    )?;
    // The amd64 class names its seed by GPT partition name (the bootable amd64
    // stand-in's seed partition is named `cidata`), so golden import, render,
    // publish, flash and the boot's secrets phase (/dev/disk/by-partlabel) all
    // go through that selector on titan-db.
    let amd64_class = classes.join("amd64-agents.yaml");
    let text = std::fs::read_to_string(&amd64_class)?;
    ensure!(
        text.contains("seed:\n  label: CIDATA\n"),
        "amd64-agents.yaml changed shape"
    );
    std::fs::write(
        &amd64_class,
        text.replace("seed:\n  label: CIDATA\n", "seed:\n  gpt_name: cidata\n"),
    )?;
    let metis = dir.join("metis.yaml");
    let text = std::fs::read_to_string(&metis)?;
    ensure!(
        text.contains("host: oci:../out/registry"),
        "metis.yaml changed shape"
    );
    std::fs::write(
        &metis,
        text.replace(
            "host: oci:../out/registry",
            &format!("host: {REGISTRY_HOST}"),
        ),
    )?;

    // The operator's step: each class's prepared image, imported and pinned.
    let (rpi, amd64) = (images.rpi_ubuntu().image, images.amd64().image);
    let (rpi_sha, amd64_sha) = (sha256_of(&rpi)?, sha256_of(&amd64)?);
    for (class, image, sha) in [
        ("rpi5-ubuntu", &rpi, &rpi_sha),
        ("rpi4-armbian-longhorn", &rpi, &rpi_sha),
        ("amd64-agents", &amd64, &amd64_sha),
    ] {
        let image = image.to_str().context("image path")?;
        metis_build_ok(
            &dir,
            &["golden", "import", class, image, "--sha256", sha, "--pin"],
        )?;
    }
    let inv = metis_core::lab::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    for class in ["rpi5-ubuntu", "rpi4-armbian-longhorn", "amd64-agents"] {
        ensure!(
            matches!(&inv.classes[class].golden, inventory::Golden::Path { path, .. } if path.starts_with("golden")),
            "golden import --pin did not pin class {class}: {:?}",
            inv.classes[class].golden
        );
    }

    // The test nodes' own secrets, sealed as `metis-build secrets` would.
    let recipients = metis_core::secrets::source_recipients(&inv)?;
    let mut secrets = BTreeMap::new();
    for node in TEST_NODES {
        let s = test_secrets(node)?;
        let sealed = metis_core::secrets::seal(&s.sealed_source(), &recipients, true)?;
        std::fs::write(metis_core::secrets::sealed_path(&inv, node), sealed)?;
        secrets.insert(node, s);
    }
    Ok(Lab {
        dir,
        inv,
        images,
        secrets,
    })
}

fn sha256_of(file: &Path) -> Result<String> {
    Ok(metis_core::image::golden::file_sha256(file)?)
}

/// Replaces `path` whole (write, then rename), so a scenario reading the
/// inventory meanwhile sees the old file or the new one, never half.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let temp = path.with_extension("yaml.new");
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

/// At most two guests at once, whatever `--test-threads` says: each takes
/// 1 GiB and one host core (one vCPU under TCG, tests/src/qemu.rs).
fn boot_slot() -> impl Drop {
    static GATE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            *GATE.0.lock().unwrap() -= 1;
            GATE.1.notify_one();
        }
    }
    let mut running = GATE.0.lock().unwrap();
    while *running >= 2 {
        running = GATE.1.wait(running).unwrap();
    }
    *running += 1;
    Slot
}

// --- Secrets -----------------------------------------------------------------

/// A node's test secrets: real SSH host keys and unique marker strings.
struct TestSecrets {
    /// Key type → (private key, public key line).
    keys: BTreeMap<&'static str, (String, String)>,
    node_password: String,
    k3s_token: String,
    registry_user: String,
    registry_password: String,
}

fn test_secrets(node: &str) -> Result<TestSecrets> {
    let scratch = tempfile::tempdir()?;
    let mut keys = BTreeMap::new();
    for (name, bits) in [("ed25519", None), ("ecdsa", None), ("rsa", Some("2048"))] {
        let file = scratch.path().join(format!("ssh_host_{name}_key"));
        let mut cmd = tool::command("ssh-keygen");
        cmd.args(["-q", "-t", name, "-N", "", "-C", &format!("root@{node}")]);
        if let Some(bits) = bits {
            cmd.args(["-b", bits]);
        }
        tool::run(cmd.arg("-f").arg(&file))?;
        let private = std::fs::read_to_string(&file)?;
        let public = std::fs::read_to_string(file.with_extension("pub"))?;
        keys.insert(name, (private, public.trim_end().to_owned()));
    }
    let node_password = format!("node-password-marker-{node}-5b9e1c");
    let k3s_token = format!("K10marker{node}token::server:3f7d2a");
    let registry_user = format!("robot-metis-{node}");
    let registry_password = format!("registry-password-marker-{node}-c0ffee");
    Ok(TestSecrets {
        keys,
        node_password,
        k3s_token,
        registry_user,
        registry_password,
    })
}

impl TestSecrets {
    /// The plaintext of the node's sealed source (docs/secrets.md).
    fn sealed_source(&self) -> Vec<u8> {
        let mut keys = serde_json::Map::new();
        for (name, (private, public)) in &self.keys {
            keys.insert(
                (*name).to_owned(),
                serde_json::json!({ "private": private, "public": public }),
            );
        }
        serde_json::to_vec(&serde_json::json!({
            "metis_secrets": 1,
            "ssh_host_keys": keys,
            "node_password": self.node_password,
            "k3s_token": self.k3s_token,
            "registry": { "username": self.registry_user, "password": self.registry_password },
        }))
        .expect("JSON of strings")
    }
}

// --- Publishing, flashing and booting a card ---------------------------------

/// A loop device, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Result<Loop> {
        let dev = tool::run_stdout(tool::command("losetup").args(["-f", "--show"]).arg(file))?;
        Ok(Loop(dev.trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// One node published to its own registry, pulled into its own cache.
struct Published {
    node: String,
    registry: TestRegistry,
    /// `--registry` for publish and the flasher.
    location: String,
    cache: PathBuf,
    config: PathBuf,
    work: PathBuf,
    scratch: tempfile::TempDir,
}

/// `metis-build publish NODE` to a fresh loopback registry, then
/// `metis-flash pull NODE`; the registry is left running.
fn publish_and_pull(node: &str) -> Result<Published> {
    let scratch = tempfile::Builder::new()
        .prefix(&format!("metis-chain-{node}-"))
        .tempdir()?;
    let registry = TestRegistry::start()?;
    let p = Published {
        node: node.to_owned(),
        location: format!("{}/metis", registry.host()),
        registry,
        cache: scratch.path().join("cache"),
        config: scratch.path().join("config"),
        work: scratch.path().join("work"),
        scratch,
    };
    p.publish()?;
    // Pull verifies the signature before any blob moves: it needs the lab's key.
    let key = demo("cosign.pub");
    let out = p.flash_cmd(&[
        "pull",
        node,
        "--trust-key",
        key.to_str().context("key path")?,
    ])?;
    ensure!(
        out.status.success(),
        "`metis-flash pull {node}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(p)
}

impl Published {
    fn publish(&self) -> Result<String> {
        let ca = self.registry.ca_file();
        let (key, work) = (demo("cosign.key"), self.work.clone());
        metis_build_ok(
            &lab().dir,
            &[
                "publish",
                &self.node,
                "--registry",
                &self.location,
                "--ca-file",
                ca.to_str().context("CA path")?,
                "--key",
                key.to_str().context("key path")?,
                "--work-dir",
                work.to_str().context("work path")?,
            ],
        )
    }

    /// `metis-flash ARGS` against this registry and cache (`--registry` and
    /// `--ca-file` are added to every subcommand that takes them).
    fn flash_cmd(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(workspace_binary("metis-flash", "metis-flash")?);
        cmd.args(args)
            .arg("--registry")
            .arg(&self.location)
            .arg("--ca-file")
            .arg(self.registry.ca_file())
            .arg("--inventory")
            .arg(&lab().dir)
            .env("METIS_CACHE", &self.cache)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("METIS_REGISTRY_USERNAME", USER)
            .env("METIS_REGISTRY_PASSWORD", PASSWORD)
            .env("PATH", tool::search_path());
        Ok(cmd.output()?)
    }

    /// `metis-flash flash NODE --device DEV` with `identity`, plus `extra`.
    fn flash(&self, dev: &Loop, identity: &Path, extra: &[&str]) -> Result<Output> {
        let (identity, trust) = (
            identity.to_str().context("identity path")?,
            demo("cosign.pub"),
        );
        let mut args = vec![
            "flash",
            &self.node,
            "--device",
            &dev.0,
            "--yes",
            "--force-non-removable",
            "--identity",
            identity,
            "--trust-key",
            trust.to_str().context("trust key path")?,
        ];
        args.extend_from_slice(extra);
        self.flash_cmd(&args)
    }
}

/// A node's card, flashed by `metis-flash` onto a loop device over `path`.
struct NodeCard {
    node: String,
    path: PathBuf,
    golden: BootableImage,
    mac: String,
    slot_size: u64,
    secrets: &'static TestSecrets,
    /// The registry it was published to, which its `registries.yaml` names.
    registry_host: String,
    instance_id: String,
    machine_id: String,
}

/// Flashes `published`'s node with the demo operator identity onto a loop
/// device over the card file `path` (created the golden image's size, sparse,
/// when missing); with `offline`, from the cache alone.
fn flash_card(published: &Published, path: &Path, offline: bool) -> Result<NodeCard> {
    let lab = lab();
    let node = published.node.as_str();
    let n = &lab.inv.nodes[node];
    let golden = if lab.inv.class_of(n).architecture == metis_core::inventory::Arch::Amd64 {
        lab.images.amd64()
    } else {
        lab.images.rpi_ubuntu()
    };
    if !path.exists() {
        std::fs::File::create(path)?.set_len(std::fs::metadata(&golden.image)?.len())?;
    }
    let dev = Loop::attach(path)?;
    let extra: &[&str] = if offline { &["--offline"] } else { &[] };
    let out = published.flash(&dev, &demo("operator.agekey"), extra)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stderr.contains("insert and power on"),
        "`metis-flash flash {node} --device {}` failed ({}):\n{stderr}",
        dev.0,
        out.status
    );
    drop(dev);
    // The node as its latest inventory renders it.
    let inv = metis_core::lab::load(&lab.dir)?;
    let rendered = render::render(&inv, node)?;
    Ok(NodeCard {
        node: node.to_owned(),
        path: path.to_owned(),
        golden,
        mac: n.interfaces[0].mac.to_ascii_lowercase(),
        slot_size: render::SLOT_SIZE,
        secrets: &lab.secrets[node],
        registry_host: published.registry.host(),
        instance_id: rendered.instance_id,
        machine_id: rendered.machine_id,
    })
}

/// Publishes, pulls, stops the registry and flashes `node` offline: the card
/// file lives in the returned [`Published`]'s scratch directory.
fn build_card(node: &str) -> Result<(Published, NodeCard)> {
    let published = publish_and_pull(node)?;
    published.registry.stop();
    let path = published.scratch.path().join("card.img");
    let card = flash_card(&published, &path, true)?;
    Ok((published, card))
}

/// Boots `card` (one of at most two guests at a time) with `disks` attached.
fn boot(card: &NodeCard, disks: &[&Path], what: &str) -> Result<BootedCard> {
    let _slot = boot_slot();
    let booted = qemu::boot_card_with_disks(&card.path, &card.golden, &card.mac, disks)
        .with_context(|| format!("booting {what}"))?;
    let serial = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "boot-render-{}.serial",
        what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::write(&serial, &booted.log.serial)?;
    eprintln!(
        "{what}: cloud-init finished after {:.1?}, power-off took {:.1?}; console in {}",
        booted.log.until_cloud_init_finished,
        booted.log.power_off,
        serial.display()
    );
    Ok(booted)
}

/// A sparse disk file with an ext4 file system whose UUID is `uuid`.
fn longhorn_disk(dir: &Path, uuid: &str) -> Result<PathBuf> {
    let disk = dir.join("longhorn.img");
    std::fs::File::create(&disk)?.set_len(256 << 20)?;
    tool::run(
        tool::command("mkfs.ext4")
            .args(["-q", "-F", "-L", "longhorn", "-U", uuid])
            .arg(&disk),
    )?;
    Ok(disk)
}

// --- What the node has -------------------------------------------------------

/// The node's root file system and console, as the checks read them: a
/// booted card, or files in memory (to test the checks themselves).
trait NodeView {
    /// Text of the file at `path`.
    fn read(&self, path: &str) -> Result<String>;
    /// (permission bits, uid, gid) of `path`.
    fn stat(&self, path: &str) -> Result<(u32, u32, u32)>;
    /// Names in directory `dir`, sorted.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// The serial console.
    fn console(&self) -> &str;
}

impl NodeView for BootedCard {
    fn read(&self, path: &str) -> Result<String> {
        self.card.ext4_read_string(self.root_partition, path)
    }
    fn stat(&self, path: &str) -> Result<(u32, u32, u32)> {
        let e = self.card.ext4_stat(self.root_partition, path)?;
        Ok((e.permissions(), e.uid, e.gid))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .card
            .ext4_list(self.root_partition, dir)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        Ok(names)
    }
    fn console(&self) -> &str {
        &self.log.serial
    }
}

/// Files in memory standing in for a node: path → (content, mode).
struct FakeNode {
    files: BTreeMap<String, (String, u32)>,
    console: String,
}

impl NodeView for FakeNode {
    fn read(&self, path: &str) -> Result<String> {
        match self.files.get(path) {
            Some((text, _)) => Ok(text.clone()),
            None => bail!("{path} does not exist"),
        }
    }
    fn stat(&self, path: &str) -> Result<(u32, u32, u32)> {
        match self.files.get(path) {
            Some((_, mode)) => Ok((*mode, 0, 0)),
            None => bail!("{path} does not exist"),
        }
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }
    fn console(&self) -> &str {
        &self.console
    }
}

/// Mismatches between what was expected and what the node has.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn add(&mut self, finding: String) {
        self.0.push(finding);
    }

    fn eq<T: std::fmt::Debug + PartialEq>(&mut self, what: &str, expected: T, got: T) {
        if expected != got {
            self.add(format!(
                "{what}: expected {expected:?}, the node has {got:?}"
            ));
        }
    }

    /// The file's text, or a finding and None.
    fn read(&mut self, node: &dyn NodeView, path: &str) -> Option<String> {
        match node.read(path) {
            Ok(text) => Some(text),
            Err(err) => {
                self.add(format!("{path}: expected on the node: {err:#}"));
                None
            }
        }
    }

    fn file_eq(&mut self, node: &dyn NodeView, path: &str, expected: &str) {
        if let Some(got) = self.read(node, path) {
            self.eq(path, expected, got.as_str());
        }
    }

    fn stat_eq(&mut self, node: &dyn NodeView, path: &str, mode: u32) {
        match node.stat(path) {
            Ok(got) if got == (mode, 0, 0) => {}
            Ok((m, u, g)) => self.add(format!(
                "{path}: expected mode {mode:o} owner 0:0, the node has mode {m:o} owner {u}:{g}"
            )),
            Err(err) => self.add(format!("{path}: expected mode {mode:o}: {err:#}")),
        }
    }

    /// Every `key=value` of `expected` is a line of the file.
    fn lines_present(&mut self, node: &dyn NodeView, path: &str, expected: &[String]) {
        if let Some(got) = self.read(node, path) {
            for line in expected {
                if !got.lines().any(|l| l.trim() == line) {
                    self.add(format!(
                        "{path}: expected the line {line:?}, the node has:\n{got}"
                    ));
                }
            }
        }
    }

    /// Fails the test with every finding and the serial console's tail.
    #[track_caller]
    fn assert_none(self, booted: &BootedCard, what: &str) {
        if !self.0.is_empty() {
            booted.fail(&format!(
                "{what}: {} mismatch(es):\n- {}",
                self.0.len(),
                self.0.join("\n- ")
            ));
        }
    }
}

/// What a node should be, from the inventory.
struct Expected {
    node: String,
    hostname: String,
    fqdn: String,
    mac: String,
    addresses: Vec<String>,
    node_ip: String,
    role: Role,
    unit: &'static str,
    labels: Vec<String>,
    taints: Vec<String>,
    server: String,
    kubelet: Vec<String>,
    journald: Vec<String>,
    users: Vec<(String, Vec<String>)>,
}

impl Expected {
    fn of(inv: &Inventory, node: &str) -> Expected {
        let n = &inv.nodes[node];
        let iface = &n.interfaces[0];
        let k = &n.settings.kubelet;
        let j = &n.settings.journald;
        let own: Vec<String> = n.addresses().map(|a| a.to_string()).collect();
        let server = inv
            .lab
            .cluster
            .servers
            .iter()
            .find(|u| !own.iter().any(|ip| u.contains(ip.as_str())))
            .cloned()
            .unwrap_or_default();
        Expected {
            node: n.name.clone(),
            hostname: n.hostname.clone(),
            fqdn: n.fqdn.clone(),
            mac: iface.mac.to_ascii_lowercase(),
            addresses: iface.addresses.iter().map(|a| a.to_string()).collect(),
            node_ip: n
                .primary_ipv4()
                .map(|ip: IpAddr| ip.to_string())
                .unwrap_or_default(),
            role: n.role,
            unit: match n.role {
                Role::Server => "k3s.service",
                Role::Agent => "k3s-agent.service",
                Role::None => "",
            },
            labels: n.labels.clone(),
            taints: n.taints.iter().map(ToString::to_string).collect(),
            server,
            kubelet: vec![
                format!("containerLogMaxSize: \"{}\"", k.container_log_max_size),
                format!("containerLogMaxFiles: {}", k.container_log_max_files),
                format!("imageGCHighThresholdPercent: {}", k.image_gc_high_threshold),
                format!("imageGCLowThresholdPercent: {}", k.image_gc_low_threshold),
            ],
            journald: vec![
                format!("SystemMaxUse={}", j.system_max_use),
                format!("SystemKeepFree={}", j.system_keep_free),
                format!("MaxRetentionSec={}", j.max_retention),
            ],
            users: n
                .settings
                .users
                .iter()
                .map(|u| (u.name.clone(), u.ssh_authorized_keys.clone()))
                .collect(),
        }
    }
}

/// Hostname, `/etc/hosts`, instance-id and machine-id.
fn check_identity(
    node: &dyn NodeView,
    exp: &Expected,
    instance_id: &str,
    machine_id: &str,
) -> Findings {
    let mut f = Findings::default();
    f.file_eq(node, "/etc/hostname", &format!("{}\n", exp.hostname));
    if let Some(hosts) = f.read(node, "/etc/hosts") {
        let names = |line: &str| -> Vec<String> {
            line.split_whitespace().skip(1).map(str::to_owned).collect()
        };
        let own = hosts
            .lines()
            .filter(|l| l.starts_with("127.0.1.1") || l.starts_with("127.0.0.1"))
            .any(|l| {
                let n = names(l);
                n.contains(&exp.fqdn) && n.contains(&exp.hostname)
            });
        if !own {
            f.add(format!(
                "/etc/hosts: expected a loopback line naming {} and {}, the node has:\n{hosts}",
                exp.fqdn, exp.hostname
            ));
        }
    }
    f.file_eq(
        node,
        "/var/lib/cloud/data/instance-id",
        &format!("{instance_id}\n"),
    );
    f.file_eq(node, "/etc/machine-id", &format!("{machine_id}\n"));
    f
}

/// IPv4 addresses with prefix (`a.b.c.d/n`) in `text`.
fn cidrs_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '/'))
        .filter(|w| {
            w.split_once('/').is_some_and(|(ip, p)| {
                ip.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok()
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The static address: in the netplan file cloud-init wrote, under the
/// interface matched by the node's MAC, and live on that interface
/// (cloud-init's network table on the console).
fn check_network(node: &dyn NodeView, exp: &Expected) -> Findings {
    let mut f = Findings::default();
    let path = "/etc/netplan/50-cloud-init.yaml";
    if let Some(netplan) = f.read(node, path) {
        if !netplan.to_ascii_lowercase().contains(&exp.mac) {
            f.add(format!(
                "{path}: expected a match on MAC {}, the node has:\n{netplan}",
                exp.mac
            ));
        }
        let got = cidrs_in(&netplan);
        for want in &exp.addresses {
            if !got.contains(want) {
                f.add(format!(
                    "{path}: expected static address {want} on the interface with MAC {}, the node has {got:?}",
                    exp.mac
                ));
            }
        }
    }
    // ci-info: | eth0 | True | 192.168.22.20 | 255.255.255.0 | global | 2c:cf:… |
    let live: Vec<&str> = node
        .console()
        .lines()
        .filter(|l| l.contains("ci-info") && l.to_ascii_lowercase().contains(&exp.mac))
        .collect();
    for want in &exp.addresses {
        let ip = want.split('/').next().unwrap_or(want);
        let found = live
            .iter()
            .any(|l| l.split('|').any(|cell| cell.trim() == ip));
        if !found {
            // The seed partition is also in the image's fstab; when systemd
            // mounts it while cloud-init-local probes it, NoCloud is found
            // only in the network stage and the node runs its first boot on
            // the fallback (DHCP) network. cloud-init issue #6614.
            let race = if node.console().contains("when looking for data") {
                "; cloud-init-local could not mount the seed partition (\"Failed to mount … when \
                 looking for data\" on the console: it raced the image's own fstab mount of it) and \
                 applied its fallback network"
            } else {
                ""
            };
            f.add(format!(
                "console: expected {ip} live on the interface with MAC {}, cloud-init's table shows {live:?}{race}",
                exp.mac
            ));
        }
    }
    f
}

/// cloud-init found the seed in its local stage (before networking), so the
/// node's network config, not the fallback DHCP one, brought the network up.
/// When it misses the seed there it says "Failed to mount … when looking for
/// data" and finds it later as `DataSourceNoCloudNet`.
fn check_seed_found_locally(node: &dyn NodeView) -> Findings {
    let mut f = Findings::default();
    let console = node.console();
    let final_line = console
        .lines()
        .find(|l| l.contains("Cloud-init v. ") && l.contains(" finished at "))
        .unwrap_or("<no final line>");
    let missed: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("when looking for data"))
        .collect();
    if !final_line.contains("Datasource DataSourceNoCloud [") || !missed.is_empty() {
        f.add(format!(
            "cloud-init: expected the NoCloud seed found by init-local (\"Datasource DataSourceNoCloud [\"), \
             the node has {final_line:?} after {missed:?}"
        ));
    }
    f
}

/// `ssh-keygen -lf` of key text (private or public).
fn fingerprint(key: &str) -> Result<String> {
    let scratch = tempfile::tempdir()?;
    let file = scratch.path().join("key");
    std::fs::write(&file, key)?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let out = tool::run_stdout(tool::command("ssh-keygen").arg("-lf").arg(&file))?;
    Ok(out.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

/// SSH host keys are exactly the bundle's, the users' keys are authorized and
/// passwords are off.
fn check_ssh(node: &dyn NodeView, exp: &Expected, secrets: &TestSecrets) -> Findings {
    let mut f = Findings::default();
    for (name, (private, public)) in &secrets.keys {
        let key = render::paths::ssh_host_key(name);
        let want = fingerprint(public).expect("fingerprint of a key ssh-keygen made");
        if let Some(got) = f.read(node, &key) {
            match fingerprint(&got) {
                Ok(got) => f.eq(
                    &format!("fingerprint of {key}"),
                    want.as_str(),
                    got.as_str(),
                ),
                Err(err) => f.add(format!("{key}: expected the bundle's key {want}: {err:#}")),
            }
            if got != *private {
                f.add(format!("{key}: differs from the bundle's private key"));
            }
        }
        if let Some(got) = f.read(node, &format!("{key}.pub")) {
            f.eq(&format!("{key}.pub"), public.as_str(), got.trim_end());
        }
        f.stat_eq(node, &key, 0o600);
    }
    for (user, keys) in &exp.users {
        let path = format!("/home/{user}/.ssh/authorized_keys");
        if let Some(got) = f.read(node, &path) {
            for k in keys {
                if !got.lines().any(|l| l.trim() == k) {
                    f.add(format!(
                        "{path}: expected the key {k:?}, the node has:\n{got}"
                    ));
                }
            }
        }
    }
    match password_authentication(node) {
        Ok(settings) => {
            // sshd takes the first value it reads.
            if settings.first().map(|(_, v)| v.as_str()) != Some("no") {
                f.add(format!(
                    "sshd: expected PasswordAuthentication no, the node has (in the order sshd reads them) {settings:?}"
                ));
            }
        }
        Err(err) => f.add(format!("sshd configuration: {err:#}")),
    }
    f
}

/// Every `PasswordAuthentication` setting of sshd as (file, value), in the
/// order sshd reads them: `/etc/ssh/sshd_config` with its
/// `Include /etc/ssh/sshd_config.d/*.conf` expanded where it stands
/// (cloud-init writes its setting into `50-cloud-init.conf` there).
fn password_authentication(node: &dyn NodeView) -> Result<Vec<(String, String)>> {
    let main = "/etc/ssh/sshd_config";
    let mut out = Vec::new();
    let scan = |file: &str, text: &str, out: &mut Vec<(String, String)>| {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some(key), Some(value)) = (words.next(), words.next()) {
                if key.eq_ignore_ascii_case("PasswordAuthentication") {
                    out.push((file.to_owned(), value.to_owned()));
                }
            }
        }
    };
    for line in node.read(main)?.lines() {
        let line = line.trim();
        if line == "Include /etc/ssh/sshd_config.d/*.conf" {
            for name in node.list("/etc/ssh/sshd_config.d")? {
                if name.ends_with(".conf") {
                    let file = format!("/etc/ssh/sshd_config.d/{name}");
                    scan(&file, &node.read(&file)?, &mut out);
                }
            }
        } else {
            scan(main, line, &mut out);
        }
    }
    Ok(out)
}

/// Node password, token and registry credentials with their modes.
/// `registry` is the host the card was published to: the node pulls through it.
fn check_secrets(node: &dyn NodeView, secrets: &TestSecrets, registry: &str) -> Findings {
    let mut f = Findings::default();
    f.file_eq(
        node,
        render::paths::NODE_PASSWORD,
        &format!("{}\n", secrets.node_password),
    );
    f.file_eq(
        node,
        render::paths::K3S_TOKEN,
        &format!("{}\n", secrets.k3s_token),
    );
    if let Some(reg) = f.read(node, render::paths::REGISTRIES) {
        for want in [
            format!("username: \"{}\"", secrets.registry_user),
            format!("password: \"{}\"", secrets.registry_password),
            format!("\"{registry}\":"),
        ] {
            if !reg.lines().any(|l| l.trim() == want) {
                f.add(format!(
                    "{}: expected {want:?}, the node has:\n{reg}",
                    render::paths::REGISTRIES
                ));
            }
        }
    }
    for path in [
        render::paths::NODE_PASSWORD,
        render::paths::K3S_TOKEN,
        render::paths::REGISTRIES,
    ] {
        f.stat_eq(node, path, 0o600);
    }
    f
}

/// A k3s `config.yaml` as this test reads it: scalars and lists of strings.
fn parse_k3s_config(text: &str) -> BTreeMap<String, Vec<String>> {
    let unquote = |v: &str| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_owned());
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut list_key = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(item) = line.trim_start().strip_prefix("- ") {
            if let Some(key) = &list_key {
                out.entry(String::clone(key))
                    .or_default()
                    .push(unquote(item));
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let value = value.trim();
            if value.is_empty() {
                list_key = Some(key.to_owned());
                out.entry(key.to_owned()).or_default();
            } else {
                list_key = None;
                out.entry(key.to_owned()).or_default().push(unquote(value));
            }
        }
    }
    out
}

/// The k3s stand-in ran in the node's role with the node's configuration,
/// and the kubelet limits are in place.
fn check_k3s(node: &dyn NodeView, exp: &Expected) -> Findings {
    let mut f = Findings::default();
    let role = match exp.role {
        Role::Server => "server",
        _ => "agent",
    };
    f.lines_present(
        node,
        &format!("{STANDIN}/run.env"),
        &[
            "argc=1".to_owned(),
            format!("arg1={role}"),
            "config_yaml=present".to_owned(),
        ],
    );
    if let Some(config) = f.read(node, &format!("{STANDIN}/config.yaml")) {
        let got = parse_k3s_config(&config);
        let get = |key: &str| got.get(key).cloned().unwrap_or_default();
        f.eq("k3s node-name", vec![exp.node.clone()], get("node-name"));
        f.eq("k3s node-ip", vec![exp.node_ip.clone()], get("node-ip"));
        f.eq("k3s server", vec![exp.server.clone()], get("server"));
        f.eq(
            "k3s token-file",
            vec![render::paths::K3S_TOKEN.to_owned()],
            get("token-file"),
        );
        f.eq("k3s node-label", exp.labels.clone(), get("node-label"));
        f.eq("k3s node-taint", exp.taints.clone(), get("node-taint"));
        if got.contains_key("cluster-init") {
            f.add("k3s config.yaml: a recovery card must never carry cluster-init".to_owned());
        }
        // What k3s read is what cloud-init wrote.
        if let Some(written) = f.read(node, render::paths::K3S_CONFIG) {
            f.eq("k3s config.yaml as started vs on disk", written, config);
        }
    }
    f.stat_eq(node, render::paths::K3S_CONFIG, 0o600);
    f.lines_present(node, render::paths::KUBELET_DROPIN, &exp.kubelet);
    f.lines_present(node, render::paths::JOURNALD_DROPIN, &exp.journald);
    f
}

/// journald runs with the node's limits: its "journal usage" message
/// (MESSAGE_ID ec387f57…), read from the card's persistent journal with
/// `journalctl --directory`, carries the MAX_USE and DISK_KEEP_FREE it applies.
fn check_journald_in_effect(booted: &BootedCard, exp: &Expected) -> Findings {
    let mut f = Findings::default();
    let want = |key: &str| -> Option<u64> {
        let line = exp.journald.iter().find_map(|l| l.strip_prefix(key))?;
        let (digits, unit) = line.split_at(line.find(|c: char| !c.is_ascii_digit())?);
        let factor = match unit {
            "K" => 1u64 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return None,
        };
        Some(digits.parse::<u64>().ok()? * factor)
    };
    let (Some(max_use), Some(keep_free)) = (want("SystemMaxUse="), want("SystemKeepFree=")) else {
        f.add(format!(
            "journald: cannot read the expected sizes from {:?}",
            exp.journald
        ));
        return f;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let part = booted.root_partition;
    let copied = (|| -> Result<usize> {
        let mut n = 0;
        for id in booted.card.ext4_list(part, "/var/log/journal")? {
            if id.name.len() != 32 || !id.is_dir() {
                continue;
            }
            let into = dir.path().join(&id.name);
            std::fs::create_dir_all(&into)?;
            for file in booted
                .card
                .ext4_list(part, &format!("/var/log/journal/{}", id.name))?
            {
                if file.is_file() && file.name.ends_with(".journal") {
                    let bytes = booted
                        .card
                        .ext4_read(part, &format!("/var/log/journal/{}/{}", id.name, file.name))?;
                    std::fs::write(into.join(&file.name), bytes)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    })();
    match copied {
        Ok(0) => {
            f.add("journald: no persistent journal in /var/log/journal on the card".to_owned());
            return f;
        }
        Ok(_) => {}
        Err(err) => {
            f.add(format!(
                "journald: reading /var/log/journal from the card: {err:#}"
            ));
            return f;
        }
    }
    let out = std::process::Command::new("journalctl")
        .arg("--directory")
        .arg(dir.path())
        .args([
            "--no-pager",
            "-o",
            "json",
            "MESSAGE_ID=ec387f577b844b8fa948f33cad9a75e6",
        ])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            f.add(format!(
                "journalctl --directory on the card's journal failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            return f;
        }
        Err(err) => {
            f.add(format!("running journalctl: {err}"));
            return f;
        }
    };
    let usage: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(last) = usage.iter().rev().find(|m| {
        m["MESSAGE"]
            .as_str()
            .unwrap_or("")
            .contains("System Journal")
    }) else {
        f.add(format!(
            "journald: no \"System Journal … max …\" usage message in the card's journal; got {} usage messages",
            usage.len()
        ));
        return f;
    };
    let field = |k: &str| last[k].as_str().and_then(|v| v.parse::<u64>().ok());
    f.eq(
        "journald MAX_USE (bytes) in effect",
        Some(max_use),
        field("MAX_USE"),
    );
    f.eq(
        "journald DISK_KEEP_FREE (bytes) in effect",
        Some(keep_free),
        field("DISK_KEEP_FREE"),
    );
    f
}

/// `/var/lib/metis/bootstrap.json`, parsed.
fn status(node: &dyn NodeView, f: &mut Findings) -> Option<serde_json::Value> {
    let text = f.read(node, render::paths::STATUS)?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(err) => {
            f.add(format!(
                "{}: not JSON ({err}):\n{text}",
                render::paths::STATUS
            ));
            None
        }
    }
}

/// The bootstrap says it applied everything: secrets installed, k3s enabled
/// in the node's role, nothing failed; each disk in `disks` mounted.
fn check_status_ok(node: &dyn NodeView, exp: &Expected, disks: &[&str]) -> Findings {
    let mut f = Findings::default();
    if let Some(s) = status(node, &mut f) {
        let role = exp.role.to_string();
        f.eq(
            "bootstrap.json node",
            exp.node.as_str(),
            s["node"].as_str().unwrap_or("?"),
        );
        f.eq(
            "bootstrap.json role",
            role.as_str(),
            s["role"].as_str().unwrap_or("?"),
        );
        f.eq("bootstrap.json ok", Some(true), s["ok"].as_bool());
        f.eq(
            "bootstrap.json secrets",
            "installed",
            s["secrets"].as_str().unwrap_or("?"),
        );
        f.eq(
            "bootstrap.json k3s.unit",
            exp.unit,
            s["k3s"]["unit"].as_str().unwrap_or("?"),
        );
        f.eq(
            "bootstrap.json k3s.state",
            "enabled",
            s["k3s"]["state"].as_str().unwrap_or("?"),
        );
        f.eq(
            "bootstrap.json failed",
            &serde_json::json!([]),
            &s["failed"],
        );
        let got: Vec<(String, String)> = s["disks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["mount"].as_str().unwrap_or("?").to_owned(),
                            d["state"].as_str().unwrap_or("?").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = disks
            .iter()
            .map(|m| (m.to_string(), "mounted".to_owned()))
            .collect();
        f.eq("bootstrap.json disks (mount, state)", want, got);
    }
    f
}

/// The card's secrets slot is all zeros and keeps its size.
fn check_slot_zeroed(booted: &BootedCard, size: u64) -> Findings {
    let mut f = Findings::default();
    match booted
        .card
        .fat_read(booted.seed_partition, render::SLOT_FILE)
    {
        Ok(slot) => {
            f.eq("secrets slot size", size, slot.len() as u64);
            let nonzero = slot.iter().filter(|b| **b != 0).count();
            f.eq("non-zero bytes left in the secrets slot", 0, nonzero);
        }
        Err(err) => f.add(format!(
            "{}: expected on the seed: {err:#}",
            render::SLOT_FILE
        )),
    }
    f
}

/// cloud-init's `result.json` reports no error, except one the stand-in
/// causes: minbase Debian has no NTP client, so cloud-init's ntp module tries
/// `apt-get install chrony`, which fails in a VM with no network. Vendor
/// images carry a client (systemd-timesyncd or chrony) and take the node's
/// `ntp:` servers.
fn check_cloud_init_result(node: &dyn NodeView) -> Findings {
    let mut f = Findings::default();
    let path = "/var/lib/cloud/data/result.json";
    let Some(text) = f.read(node, path) else {
        return f;
    };
    let result: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(err) => {
            f.add(format!("{path}: not JSON ({err}):\n{text}"));
            return f;
        }
    };
    let errors: Vec<&str> = result["v1"]["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
        .unwrap_or_default();
    let unexpected: Vec<&str> = errors
        .into_iter()
        .filter(|e| !(e.starts_with("('ntp', ") && e.contains("'install', 'chrony'")))
        .collect();
    f.eq("cloud-init errors", Vec::<&str>::new(), unexpected);
    f
}

/// Every check of a node that booted fully (k3s started).
fn assert_node_is_itself(booted: &BootedCard, card: &NodeCard, disks: &[&str]) {
    // The inventory as it is now: a scenario may have changed the node.
    let inv = metis_core::lab::load(&lab().dir).expect("loading the test lab");
    let exp = Expected::of(&inv, &card.node);
    let mut all = Findings::default();
    for findings in [
        check_identity(booted, &exp, &card.instance_id, &card.machine_id),
        check_seed_found_locally(booted),
        check_network(booted, &exp),
        check_ssh(booted, &exp, card.secrets),
        check_secrets(booted, card.secrets, &card.registry_host),
        check_k3s(booted, &exp),
        check_journald_in_effect(booted, &exp),
        check_status_ok(booted, &exp, disks),
        check_slot_zeroed(booted, card.slot_size),
    ] {
        all.0.extend(findings.0);
    }
    all.0.extend(check_cloud_init_result(booted).0);
    // Secrets never reach cloud-init's copy of user-data or the console.
    for (what, text) in [
        ("the serial console", booted.log.serial.clone()),
        (
            "cloud-init's user-data",
            booted
                .read("/var/lib/cloud/instance/user-data.txt")
                .unwrap_or_default(),
        ),
    ] {
        for secret in [
            &card.secrets.node_password,
            &card.secrets.k3s_token,
            &card.secrets.registry_password,
        ] {
            if text.contains(secret.as_str()) {
                all.add(format!("{what} shows a secret value"));
            }
        }
    }
    all.assert_none(booted, &format!("{} is not itself", card.node));
    booted.card.fat_check(booted.seed_partition).unwrap();
    booted.card.ext4_check(booted.root_partition).unwrap();
}

// --- Scenarios ---------------------------------------------------------------

#[test]
fn rpi5_ubuntu_titan_04_boots_as_itself_and_a_newer_build_runs_first_boot_again() -> Result<()> {
    let (published, card) = build_card("titan-04")?;
    let booted = boot(&card, &[], "titan-04 (rpi5-ubuntu)")?;
    assert_node_is_itself(&booted, &card, &[]);

    // A wrong expectation fails and names both values (on real node files).
    let mut wrong = Expected::of(&lab().inv, "titan-04");
    wrong.addresses = vec!["192.168.22.99/24".to_owned()];
    let text = check_network(&booted, &wrong).0.join("\n");
    assert!(
        text.contains("192.168.22.99/24") && text.contains("192.168.22.20/24"),
        "a wrong address did not name both values:\n{text}"
    );
    let first_instance = card.instance_id.clone();
    let installed = "/var/lib/metis/secrets-installed";
    let installed_first = booted.card.ext4_mtime(booted.root_partition, installed)?;
    drop(booted);

    // A newer build: the node gets a label, CI publishes again (the registry
    // is back), and the operator flashes the same card, online this time.
    let file = lab().dir.join("nodes/titan-04.yaml");
    let text = std::fs::read_to_string(&file)?;
    ensure!(
        text.contains("\n  labels:\n"),
        "nodes/titan-04.yaml changed shape"
    );
    replace_file(
        &file,
        &text.replace(
            "\n  labels:\n",
            "\n  labels:\n    - metis.test/build=newer\n",
        ),
    )?;
    published.registry.restart()?;
    let report = published.publish()?;
    ensure!(
        report
            .lines()
            .any(|l| l.starts_with("titan-04") && l.contains("built")),
        "publish did not rebuild titan-04:\n{report}"
    );
    let card = flash_card(&published, &card.path, false)?;
    ensure!(
        card.instance_id != first_instance,
        "the newer build kept instance-id {first_instance}"
    );
    let booted = boot(&card, &[], "titan-04 re-flashed with a newer build")?;
    // First boot ran again: the new instance, the new label, all checks.
    assert_node_is_itself(&booted, &card, &[]);
    let mut f = Findings::default();
    if let Some(config) = f.read(&booted, "/etc/rancher/k3s/config.yaml") {
        if !config.contains("metis.test/build=newer") {
            f.add(format!(
                "/etc/rancher/k3s/config.yaml: expected the newer build's label metis.test/build=newer, the node has:\n{config}"
            ));
        }
    }
    // The secrets phase ran again: it rewrote its record (and zeroed the slot
    // the flash had filled, which the checks above saw).
    let installed_again = booted.card.ext4_mtime(booted.root_partition, installed)?;
    if installed_again == installed_first {
        f.add(format!(
            "{installed}: expected rewritten by the newer build's first boot, its mtime is still {installed_first}"
        ));
    }
    f.assert_none(&booted, "titan-04 after a newer build");
    drop(booted);

    // One byte of the published patch changed in the registry's storage: the
    // flash is refused and the card keeps what it had.
    let digest = published_patch_digest(&published)?;
    let blob = published
        .registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest[..2])
        .join(&digest)
        .join("data");
    let mut bytes = std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&blob, bytes)?;
    std::fs::remove_dir_all(&published.cache)?;
    let before = sha256_of(&card.path)?;
    let dev = Loop::attach(&card.path)?;
    let out = published.flash(&dev, &demo("operator.agekey"), &[])?;
    drop(dev);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a tampered patch in the registry was not refused:\n{stderr}"
    );
    assert!(!stderr.contains("insert and power on"), "{stderr}");
    assert!(
        stderr.contains(&digest[..12]),
        "the refusal does not name the blob:\n{stderr}"
    );
    assert_eq!(
        sha256_of(&card.path)?,
        before,
        "a refused flash changed the card"
    );
    Ok(())
}

/// Hex digest of the patch layer of `published`'s node's latest manifest,
/// read from the registry with skopeo (another OCI client).
fn published_patch_digest(published: &Published) -> Result<String> {
    let out = tool::run_stdout(
        tool::command("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(published.registry.cert_dir())
            .arg("--creds")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!(
                "docker://{}/nodes/{}:latest",
                published.location, published.node
            )),
    )?;
    let manifest: serde_json::Value = serde_json::from_str(&out)?;
    let layer = manifest["layers"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|l| l["mediaType"] == metis_core::oci::MEDIA_TYPE_PATCH)
        })
        .with_context(|| format!("no patch layer in {manifest}"))?;
    Ok(layer["digest"]
        .as_str()
        .context("layer digest")?
        .trim_start_matches("sha256:")
        .to_owned())
}

#[test]
fn amd64_titan_db_boots_as_itself() -> Result<()> {
    let (published, card) = build_card("titan-db")?;
    // Another key than an operator's (the CI builder's) opens nothing and
    // writes nothing.
    let before = sha256_of(&card.path)?;
    std::fs::write(&card.path, b"")?;
    std::fs::File::options()
        .write(true)
        .open(&card.path)?
        .set_len(std::fs::metadata(&card.golden.image)?.len())?;
    let empty = sha256_of(&card.path)?;
    let dev = Loop::attach(&card.path)?;
    let out = published.flash(&dev, &demo("builder.agekey"), &["--offline"])?;
    drop(dev);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong identity flashed:\n{stderr}");
    assert!(!stderr.contains("insert and power on"), "{stderr}");
    assert_eq!(
        sha256_of(&card.path)?,
        empty,
        "a refused flash wrote to the card"
    );
    let card = flash_card(&published, &card.path, true)?;
    assert_eq!(
        sha256_of(&card.path)?,
        before,
        "two flashes of one artifact differ"
    );
    let booted = boot(&card, &[], "titan-db (amd64-agents)")?;
    assert_node_is_itself(&booted, &card, &[]);
    Ok(())
}

/// Files a second boot must not change: (path, whether its mtime must stay
/// too). cloud-init itself rewrites two on every boot with the same content:
/// `/etc/hosts` (`manage_etc_hosts: true` renders it each boot) and
/// `data/instance-id`.
const UNCHANGED_BY_REBOOT: &[(&str, bool)] = &[
    ("/var/lib/cloud/data/instance-id", false),
    ("/etc/hosts", false),
    ("/etc/hostname", true),
    ("/etc/fstab", true),
    ("/etc/ssh/ssh_host_ed25519_key", true),
    ("/etc/ssh/ssh_host_rsa_key", true),
    ("/etc/rancher/node/password", true),
    ("/etc/rancher/k3s/token", true),
    ("/etc/rancher/k3s/config.yaml", true),
    ("/etc/rancher/k3s/registries.yaml", true),
    ("/etc/metis/fstab", true),
    ("/var/lib/metis/bootstrap.json", true),
    ("/var/lib/metis/secrets-installed", true),
    ("/etc/netplan/50-cloud-init.yaml", true),
];

/// (content, mtime or "") of each file of [`UNCHANGED_BY_REBOOT`].
fn snapshot(booted: &BootedCard) -> BTreeMap<&'static str, (String, String)> {
    UNCHANGED_BY_REBOOT
        .iter()
        .map(|(path, mtime_too)| {
            let text = booted.root_file(path);
            let mtime = if *mtime_too {
                booted
                    .card
                    .ext4_mtime(booted.root_partition, path)
                    .unwrap_or_else(|err| booted.fail(&format!("{err:#}")))
            } else {
                String::new()
            };
            (*path, (text, mtime))
        })
        .collect()
}

/// The kernel mounted the Longhorn disk (`vdb`) before the k3s stand-in
/// started: the kernel's timestamp of the mount against the uptime the
/// stand-in recorded when it started.
fn mounted_before_k3s(booted: &BootedCard, f: &mut Findings) {
    let mounted: Option<f64> = booted
        .log
        .serial
        .lines()
        .find(|l| l.contains("EXT4-fs (vdb): mounted"))
        .and_then(|l| l.split_once('[')?.1.split_once(']')?.0.trim().parse().ok());
    let started: Option<f64> = f
        .read(booted, &format!("{STANDIN}/run.env"))
        .and_then(|run| {
            run.lines()
                .find_map(|l| l.strip_prefix("uptime_seconds="))
                .and_then(|v| v.trim().parse().ok())
        });
    match (mounted, started) {
        (Some(m), Some(s)) if m < s => {}
        (m, s) => f.add(format!(
            "expected the Longhorn disk (vdb) mounted before k3s started: the kernel mounted it at \
             {m:?} s, the k3s stand-in started at {s:?} s of uptime"
        )),
    }
}

#[test]
fn longhorn_titan_13_with_its_disk_boots_as_itself_and_a_reboot_changes_nothing() -> Result<()> {
    let inv = &lab().inv;
    let uuid = inv.nodes["titan-13"].disks[0].uuid.clone();
    let mount = inv.nodes["titan-13"].disks[0].mount.clone();
    let (_published, card) = build_card("titan-13")?;
    let scratch = tempfile::tempdir()?;
    let disk = longhorn_disk(scratch.path(), &uuid)?;

    let booted = boot(&card, &[&disk], "titan-13 with its Longhorn disk")?;
    assert_node_is_itself(&booted, &card, &[&mount]);
    let mut f = Findings::default();
    let fstab_line = format!("UUID={uuid} {mount} ext4 ");
    if let Some(fstab) = f.read(&booted, "/etc/fstab") {
        if !fstab.lines().any(|l| l.starts_with(&fstab_line)) {
            f.add(format!(
                "/etc/fstab: expected a line {fstab_line}…, the node has:\n{fstab}"
            ));
        }
    }
    f.lines_present(
        &booted,
        &render::paths::k3s_unit_dropin("k3s-agent.service"),
        &[format!("RequiresMountsFor={mount}")],
    );
    // The disk itself says it was mounted (ext4 records the mount point only
    // once a file is opened, so the mount time is the evidence).
    let super_block = tool::run_stdout(tool::command("dumpe2fs").arg("-h").arg(&disk))?;
    let last_mount = super_block
        .lines()
        .find_map(|l| l.strip_prefix("Last mount time:"))
        .map(str::trim)
        .unwrap_or("<not reported>");
    if last_mount == "n/a" || last_mount == "<not reported>" {
        f.add(format!(
            "the Longhorn disk: expected to have been mounted, its superblock says last mount time {last_mount}"
        ));
    }
    mounted_before_k3s(&booted, &mut f);
    f.assert_none(&booted, "titan-13 with its disk");
    let before = snapshot(&booted);
    let starts_before = booted.root_file(&format!("{STANDIN}/starts"));
    drop(booted);

    // Second boot of the same card: same instance, nothing applied again.
    let again = boot(&card, &[&disk], "titan-13, second boot of the same card")?;
    let after = snapshot(&again);
    let mut f = Findings::default();
    for (path, (text, mtime)) in &before {
        let (text2, mtime2) = &after[path];
        f.eq(&format!("{path} after the second boot"), text, text2);
        f.eq(
            &format!("mtime of {path} after the second boot"),
            mtime,
            mtime2,
        );
    }
    // k3s comes back as an enabled unit (one more start, same arguments),
    // only after the disk is mounted again.
    let starts = again.root_file(&format!("{STANDIN}/starts"));
    f.eq(
        "k3s stand-in starts after the second boot",
        starts_before.lines().count() + 1,
        starts.lines().count(),
    );
    let exp = Expected::of(inv, "titan-13");
    f.0.extend(check_k3s(&again, &exp).0);
    f.0.extend(check_status_ok(&again, &exp, &[&mount]).0);
    f.0.extend(check_slot_zeroed(&again, card.slot_size).0);
    mounted_before_k3s(&again, &mut f);
    f.assert_none(&again, "a second boot of titan-13's card changed something");
    again.card.ext4_check(again.root_partition)?;
    Ok(())
}

#[test]
fn longhorn_titan_13_without_its_disk_holds_k3s_back_and_says_why() -> Result<()> {
    let inv = &lab().inv;
    let mount = inv.nodes["titan-13"].disks[0].mount.clone();
    let (_published, card) = build_card("titan-13")?;
    let booted = boot(&card, &[], "titan-13 without its Longhorn disk")?;
    let exp = Expected::of(inv, "titan-13");
    let mut f = Findings::default();
    // Everything but k3s is in place.
    for findings in [
        check_identity(&booted, &exp, &card.instance_id, &card.machine_id),
        check_seed_found_locally(&booted),
        check_network(&booted, &exp),
        check_ssh(&booted, &exp, card.secrets),
        check_secrets(&booted, card.secrets, &card.registry_host),
        check_slot_zeroed(&booted, card.slot_size),
    ] {
        f.0.extend(findings.0);
    }
    if let Some(s) = status(&booted, &mut f) {
        f.eq("bootstrap.json ok", Some(false), s["ok"].as_bool());
        f.eq(
            "bootstrap.json k3s.state",
            "blocked",
            s["k3s"]["state"].as_str().unwrap_or("?"),
        );
        let disk_state = s["disks"][0]["state"].as_str().unwrap_or("?");
        f.eq("bootstrap.json disk state", "missing", disk_state);
        let failed = s["failed"].to_string();
        if !failed.contains("Longhorn") || !failed.contains(&mount) {
            f.add(format!(
                "bootstrap.json failed: expected the unmounted Longhorn disk {mount} named, the node has {failed}"
            ));
        }
    }
    let blocked = format!("k3s-agent.service not started: Longhorn disk(s) not mounted: {mount}");
    if !booted.log.serial.contains(&blocked) {
        f.add(format!("console: expected {blocked:?}"));
    }
    if let Some(motd) = f.read(&booted, "/etc/motd.d/50-metis-bootstrap") {
        if !motd.contains(&blocked) {
            f.add(format!("motd: expected {blocked:?}, the node has:\n{motd}"));
        }
    }
    // k3s never ran, is not enabled, and nothing was written into the empty
    // mount point on the root file system.
    if booted.root_exists(STANDIN) {
        f.add(format!(
            "k3s ran without its Longhorn disk: {}",
            booted.root_file(&format!("{STANDIN}/run.env"))
        ));
    }
    if booted.root_exists("/etc/systemd/system/multi-user.target.wants/k3s-agent.service") {
        f.add("k3s-agent.service is enabled without its Longhorn disk".to_owned());
    }
    match booted.card.ext4_list(booted.root_partition, &mount) {
        Ok(entries) => f.eq(
            &format!("entries in the empty mount point {mount}"),
            Vec::<String>::new(),
            entries.into_iter().map(|e| e.name).collect(),
        ),
        Err(err) => f.add(format!("{mount}: expected an empty directory: {err:#}")),
    }
    f.assert_none(&booted, "titan-13 without its disk");
    booted.card.ext4_check(booted.root_partition)?;
    Ok(())
}

// --- The checks themselves (no boot) -----------------------------------------

/// A node that got other values than rendered fails, naming what was
/// expected and what it has.
#[test]
fn a_node_with_other_values_than_rendered_fails_naming_both() {
    let inv = metis_core::lab::load(&workspace_root().join("inventory")).unwrap();
    let exp = Expected::of(&inv, "titan-04");
    let netplan = "network:\n  version: 2\n  ethernets:\n    eth0:\n      match:\n        \
                   macaddress: \"2c:cf:67:00:00:04\"\n      addresses: [\"192.168.22.21/24\"]\n";
    let node = FakeNode {
        files: BTreeMap::from([
            ("/etc/hostname".to_owned(), ("ubuntu\n".to_owned(), 0o644)),
            (
                "/etc/netplan/50-cloud-init.yaml".to_owned(),
                (netplan.to_owned(), 0o600),
            ),
            (
                render::paths::NODE_PASSWORD.to_owned(),
                ("other\n".to_owned(), 0o644),
            ),
        ]),
        console: "ci-info: | eth0 | True | 192.168.22.21 | 255.255.255.0 | global | 2c:cf:67:00:00:04 |\n"
            .to_owned(),
    };

    let network = check_network(&node, &exp).0.join("\n");
    for needle in [
        "192.168.22.20/24",
        "192.168.22.21/24",
        "192.168.22.20",
        "192.168.22.21 ",
    ] {
        assert!(network.contains(needle), "{needle:?} not named:\n{network}");
    }
    let identity = check_identity(&node, &exp, "i-1", "0".repeat(32).as_str())
        .0
        .join("\n");
    assert!(
        identity.contains("\"titan-04\\n\"") && identity.contains("\"ubuntu\\n\""),
        "hostname mismatch not named:\n{identity}"
    );
    assert!(identity.contains("/etc/hosts"), "{identity}");

    // The seed-mount race, as a titan-04 boot once showed it.
    let raced = FakeNode {
        files: BTreeMap::new(),
        console: "[   41.6] cloud-init[243]: util.py[WARNING]: Failed to mount /dev/vda1 when looking for data\n\
                  [  111.2] cloud-init[527]: Cloud-init v. 22.4.2 finished at Wed, 25 Nov 2026 23:56:44 +0000. \
                  Datasource DataSourceNoCloudNet [seed=/dev/vda1][dsmode=net].  Up 111.13 seconds\n"
            .to_owned(),
    };
    let found = check_seed_found_locally(&raced).0.join("\n");
    assert!(
        found.contains("DataSourceNoCloudNet") && found.contains("Failed to mount /dev/vda1"),
        "{found}"
    );

    let secrets = test_secrets("titan-04").unwrap();
    let found = check_secrets(&node, &secrets, REGISTRY_HOST).0.join("\n");
    assert!(
        found.contains(&secrets.node_password) && found.contains("\"other\\n\""),
        "{found}"
    );
    assert!(
        found.contains("expected mode 600 owner 0:0, the node has mode 644"),
        "{found}"
    );

    // A missing host key is named, with the key the bundle carried.
    let ssh = check_ssh(&node, &exp, &secrets).0.join("\n");
    let ed25519 = render::paths::ssh_host_key("ed25519");
    assert!(
        ssh.contains(&format!("{ed25519}: expected on the node")),
        "missing host key not named:\n{ssh}"
    );

    // A wrong label reaching k3s is named with both lists.
    let mut labels = exp.labels.clone();
    labels[0] = "lab.home.arpa/wrong=label".to_owned();
    let config = format!(
        "node-name: \"titan-04\"\nnode-label:\n{}",
        labels
            .iter()
            .map(|l| format!("  - \"{l}\"\n"))
            .collect::<String>()
    );
    let k3s_node = FakeNode {
        files: BTreeMap::from([(format!("{STANDIN}/config.yaml"), (config, 0o600))]),
        console: String::new(),
    };
    let k3s = check_k3s(&k3s_node, &exp).0.join("\n");
    assert!(
        k3s.contains("k3s node-label: expected")
            && k3s.contains(&exp.labels[0])
            && k3s.contains("lab.home.arpa/wrong=label"),
        "wrong label not named with both lists:\n{k3s}"
    );
}

/// sshd takes the first `PasswordAuthentication` it reads, and reads the
/// drop-ins where `sshd_config` includes them.
#[test]
fn password_authentication_is_read_in_sshd_order() {
    let file = |text: &str| (text.to_owned(), 0o644);
    let node = FakeNode {
        files: BTreeMap::from([
            (
                "/etc/ssh/sshd_config".to_owned(),
                file("Include /etc/ssh/sshd_config.d/*.conf\n#PasswordAuthentication yes\nPasswordAuthentication no\n"),
            ),
            (
                "/etc/ssh/sshd_config.d/40-vendor.conf".to_owned(),
                file("PasswordAuthentication yes\n"),
            ),
            (
                "/etc/ssh/sshd_config.d/50-cloud-init.conf".to_owned(),
                file("PasswordAuthentication no\n"),
            ),
        ]),
        console: String::new(),
    };
    let got = password_authentication(&node).unwrap();
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["yes", "no", "no"], "{got:?}");
    assert_eq!(got[0].0, "/etc/ssh/sshd_config.d/40-vendor.conf");
}

#[test]
fn k3s_config_is_read_as_k3s_would() {
    let config = "# c\nnode-name: \"titan-db\"\nnode-label:\n  - \"a=b\"\n  - \"c=d\"\nnode-taint:\n  - \"x=y:NoSchedule\"\nserver: \"https://h:6443\"\n";
    let got = parse_k3s_config(config);
    assert_eq!(got["node-name"], ["titan-db"]);
    assert_eq!(got["node-label"], ["a=b", "c=d"]);
    assert_eq!(got["node-taint"], ["x=y:NoSchedule"]);
    assert_eq!(got["server"], ["https://h:6443"]);
    assert_eq!(
        cidrs_in("addresses: [\"10.0.0.1/24\", \"fe80::1/64\"]"),
        ["10.0.0.1/24"]
    );
}
