//! Both bootstrap phases, as rendered, run twice in a throwaway root
//! (METIS_ROOT) for every node: the first run installs and starts what it
//! should, the second changes nothing and exits 0. `systemctl`, `logger`,
//! `mount`, `umount`, `mountpoint`, `chown` (and `findmnt` for the bootcmd) are
//! stubs on PATH that record their calls, so nothing touches the host; `tar`,
//! `dd`, `sh` and the rest are real.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use metis_core::inventory::{Inventory, Role};
use metis_core::render::{self, paths, Rendered, SLOT_FILE, SLOT_SIZE};
use sha2::{Digest, Sha256};

const STUBS: &[(&str, &str)] = &[
    (
        "logger",
        r#"#!/bin/sh
tag= prio=
while [ $# -gt 0 ]; do
	case $1 in
	-t) tag=$2; shift 2 ;;
	-p) prio=$2; shift 2 ;;
	--) shift; break ;;
	-*) shift ;;
	*) break ;;
	esac
done
if [ $# -gt 0 ]; then
	printf 'logger[%s %s] %s\n' "$tag" "$prio" "$*"
else
	sed "s/^/logger[$tag $prio] /"
fi >>"$STUB_LOG"
"#,
    ),
    (
        "systemctl",
        r#"#!/bin/sh
echo "systemctl $*" >>"$STUB_LOG"
case $1 in
is-enabled) [ -e "$STUB_STATE/enabled-$3" ] ;;
is-active) [ -e "$STUB_STATE/active-$3" ] ;;
enable) touch "$STUB_STATE/enabled-$2" ;;
start) touch "$STUB_STATE/active-$3" ;;
daemon-reload | try-restart) : ;;
*) echo "systemctl stub: unexpected $*" >&2; exit 1 ;;
esac
"#,
    ),
    (
        "mountpoint",
        r#"#!/bin/sh
[ "$1" = -q ] || exit 2
grep -qxF -- "$2" "$STUB_STATE/mounted" 2>/dev/null
"#,
    ),
    (
        "mount",
        r#"#!/bin/sh
echo "mount $*" >>"$STUB_LOG"
echo "$1" >>"$STUB_STATE/mounted"
"#,
    ),
    (
        "umount",
        r#"#!/bin/sh
echo "umount $*" >>"$STUB_LOG"
"#,
    ),
    (
        "chown",
        r#"#!/bin/sh
# Users other than root exist only once STUB_USERS_EXIST is set (cloud-init
# creates them after bootcmd).
echo "chown $*" >>"$STUB_LOG"
case $1 in
root:root | 0:0) exit 0 ;;
*) [ -n "${STUB_USERS_EXIST:-}" ] ;;
esac
"#,
    ),
];

/// A node's card and root filesystem in a temporary directory.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    seed: PathBuf,
    bin: PathBuf,
    state: PathBuf,
    log: PathBuf,
    node: String,
}

impl Sandbox {
    /// The card's seed with `slot` in the slot file; the root as cloud-init
    /// leaves it after write_files; every data disk present unless in `missing`.
    fn new(r: &Rendered, inv: &Inventory, slot: &[u8], missing: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let seed = tmp.path().join("seed");
        let bin = tmp.path().join("bin");
        let state = tmp.path().join("stub-state");
        for d in [&root, &seed, &bin, &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        for (path, bytes) in &r.seed {
            put(&seed.join(path), bytes, 0o644);
        }
        put(&seed.join(SLOT_FILE), slot, 0o755);
        for (path, (perm, _owner, content)) in write_files(&r.seed[paths::SEED_USER_DATA]) {
            put(
                &root.join(path.trim_start_matches('/')),
                content.as_bytes(),
                u32::from_str_radix(&perm, 8).unwrap(),
            );
        }
        // The image's fstab, without a final newline.
        put(
            &root.join("etc/fstab"),
            b"LABEL=writable\t/\text4\tdefaults\t0 1",
            0o644,
        );
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(root.join("var/tmp")).unwrap();
        for d in &inv.nodes[&r.node].disks {
            if !missing.contains(&d.mount.as_str()) {
                put(&root.join("dev/disk/by-uuid").join(&d.uuid), b"", 0o644);
            }
        }
        for (name, body) in STUBS {
            put(&bin.join(name), body.as_bytes(), 0o755);
        }
        let log = tmp.path().join("stub.log");
        std::fs::write(&log, "").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            seed,
            bin,
            state,
            log,
            node: r.node.clone(),
        }
    }

    fn command(&self, script: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg(script)
            .env("METIS_ROOT", &self.root)
            .env(
                "PATH",
                format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("STUB_LOG", &self.log)
            .env("STUB_STATE", &self.state)
            .env("METIS_DISK_WAIT", "0");
        c
    }

    fn secrets_phase(&self) -> Output {
        let script = self.seed.join(paths::SEED_SECRETS_PHASE);
        run(self.command(&script).arg(&self.seed).arg(&self.node))
    }

    fn k3s_phase(&self, users_exist: bool) -> Output {
        let script = self.root.join(paths::K3S_PHASE.trim_start_matches('/'));
        let mut c = self.command(&script);
        if users_exist {
            c.env("STUB_USERS_EXIST", "1");
        }
        run(&mut c)
    }

    /// Every file of the root and the seed: path → (mode, size, sha256, mtime).
    fn snapshot(&self) -> BTreeMap<PathBuf, (u32, u64, String, i64, i64)> {
        let mut out = BTreeMap::new();
        for top in [&self.root, &self.seed] {
            walk(top, &mut |p| {
                let m = std::fs::symlink_metadata(p).unwrap();
                let hash = if m.is_file() {
                    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
                } else {
                    String::new()
                };
                out.insert(
                    p.to_path_buf(),
                    (m.mode(), m.len(), hash, m.mtime(), m.mtime_nsec()),
                );
            });
        }
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.file(paths::STATUS)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bootstrap.json: {e}\n{text}"))
    }
}

fn put(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    f(dir);
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, f);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Fails if any secret value appears in the phase's output or the stub log.
fn assert_no_secret_printed(secrets: &[String], outputs: &[&Output], log: &str) {
    for s in secrets {
        for o in outputs {
            assert!(
                !text(o).contains(s.as_str()),
                "secret printed:\n{}",
                text(o)
            );
        }
        assert!(!log.contains(s.as_str()), "secret logged:\n{log}");
    }
}

#[test]
fn secrets_phase_installs_zeroes_the_slot_and_is_idempotent() {
    for (inv, name, _keep) in every_node() {
        let node = &inv.nodes[&name];
        let r = render::render(&inv, &name).unwrap();
        let secrets = secrets(&inv, &name);
        let values = secret_values(&secrets);
        let slot = render::bundle(&inv, &name, &secrets).unwrap();
        let sb = Sandbox::new(&r, &inv, &slot, &[]);

        let first = sb.secrets_phase();
        assert!(first.status.success(), "{name}: {}", text(&first));

        // Host keys: private 0600, public 0644, exactly the bundle's.
        for k in &secrets.ssh_host_keys {
            let private = sb.file(&paths::ssh_host_key(k.key_type.as_str()));
            assert_eq!(mode(&private), 0o600, "{name}: {}", private.display());
            assert_eq!(std::fs::read_to_string(&private).unwrap(), *k.private_pem);
            let public = private.with_extension("pub");
            assert_eq!(mode(&public), 0o644);
            assert_eq!(
                std::fs::read_to_string(&public).unwrap(),
                format!("{}\n", k.public)
            );
        }
        let k3s_files = [
            (
                paths::NODE_PASSWORD,
                secrets.node_password.as_ref().unwrap(),
            ),
            (paths::K3S_TOKEN, secrets.k3s_token.as_ref().unwrap()),
        ];
        for (path, value) in k3s_files {
            let p = sb.file(path);
            if node.role == Role::None {
                assert!(!p.exists(), "{name}: role none gets no {path}");
            } else {
                assert_eq!(mode(&p), 0o600, "{name}: {path}");
                assert_eq!(
                    std::fs::read_to_string(&p).unwrap(),
                    format!("{}\n", **value)
                );
            }
        }
        let registries = sb.file(paths::REGISTRIES);
        if inv.lab.registry.host.starts_with("oci:") || node.role == Role::None {
            assert!(!registries.exists());
        } else {
            assert_eq!(mode(&registries), 0o600);
            let reg = yaml(&std::fs::read(&registries).unwrap());
            let host = inv.lab.registry.host.as_str();
            assert_eq!(
                reg["mirrors"][host]["endpoint"][0],
                format!("https://{host}")
            );
            let auth = secrets.registry_auth.as_ref().unwrap();
            assert_eq!(
                reg["configs"][host]["auth"]["username"],
                auth.username.as_str()
            );
            assert_eq!(
                reg["configs"][host]["auth"]["password"],
                auth.password.as_str()
            );
            assert_eq!(reg["configs"][host]["tls"]["ca_file"], paths::REGISTRY_CA);
        }
        for hf in &node.hooks.files {
            if let metis_core::inventory::HookFileSource::Secret(key) = &hf.source {
                let p = sb.file(&hf.path);
                assert_eq!(mode(&p), u32::from_str_radix(&hf.mode, 8).unwrap());
                assert_eq!(std::fs::read(&p).unwrap(), *secrets.extra[key]);
            }
        }

        // The slot: zeroed in place, same size; the staging area is gone.
        let slot_file = sb.seed.join(SLOT_FILE);
        let after = std::fs::read(&slot_file).unwrap();
        assert_eq!(after.len() as u64, SLOT_SIZE);
        assert!(after.iter().all(|b| *b == 0), "{name}: slot not zeroed");
        let run_dir = sb.file("/run/metis");
        let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(
            leftovers.is_empty(),
            "{name}: staging left behind: {leftovers:?}"
        );
        let log = sb.log();
        assert!(
            log.contains("logger[metis-bootstrap user.info] secrets phase: installed"),
            "{log}"
        );

        // Second boot: the slot is empty; nothing changes.
        let before = sb.snapshot();
        let second = sb.secrets_phase();
        assert!(second.status.success(), "{name}: {}", text(&second));
        assert_eq!(before, sb.snapshot(), "{name}: second run changed files");
        assert!(sb
            .log()
            .contains("secrets slot is empty; nothing to install"));
        assert_no_secret_printed(&values, &[&first, &second], &sb.log());
    }
}

#[test]
fn k3s_phase_starts_k3s_in_its_role_and_is_idempotent() {
    for (inv, name, _keep) in every_node() {
        let node = &inv.nodes[&name];
        let r = render::render(&inv, &name).unwrap();
        let secrets = secrets(&inv, &name);
        let slot = render::bundle(&inv, &name, &secrets).unwrap();
        let sb = Sandbox::new(&r, &inv, &slot, &[]);
        let boot = sb.secrets_phase();
        assert!(boot.status.success(), "{name}: {}", text(&boot));
        std::fs::write(&sb.log, "").unwrap();

        let first = sb.k3s_phase(true);
        assert!(first.status.success(), "{name}: {}", text(&first));
        let log1 = sb.log();
        let unit = match node.role {
            Role::Server => Some("k3s.service"),
            Role::Agent => Some("k3s-agent.service"),
            Role::None => None,
        };
        match unit {
            Some(unit) => {
                assert!(
                    log1.contains(&format!("systemctl enable {unit}\n")),
                    "{name}: {log1}"
                );
                assert!(
                    log1.contains(&format!("systemctl start --no-block {unit}\n")),
                    "{log1}"
                );
                let other = if unit == "k3s.service" {
                    "k3s-agent.service"
                } else {
                    "k3s.service"
                };
                assert!(!log1.contains(other), "{name}: wrong role: {log1}");
            }
            None => assert!(
                !log1.contains("k3s.service") && !log1.contains("k3s-agent.service"),
                "{name}: role none touched k3s: {log1}"
            ),
        }
        assert!(!log1.contains("curl") && !log1.contains("install.sh"));

        // fstab: the image's line intact, each disk once; mount points exist.
        let fstab = std::fs::read_to_string(sb.file("/etc/fstab")).unwrap();
        if node.disks.is_empty() {
            assert_eq!(fstab, "LABEL=writable\t/\text4\tdefaults\t0 1", "untouched");
        } else {
            assert!(
                fstab.starts_with("LABEL=writable\t/\text4\tdefaults\t0 1\nUUID="),
                "{fstab}"
            );
        }
        for d in &node.disks {
            assert_eq!(
                fstab
                    .matches(&format!("UUID={} {} ", d.uuid, d.mount))
                    .count(),
                1,
                "{fstab}"
            );
            assert!(sb.file(&d.mount).is_dir());
            assert!(
                log1.contains(&format!("mount {}\n", sb.file(&d.mount).display())),
                "{log1}"
            );
        }

        // Hooks ran, in order.
        let hooks: Vec<&str> = log1
            .lines()
            .filter_map(|l| l.strip_prefix("logger[metis-bootstrap user.info] k3s phase: hook "))
            .collect();
        let want: Vec<String> = (1..=node.hooks.commands.len())
            .map(|i| format!("{i:03} done"))
            .collect();
        assert_eq!(hooks, want, "{name}: {log1}");

        let status = sb.status();
        assert_eq!(status["ok"], true, "{name}: {status}");
        assert_eq!(status["node"], name.as_str());
        assert_eq!(status["role"], node.role.to_string());
        assert_eq!(status["secrets"], "installed");
        assert_eq!(status["k3s"]["unit"], unit.unwrap_or(""));
        assert_eq!(
            status["k3s"]["state"],
            if unit.is_some() { "enabled" } else { "none" }
        );
        assert_eq!(status["disks"].as_array().unwrap().len(), node.disks.len());
        for (s, d) in status["disks"].as_array().unwrap().iter().zip(&node.disks) {
            assert_eq!(s["state"], "mounted");
            assert_eq!(s["longhorn"], d.longhorn);
        }
        assert_eq!(status["failed"], serde_json::json!([]));
        assert!(!sb.file("/etc/motd.d/50-metis-bootstrap").exists());
        assert!(!sb.file("/var/lib/metis/pending-owners").exists(), "{name}");

        // Second run: exit 0, no file changes, no actions.
        let before = sb.snapshot();
        std::fs::write(&sb.log, "").unwrap();
        let second = sb.k3s_phase(true);
        assert!(second.status.success(), "{name}: {}", text(&second));
        assert_eq!(before, sb.snapshot(), "{name}: second run changed files");
        let log2 = sb.log();
        for action in [
            "systemctl enable",
            "systemctl start",
            "daemon-reload",
            "try-restart",
            "mount ",
            "hook 0",
        ] {
            assert!(
                !log2.contains(action),
                "{name}: second run did `{action}`:\n{log2}"
            );
        }
        assert_no_secret_printed(&secret_values(&secrets), &[&first, &second], &log2);
    }
}

#[test]
fn variant_hooks_run_once_and_deferred_owners_are_applied() {
    let (_tmp, inv) = variant();
    let r = render::render(&inv, VARIANT_NODE).unwrap();
    let slot = render::bundle(&inv, VARIANT_NODE, &secrets(&inv, VARIANT_NODE)).unwrap();
    let sb = Sandbox::new(&r, &inv, &slot, &[]);
    assert!(sb.secrets_phase().status.success());
    // ops does not exist yet at bootcmd time: the owner is deferred.
    let pending = std::fs::read_to_string(sb.file("/var/lib/metis/pending-owners")).unwrap();
    assert_eq!(pending, "ops:ops /etc/lab/api-key\n");
    assert_eq!(mode(&sb.file("/etc/lab/api-key")), 0o600);
    let k3s = sb.k3s_phase(true);
    assert!(k3s.status.success(), "{}", text(&k3s));
    assert!(sb.log().contains("chown ops:ops "), "{}", sb.log());
    assert!(!sb.file("/var/lib/metis/pending-owners").exists());
    assert_eq!(
        std::fs::read_to_string(sb.file("/var/tmp/hook-1")).unwrap(),
        "hook one\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.file("/var/tmp/hook-2")).unwrap(),
        "also two\n"
    );
    assert!(
        sb.log().contains("] hook two\n"),
        "hook output goes to the journal"
    );
    // A hook that already succeeded is not run again, even if its effect is gone.
    std::fs::remove_file(sb.file("/var/tmp/hook-1")).unwrap();
    assert!(sb.k3s_phase(true).status.success());
    assert!(!sb.file("/var/tmp/hook-1").exists());
}

#[test]
fn a_missing_longhorn_disk_blocks_k3s_loudly_until_it_is_back() {
    let inv = example();
    let name = "titan-13";
    let r = render::render(&inv, name).unwrap();
    let slot = render::bundle(&inv, name, &secrets(&inv, name)).unwrap();
    let sb = Sandbox::new(&r, &inv, &slot, &["/var/lib/longhorn"]);
    assert!(sb.secrets_phase().status.success());

    let first = sb.k3s_phase(true);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("/var/lib/longhorn is missing"), "{stderr}");
    let log = sb.log();
    assert!(
        log.contains("logger[metis-bootstrap user.err] k3s phase: disk UUID="),
        "{log}"
    );
    assert!(
        !log.contains("systemctl enable") && !log.contains("systemctl start"),
        "{log}"
    );
    let status = sb.status();
    assert_eq!(status["ok"], false);
    assert_eq!(status["disks"][0]["state"], "missing");
    assert_eq!(status["k3s"]["state"], "blocked");
    assert_eq!(status["failed"].as_array().unwrap().len(), 2, "{status}");
    let motd = std::fs::read_to_string(sb.file("/etc/motd.d/50-metis-bootstrap")).unwrap();
    assert!(
        motd.contains("/var/lib/longhorn") && motd.contains("k3s-phase.sh"),
        "{motd}"
    );
    // The mount point exists (empty) so the fstab entry is valid, but k3s
    // cannot start into it: the unit drop-in requires the mount.
    assert!(sb.file("/var/lib/longhorn").is_dir());

    // Still missing: same result, nothing changes.
    let before = sb.snapshot();
    let second = sb.k3s_phase(true);
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(before, sb.snapshot());

    // The disk is back: a rerun mounts it, starts k3s and clears the message.
    put(
        &sb.file("/dev/disk/by-uuid/6b1f0c3e-93a2-4d7e-9c11-000000000013"),
        b"",
        0o644,
    );
    let third = sb.k3s_phase(true);
    assert!(third.status.success(), "{}", text(&third));
    assert!(sb.log().contains("systemctl enable k3s-agent.service"));
    assert_eq!(sb.status()["ok"], true);
    assert!(!sb.file("/etc/motd.d/50-metis-bootstrap").exists());
}

#[test]
fn an_empty_slot_installs_nothing_and_k3s_waits_for_its_token() {
    let inv = example();
    let name = "titan-04";
    let r = render::render(&inv, name).unwrap();
    let sb = Sandbox::new(&r, &inv, &vec![0u8; SLOT_SIZE as usize], &[]);
    let before = sb.snapshot();
    let out = sb.secrets_phase();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(before, sb.snapshot(), "an empty slot changes nothing");

    let k3s = sb.k3s_phase(true);
    assert_eq!(k3s.status.code(), Some(1));
    let status = sb.status();
    assert_eq!(status["secrets"], "absent");
    assert_eq!(status["k3s"]["state"], "blocked");
    assert!(
        status["failed"][0]
            .as_str()
            .unwrap()
            .contains("no join token"),
        "{status}"
    );
    assert!(!sb.log().contains("systemctl enable"));
}

#[test]
fn a_bundle_for_another_node_is_refused_and_left_in_place() {
    let inv = example();
    let r = render::render(&inv, "titan-13").unwrap();
    let other = render::bundle(&inv, "titan-15", &secrets(&inv, "titan-15")).unwrap();
    let sb = Sandbox::new(&r, &inv, &other, &[]);
    let out = sb.secrets_phase();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is for node 'titan-15', not 'titan-13'"));
    assert_eq!(
        std::fs::read(sb.seed.join(SLOT_FILE)).unwrap(),
        *other,
        "slot untouched"
    );
    assert!(!sb.file(&paths::ssh_host_key("ed25519")).exists());
    assert!(!sb.file(paths::K3S_TOKEN).exists());
}

#[test]
fn an_unknown_bundle_format_is_refused_and_left_in_place() {
    let inv = example();
    let r = render::render(&inv, "titan-13").unwrap();
    let mut slot = render::bundle(&inv, "titan-13", &secrets(&inv, "titan-13")).unwrap();
    // The manifest is the first member; its data starts at 512.
    assert_eq!(&slot[512..526], b"metis-bundle 1");
    slot[525] = b'9';
    let sb = Sandbox::new(&r, &inv, &slot, &[]);
    let out = sb.secrets_phase();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format 9 is not 1"));
    assert_eq!(std::fs::read(sb.seed.join(SLOT_FILE)).unwrap(), *slot);
}

/// The bootcmd glue as rendered: it finds the seed partition (here a stub
/// `findmnt` reports it already mounted, as on Ubuntu) and runs the secrets
/// phase from it with the node's name; without a seed it fails loudly.
#[test]
fn bootcmd_runs_the_secrets_phase_from_the_seed_partition() {
    let inv = example();
    let name = "titan-04";
    let r = render::render(&inv, name).unwrap();
    let slot = render::bundle(&inv, name, &secrets(&inv, name)).unwrap();
    let sb = Sandbox::new(&r, &inv, &slot, &[]);
    let v = yaml(&r.seed[paths::SEED_USER_DATA]);
    let script = sb._tmp.path().join("bootcmd.sh");
    put(&script, v["bootcmd"][0].as_str().unwrap().as_bytes(), 0o644);
    put(
        &sb.bin.join("findmnt"),
        b"#!/bin/sh\necho \"findmnt $*\" >>\"$STUB_LOG\"\n[ -z \"${STUB_SEED:-}\" ] || echo \"$STUB_SEED\"\n",
        0o755,
    );

    let found = run(sb.command(&script).env("STUB_SEED", &sb.seed));
    assert!(found.status.success(), "{}", text(&found));
    assert!(
        sb.log()
            .contains("findmnt -nro TARGET --source /dev/disk/by-label/system-boot\n"),
        "{}",
        sb.log()
    );
    assert!(sb.file(paths::K3S_TOKEN).exists(), "secrets installed");
    assert!(std::fs::read(sb.seed.join(SLOT_FILE))
        .unwrap()
        .iter()
        .all(|b| *b == 0));

    // No seed partition (wrong label, say): exit 1, said on stderr and in the journal.
    let lost = run(&mut sb.command(&script));
    assert_eq!(lost.status.code(), Some(1), "{}", text(&lost));
    assert!(String::from_utf8_lossy(&lost.stderr)
        .contains("seed partition /dev/disk/by-label/system-boot not found"));
    assert!(sb
        .log()
        .contains("logger[metis-bootstrap user.err] secrets phase: seed partition"));
}
