//! Inventory loading and validation, on the example lab and on broken copies of it.
//!
//! Each bad case is one fixture: a copy of `inventory/` with one edit, the
//! file:line the finding must point at, and the words it must say.

use std::path::{Path, PathBuf};

use metis_core::inventory::{self, Diagnostic, Role, Severity};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory")
}

/// Copies the example inventory (YAML files and demo public keys) into a temp dir.
fn copy_example() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&example(), tmp.path());
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let name = e.file_name();
        if name == "golden" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name));
        } else {
            std::fs::copy(&p, to.join(&name)).unwrap();
        }
    }
}

/// The example's golden stand-ins (`tests/golden/gen.sh`), made once and kept
/// under the target directory while `EXPECTED_SHA256` still pins them.
fn stand_ins() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-stand-ins");
        let sums = |p: &Path| {
            let mut lines: Vec<String> = std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        let expected = sums(&example().join("../tests/golden/EXPECTED_SHA256"));
        if sums(&dir.join("SHA256SUMS")) != expected {
            let gen = example().join("../tests/golden/gen.sh");
            let out = std::process::Command::new("sh")
                .arg(&gen)
                .arg(&dir)
                .output()
                .expect("running tests/golden/gen.sh");
            assert!(
                out.status.success(),
                "tests/golden/gen.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// Copies the example inventory with its golden images (hard links to
/// [`stand_ins`]) into a temp dir: the example as `check` sees it after
/// `tests/golden/gen.sh`.
fn copy_example_with_golden() -> tempfile::TempDir {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    copy_dir(&example(), tmp.path());
    std::fs::create_dir(tmp.path().join("golden")).unwrap();
    for name in ["rpi-ubuntu.img", "armbian.img", "amd64.img"] {
        std::fs::hard_link(stand_ins().join(name), tmp.path().join("golden").join(name)).unwrap();
    }
    tmp
}

/// Replaces the first `from` in `file` with `to` (panics if absent, so a stale fixture fails loudly).
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.contains(from),
        "fixture edit: `{from}` not found in {file}"
    );
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
}

fn errors(dir: &Path) -> Vec<Diagnostic> {
    let checked = metis_core::lab::check(dir);
    checked
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

#[test]
fn example_lab_passes() {
    let dir = copy_example_with_golden();
    let checked = metis_core::lab::check(dir.path());
    let errs: Vec<String> = checked.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        checked.inventory.is_some(),
        "example inventory has errors:\n{}",
        errs.join("\n")
    );
    let inv = checked.inventory.unwrap();
    for name in [
        "titan-13", "titan-15", "titan-17", "titan-19", "titan-23", "tethys", "titan-db",
        "titan-jh", "titan-20", "titan-21",
    ] {
        assert!(inv.nodes.contains_key(name), "example lab lacks {name}");
    }
    for class in [
        "rpi5-ubuntu",
        "rpi4-armbian-longhorn",
        "rpi4-armbian-std",
        "control-plane",
        "amd64-agents",
        "external",
    ] {
        assert!(
            inv.classes.contains_key(class),
            "example lab lacks class {class}"
        );
        assert!(
            inv.nodes.values().any(|n| n.class == class),
            "no node in class {class}"
        );
    }
    let servers = inv
        .nodes
        .values()
        .filter(|n| n.role == Role::Server)
        .count();
    assert_eq!(servers, 3, "three control-plane servers");
    assert!(
        inv.nodes.values().any(|n| n.role == Role::None),
        "one external host"
    );
    for n in ["titan-13", "titan-15", "titan-17", "titan-19", "titan-23"] {
        let node = &inv.nodes[n];
        assert!(
            node.disks.iter().any(|d| d.longhorn),
            "{n} has its Longhorn disk"
        );
    }
}

#[test]
fn defaults_merge_lab_then_class_then_node() {
    let dir = copy_example();
    edit(
        dir.path(),
        "nodes/titan-0a.yaml",
        "k3s:",
        "overrides:\n  journald:\n    max_retention: 2week\nk3s:",
    );
    let inv = metis_core::lab::load(dir.path()).unwrap();
    let a = &inv.nodes["titan-0a"].settings;
    // node override
    assert_eq!(a.journald.max_retention, "2week");
    // class default (control-plane: 1G) beats lab default (500M)
    assert_eq!(a.journald.system_max_use, "1G");
    // lab default where neither class nor node says anything
    assert_eq!(a.journald.system_keep_free, "1G");
    assert_eq!(a.kubelet.image_gc_high_threshold, 80);
    assert_eq!(a.kubelet.image_gc_low_threshold, 60);
    assert_eq!(a.kubelet.container_log_max_files, 3);
    // a node of another class keeps the lab defaults
    let w = &inv.nodes["titan-04"].settings;
    assert_eq!(w.journald.system_max_use, "500M");
    assert_eq!(w.kubelet.image_gc_high_threshold, 85);
    // per-interface DNS falls back to the lab's
    assert_eq!(
        inv.nodes["titan-04"].interfaces[0].dns,
        vec!["192.168.22.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(inv.nodes["titan-04"].fqdn, "titan-04.lab.home.arpa");
    assert_eq!(inv.nodes["titan-13"].settings.disk_timeout_sec, 90);
}

struct Case {
    name: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    /// Where the finding must point: `file:line`.
    at: &'static str,
    /// Words the message (or hint) must contain.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "yaml syntax", file: "nodes/titan-04.yaml", from: "addresses: [192.168.22.20/24]", to: "addresses: [192.168.22.20/24", at: "nodes/titan-04.yaml:7", says: "" },
    Case { name: "unknown key with suggestion", file: "nodes/titan-04.yaml", from: "gateway:", to: "gatway:", at: "nodes/titan-04.yaml:7", says: "did you mean `gateway`" },
    Case { name: "unknown top-level key", file: "metis.yaml", from: "cluster:", to: "clustr:", at: "metis.yaml:15", says: "unknown key `clustr`" },
    Case { name: "missing field", file: "nodes/titan-04.yaml", from: "class: rpi5-ubuntu\n", to: "", at: "nodes/titan-04.yaml:1", says: "missing required key `class`" },
    Case { name: "missing field of an item", file: "nodes/titan-04.yaml", from: "      mac: \"2c:cf:67:00:00:04\"\n", to: "", at: "nodes/titan-04.yaml:4", says: "missing required key `mac`" },
    Case { name: "missing field of a nested mapping", file: "nodes/titan-04.yaml", from: "  role: agent\n", to: "", at: "nodes/titan-04.yaml:8", says: "missing required key `role`" },
    Case { name: "bad MAC", file: "nodes/titan-04.yaml", from: "2c:cf:67:00:00:04", to: "2c:cf:67:00:00", at: "nodes/titan-04.yaml:5", says: "not a MAC address" },
    Case { name: "bad CIDR", file: "nodes/titan-04.yaml", from: "192.168.22.20/24", to: "192.168.22.20", at: "nodes/titan-04.yaml:6", says: "no prefix length" },
    Case { name: "bad IP", file: "nodes/titan-04.yaml", from: "192.168.22.20/24", to: "192.168.322.20/24", at: "nodes/titan-04.yaml:6", says: "not a valid address" },
    Case { name: "gateway outside subnet", file: "nodes/titan-04.yaml", from: "gateway: 192.168.22.1", to: "gateway: 192.168.23.1", at: "nodes/titan-04.yaml:7", says: "not in the subnet" },
    Case { name: "duplicate IP", file: "nodes/titan-05.yaml", from: "192.168.22.21/24", to: "192.168.22.20/24", at: "nodes/titan-05.yaml:6", says: "also used by nodes/titan-04.yaml:6" },
    Case { name: "duplicate MAC", file: "nodes/titan-05.yaml", from: "2c:cf:67:00:00:05", to: "2C:CF:67:00:00:04", at: "nodes/titan-05.yaml:5", says: "MAC address `2c:cf:67:00:00:04` is also used by nodes/titan-04.yaml" },
    Case { name: "duplicate hostname", file: "nodes/titan-05.yaml", from: "class: rpi5-ubuntu", to: "class: rpi5-ubuntu\nhostname: titan-04", at: "nodes/titan-05.yaml:2", says: "hostname `titan-04` is also used by nodes/titan-04.yaml" },
    Case { name: "unknown class", file: "nodes/titan-04.yaml", from: "class: rpi5-ubuntu", to: "class: rpi5-ubunto", at: "nodes/titan-04.yaml:1", says: "did you mean `rpi5-ubuntu`" },
    Case { name: "bad label syntax", file: "nodes/titan-04.yaml", from: "lab.home.arpa/board=rpi5", to: "lab.home.arpa/board=rpi 5", at: "nodes/titan-04.yaml:11", says: "label value" },
    Case { name: "label kubelet refuses", file: "nodes/titan-04.yaml", from: "lab.home.arpa/board=rpi5", to: "node-role.kubernetes.io/worker=true", at: "nodes/titan-04.yaml:11", says: "kubelet refuses" },
    Case { name: "bad taint effect", file: "nodes/titan-db.yaml", from: "dedicated=database:NoSchedule", to: "dedicated=database:NoScheduled", at: "nodes/titan-db.yaml:14", says: "did you mean `NoSchedule`" },
    Case { name: "taint without effect", file: "nodes/titan-db.yaml", from: "dedicated=database:NoSchedule", to: "dedicated=database", at: "nodes/titan-db.yaml:14", says: "has no effect" },
    Case { name: "taint on role none", file: "nodes/atlas.yaml", from: "role: none", to: "role: none\n  taints: [x=y:NoSchedule]", at: "nodes/atlas.yaml:11", says: "role `none`" },
    Case { name: "server on class without k3s", file: "nodes/atlas.yaml", from: "role: none", to: "role: server", at: "nodes/atlas.yaml:10", says: "does not carry k3s" },
    Case { name: "server joining itself", file: "metis.yaml", from: "https://192.168.22.10:6443", to: "https://192.168.22.11:6443", at: "nodes/titan-0a.yaml:9", says: "would join itself" },
    Case { name: "longhorn disk without uuid", file: "nodes/titan-13.yaml", from: "  - uuid: 6b1f0c3e-93a2-4d7e-9c11-000000000013\n    mount:", to: "  - mount:", at: "nodes/titan-13.yaml:14", says: "Longhorn disk has no `uuid`" },
    Case { name: "disk without mount", file: "nodes/titan-13.yaml", from: "    mount: /var/lib/longhorn\n", to: "", at: "nodes/titan-13.yaml:14", says: "no `mount` point" },
    Case { name: "duplicate mount points", file: "nodes/titan-23.yaml", from: "options: [noatime]", to: "options: [noatime]\n  - uuid: 0c4d2b8e-5f3a-4b6c-8d9e-0000000000b3\n    mount: /var/lib/longhorn", at: "nodes/titan-23.yaml:22", says: "used twice" },
    Case { name: "bad disk uuid", file: "nodes/titan-13.yaml", from: "6b1f0c3e-93a2-4d7e-9c11-000000000013", to: "sda1", at: "nodes/titan-13.yaml:14", says: "not a filesystem UUID" },
    Case { name: "unknown role", file: "nodes/titan-04.yaml", from: "role: agent", to: "role: agnet", at: "nodes/titan-04.yaml:9", says: "did you mean `agent`" },
    Case { name: "bad k3s version", file: "metis.yaml", from: "v1.32.4+k3s1", to: "1.32", at: "metis.yaml:20", says: "not a k3s version" },
    Case { name: "golden not pinned", file: "classes/rpi5-ubuntu.yaml", from: "sha256: 1314", to: "sha256: zz14", at: "classes/rpi5-ubuntu.yaml:8", says: "not a SHA-256" },
    Case { name: "unknown architecture", file: "classes/rpi5-ubuntu.yaml", from: "architecture: arm64", to: "architecture: aarch64", at: "classes/rpi5-ubuntu.yaml:2", says: "unknown architecture" },
    Case { name: "bad operator recipient", file: "metis.yaml", from: "recipients:\n    - age1", to: "recipients:\n    - agex", at: "metis.yaml:12", says: "not an age recipient" },
    Case { name: "seed by label and gpt_name", file: "classes/amd64-agents.yaml", from: "  label: CIDATA", to: "  label: CIDATA\n  gpt_name: cidata", at: "classes/amd64-agents.yaml:9", says: "both a label and a gpt_name" },
    Case { name: "seed names no partition", file: "classes/amd64-agents.yaml", from: "  label: CIDATA", to: "  filesystem: vfat", at: "classes/amd64-agents.yaml", says: "neither `label` nor `gpt_name`" },
    Case { name: "empty seed gpt_name", file: "classes/amd64-agents.yaml", from: "  label: CIDATA", to: "  gpt_name: \"\"", at: "classes/amd64-agents.yaml:8", says: "seed gpt_name is empty" },
    Case { name: "root by label and gpt_name", file: "classes/amd64-agents.yaml", from: "  label: rootfs", to: "  label: rootfs\n  gpt_name: rootfs", at: "classes/amd64-agents.yaml:11", says: "the root names both a label and a gpt_name" },
    Case { name: "root names no partition", file: "classes/amd64-agents.yaml", from: "root:\n  label: rootfs", to: "root: {}", at: "classes/amd64-agents.yaml", says: "the root names no partition" },
    Case { name: "empty root label", file: "classes/amd64-agents.yaml", from: "  label: rootfs", to: "  label: \"\"", at: "classes/amd64-agents.yaml:10", says: "root label is empty" },
    Case { name: "metis-owned k3s key", file: "classes/amd64-agents.yaml", from: "defaults:", to: "defaults:\n  k3s_config:\n    cluster-init: \"true\"", at: "classes/amd64-agents.yaml:13", says: "may not set `cluster-init`" },
    Case { name: "bad journald size", file: "metis.yaml", from: "system_max_use: 500M", to: "system_max_use: 500MB", at: "metis.yaml:28", says: "not a size" },
    Case { name: "gc thresholds inverted", file: "nodes/titan-04.yaml", from: "k3s:", to: "overrides:\n  kubelet:\n    image_gc_low_threshold: 90\nk3s:", at: "nodes/titan-04.yaml", says: "must be below the high threshold" },
    Case { name: "duplicate key", file: "nodes/titan-04.yaml", from: "class: rpi5-ubuntu", to: "class: rpi5-ubuntu\nclass: rpi5-ubuntu", at: "nodes/titan-04.yaml:2", says: "appears twice" },
    Case { name: "missing signing key file", file: "metis.yaml", from: "demo-keys/cosign.pub", to: "demo-keys/nope.pub", at: "metis.yaml:9", says: "does not exist" },
    Case { name: "no addresses", file: "nodes/titan-04.yaml", from: "      addresses: [192.168.22.20/24]\n      gateway: 192.168.22.1\n", to: "", at: "nodes/titan-04.yaml:5", says: "no addresses and no `dhcp: true`" },
    Case { name: "mount point with a space", file: "nodes/titan-13.yaml", from: "mount: /var/lib/longhorn", to: "mount: \"/var/lib/long horn\"", at: "nodes/titan-13.yaml:15", says: "contains whitespace or a backslash" },
    Case { name: "mount point with a backslash", file: "nodes/titan-13.yaml", from: "mount: /var/lib/longhorn", to: "mount: /var/lib/long\\horn", at: "nodes/titan-13.yaml:15", says: "contains whitespace or a backslash" },
    Case { name: "mount option with a space", file: "nodes/titan-23.yaml", from: "options: [noatime]", to: "options: [\"noatime, discard\"]", at: "nodes/titan-23.yaml:16", says: "mount option `noatime, discard`" },
    Case { name: "hook file on a path Metis writes", file: "nodes/titan-04.yaml", from: "    - lab.home.arpa/storage=none\n", to: "    - lab.home.arpa/storage=none\nhooks:\n  files:\n    - path: /etc/rancher/k3s//config.yaml\n      content: \"token: x\"\n", at: "nodes/titan-04.yaml:15", says: "would replace a file Metis writes itself" },
    Case { name: "missing registry CA file", file: "metis.yaml", from: "  prefix: metis\n", to: "  prefix: metis\n  ca_file: certs/harbor-ca.pem\n", at: "metis.yaml:7", says: "registry CA file `certs/harbor-ca.pem` does not exist" },
    Case { name: "agent joining itself", file: "metis.yaml", from: "https://192.168.22.10:6443", to: "https://192.168.22.40:6443", at: "nodes/titan-13.yaml:9", says: "agent `titan-13` would join itself" },
    Case { name: "duplicate taint", file: "nodes/titan-db.yaml", from: "    - dedicated=database:NoSchedule", to: "    - dedicated=database:NoSchedule\n    - dedicated=database:NoSchedule", at: "nodes/titan-db.yaml:15", says: "taint key `dedicated` with effect NoSchedule is set twice (also at line 14)" },
    Case { name: "same taint key and effect", file: "nodes/titan-db.yaml", from: "    - dedicated=database:NoSchedule", to: "    - dedicated=database:NoSchedule\n    - dedicated=other:NoSchedule", at: "nodes/titan-db.yaml:15", says: "taint key `dedicated` with effect NoSchedule is set twice (also at line 14)" },
    Case { name: "bad IPv6 address", file: "nodes/titan-04.yaml", from: "addresses: [192.168.22.20/24]", to: "addresses: [192.168.22.20/24, \"fe80::zz/64\"]", at: "nodes/titan-04.yaml:6", says: "`fe80::zz/64` is not a valid address/prefix" },
    Case { name: "gateway6 not IPv6", file: "nodes/titan-04.yaml", from: "gateway: 192.168.22.1", to: "gateway: 192.168.22.1\n      gateway6: 192.168.22.1", at: "nodes/titan-04.yaml:8", says: "`gateway6` must be IPv6" },
    Case { name: "relative mount point", file: "nodes/titan-13.yaml", from: "mount: /var/lib/longhorn", to: "mount: var/lib/longhorn", at: "nodes/titan-13.yaml:15", says: "must be an absolute path" },
    Case { name: "missing k3s section", file: "nodes/titan-04.yaml", from: "k3s:\n  role: agent\n  labels:\n    - lab.home.arpa/board=rpi5\n    - lab.home.arpa/storage=none\n", to: "", at: "nodes/titan-04.yaml:1", says: "no `k3s:` section" },
];

#[test]
fn each_mistake_is_named_with_file_line_and_fix() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = copy_example();
        edit(dir.path(), case.file, case.from, case.to);
        let errs = errors(dir.path());
        let rendered: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        let found = errs.iter().any(|d| {
            let at = if d.line > 0 {
                format!("{}:{}", d.file.display(), d.line)
            } else {
                d.file.display().to_string()
            };
            let text = d.to_string();
            let place_ok = if case.at.contains(':') {
                at == case.at
            } else {
                d.file == Path::new(case.at)
            };
            place_ok && text.contains(case.says)
        });
        if !found {
            failures.push(format!(
                "case `{}`: expected an error at {} saying `{}`, got:\n  {}",
                case.name,
                case.at,
                case.says,
                rendered.join("\n  ")
            ));
        }
        // Nothing of a broken inventory may resolve.
        assert!(
            metis_core::lab::check(dir.path()).inventory.is_none(),
            "case `{}` still loaded",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_errors_of_a_run_are_reported_together() {
    let dir = copy_example();
    edit(dir.path(), "nodes/titan-04.yaml", "gateway:", "gatway:");
    edit(
        dir.path(),
        "nodes/titan-db.yaml",
        ":NoSchedule",
        ":NoScheduled",
    );
    edit(
        dir.path(),
        "nodes/titan-13.yaml",
        "  - uuid: 6b1f0c3e-93a2-4d7e-9c11-000000000013\n    mount:",
        "  - mount:",
    );
    let errs = errors(dir.path());
    let files: Vec<String> = errs.iter().map(|d| d.file.display().to_string()).collect();
    for f in [
        "nodes/titan-04.yaml",
        "nodes/titan-db.yaml",
        "nodes/titan-13.yaml",
    ] {
        assert!(
            files.iter().any(|x| x == f),
            "no error reported for {f}: {files:?}"
        );
    }
}

/// Every finding says how to fix it, in its own hint line: not somewhere in
/// the message, and not a hint that only repeats the message.
#[test]
fn every_finding_has_a_hint() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = copy_example();
        edit(dir.path(), case.file, case.from, case.to);
        for d in metis_core::lab::check(dir.path()).diagnostics {
            let hint = d.hint.as_deref().unwrap_or_default().trim();
            if hint.len() < 10 || hint == d.message {
                failures.push(format!("case `{}`: no hint: {d}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A tiny deterministic PRNG (xorshift) so mutations are reproducible from the seed in a failure.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic_the_loader() {
    let files: Vec<PathBuf> = [
        "metis.yaml",
        "classes/rpi4-armbian-longhorn.yaml",
        "nodes/titan-13.yaml",
        "nodes/titan-0a.yaml",
        "nodes/atlas.yaml",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let junk = [
        ":",
        "- ",
        "  ",
        "\t",
        "{",
        "[",
        "]",
        "\"",
        "'",
        "&a ",
        "*a",
        "!!binary ",
        "~",
        "null",
        "0x",
        "-1",
        "999999999999999999999",
        "é",
        "\u{0}",
        "#",
        "|",
        ">",
        "? ",
        "<<: *a",
    ];
    let dir = copy_example();
    let originals: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(dir.path().join(f)).unwrap())
        .collect();
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let which = rng.below(files.len());
        let mut text: Vec<char> = originals[which].chars().collect();
        for _ in 0..1 + rng.below(3) {
            let pos = rng.below(text.len());
            match rng.below(4) {
                0 => {
                    text.remove(pos.min(text.len().saturating_sub(1)));
                }
                1 => {
                    let j = junk[rng.below(junk.len())];
                    for (k, c) in j.chars().enumerate() {
                        text.insert(pos + k, c);
                    }
                }
                2 => {
                    // drop a whole line
                    let s: String = text.iter().collect();
                    let lines: Vec<&str> = s.lines().collect();
                    let l = rng.below(lines.len());
                    let kept: Vec<&str> = lines
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != l)
                        .map(|(_, x)| *x)
                        .collect();
                    text = (kept.join("\n") + "\n").chars().collect();
                }
                _ => {
                    let other = text[rng.below(text.len())];
                    text[pos] = other;
                }
            }
        }
        let mutated: String = text.into_iter().collect();
        std::fs::write(dir.path().join(&files[which]), &mutated).unwrap();
        let result = std::panic::catch_unwind(|| metis_core::lab::check(dir.path()));
        assert!(
            result.is_ok(),
            "seed {seed}: loader panicked on mutated {}:\n{mutated}",
            files[which].display()
        );
        std::fs::write(dir.path().join(&files[which]), &originals[which]).unwrap();
    }
}

#[test]
fn example_classes_pin_the_generated_stand_ins() {
    // tests/golden/gen.sh is reproducible and its digests are pinned in EXPECTED_SHA256;
    // the example classes must pin the same bytes or the example run would refuse them.
    let expected =
        std::fs::read_to_string(example().join("../tests/golden/EXPECTED_SHA256")).unwrap();
    let inv = metis_core::lab::load(&example()).unwrap();
    for class in inv.classes.values() {
        let inventory::Golden::Path { path, sha256 } = &class.golden else {
            panic!(
                "example class {} should use a generated stand-in",
                class.name
            );
        };
        let file = path.file_name().unwrap().to_str().unwrap();
        let line = expected
            .lines()
            .find(|l| l.ends_with(&format!("  {file}")))
            .unwrap_or_else(|| panic!("{file} is not in EXPECTED_SHA256"));
        assert!(
            line.starts_with(sha256.as_str()),
            "class {} pins {sha256}, gen.sh makes {line}",
            class.name
        );
    }
}

/// A registry block valid as YAML that `metis-flash --inventory` (which reads
/// it line by line) could not read is a warning of check, at its line.
#[test]
fn a_registry_block_the_flasher_cannot_read_warns() {
    let dir = copy_example_with_golden();
    let warnings = |dir: &Path| -> Vec<Diagnostic> {
        metis_core::lab::check(dir)
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Warning && d.message.contains("metis-flash"))
            .collect()
    };
    assert!(
        warnings(dir.path()).is_empty(),
        "the example lab's block is read"
    );
    edit(
        dir.path(),
        "metis.yaml",
        "  host: oci:../out/registry\n  prefix: metis\n",
        "  {host: oci:../out/registry, prefix: metis}\n",
    );
    let checked = metis_core::lab::check(dir.path());
    assert!(
        checked.inventory.is_some(),
        "a warning must not fail the check"
    );
    let found = warnings(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].file, Path::new("metis.yaml"));
    assert_eq!((found[0].line, found[0].column), (5, 3), "{}", found[0]);
}

#[test]
fn demo_keys_warn_outside_test_registries() {
    let dir = copy_example_with_golden();
    edit(
        dir.path(),
        "metis.yaml",
        "host: oci:../out/registry",
        "host: harbor.lab.home.arpa",
    );
    let checked = metis_core::lab::check(dir.path());
    assert!(
        checked.inventory.is_some(),
        "a warning must not fail the check"
    );
    let warning = checked
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Warning)
        .expect("a demo key used with a real registry must warn");
    assert_eq!(warning.file, Path::new("metis.yaml"));
    assert!(warning.message.contains("DEMO signing key"), "{warning}");
    for ok in [
        "oci:/tmp/x",
        "127.0.0.1:5000",
        "localhost:5000",
        "[::1]:5000",
    ] {
        assert!(inventory::is_test_registry(ok), "{ok}");
    }
    assert!(!inventory::is_test_registry("192.168.22.5:443"));
}

#[test]
fn the_demo_key_fingerprint_constant_matches_the_demo_key() {
    let key = metis_core::trust::PublicKey::read(&example().join("demo-keys/cosign.pub")).unwrap();
    assert_eq!(key.fingerprint(), metis_core::trust::DEMO_KEY_FINGERPRINT);
}

/// A fresh clone has no golden images: `check` names each class's `path:`
/// line and what to run, while `load` (nodes, render --out, golden import)
/// still works; with the images in place the same copy passes.
#[test]
fn a_missing_golden_image_is_an_error_of_check_only() {
    let dir = copy_example();
    let errs = errors(dir.path());
    let golden: Vec<&Diagnostic> = errs
        .iter()
        .filter(|d| d.message.contains("golden image"))
        .collect();
    assert_eq!(golden.len(), errs.len(), "only golden errors: {errs:?}");
    // Six classes, three stand-in files; each class is named in its own file.
    assert_eq!(golden.len(), 6, "{errs:?}");
    let amd64 = golden
        .iter()
        .find(|d| d.file == Path::new("classes/amd64-agents.yaml"))
        .expect("amd64-agents is reported");
    assert_eq!((amd64.line, amd64.column), (5, 9), "{amd64}");
    assert!(
        amd64
            .message
            .contains("golden image `golden/amd64.img` of class `amd64-agents` does not exist"),
        "{amd64}"
    );
    let hint = amd64.hint.as_deref().unwrap();
    assert!(hint.contains("tests/golden/gen.sh"), "{hint}");
    assert!(
        hint.contains("metis-build golden import amd64-agents FILE --sha256 HEX --pin"),
        "{hint}"
    );
    assert!(metis_core::lab::check(dir.path()).inventory.is_none());
    assert!(
        metis_core::lab::load(dir.path()).is_ok(),
        "load needs no golden file"
    );
    assert!(metis_core::lab::load_for_sealing(dir.path()).is_ok());

    // A directory where the image should be is named as such.
    std::fs::create_dir_all(dir.path().join("golden/amd64.img")).unwrap();
    let errs = errors(dir.path());
    assert!(
        errs.iter()
            .any(|d| d.file == Path::new("classes/amd64-agents.yaml")
                && d.message.contains("is not a file")),
        "{errs:?}"
    );

    // url: and oci: pins need the network: check does not look for them.
    edit(
        dir.path(),
        "classes/amd64-agents.yaml",
        "path: golden/amd64.img",
        "url: https://images.lab.home.arpa/amd64.img",
    );
    let errs = errors(dir.path());
    assert!(
        !errs
            .iter()
            .any(|d| d.file == Path::new("classes/amd64-agents.yaml")),
        "{errs:?}"
    );

    let with = copy_example_with_golden();
    let checked = metis_core::lab::check(with.path());
    assert!(checked.inventory.is_some(), "{:?}", checked.diagnostics);
}

/// A class may name its seed and its root by GPT partition name (the amd64
/// stand-in's partitions are named `cidata` and `rootfs`): they load as such,
/// the node's bootcmd looks in /dev/disk/by-partlabel, and the image is built
/// with both partitions found by name.
#[test]
fn a_class_may_name_its_seed_and_root_by_gpt_partition_name() {
    use metis_core::layout::PartitionSelector;
    let by_label = copy_example_with_golden();
    let by_name = copy_example_with_golden();
    edit(
        by_name.path(),
        "classes/amd64-agents.yaml",
        "  label: CIDATA",
        "  gpt_name: cidata",
    );
    edit(
        by_name.path(),
        "classes/amd64-agents.yaml",
        "  label: rootfs",
        "  gpt_name: rootfs",
    );
    let inv = metis_core::lab::load(by_name.path()).unwrap();
    let class = &inv.classes["amd64-agents"];
    assert_eq!(
        class.seed.selector,
        PartitionSelector::GptName("cidata".into())
    );
    assert_eq!(class.root, PartitionSelector::GptName("rootfs".into()));
    // The publish plan's input digest hashes a class's serialisation: a root
    // found by label serialises as it did before GPT names existed.
    let by_label_inv = metis_core::lab::load(by_label.path()).unwrap();
    let serialised = |c: &metis_core::inventory::Class| serde_json::to_value(c).unwrap();
    assert_eq!(
        serialised(&by_label_inv.classes["amd64-agents"])["root_label"],
        "rootfs"
    );
    assert_eq!(
        serialised(class)["root_label"],
        serde_json::json!({"gpt_name": "rootfs"})
    );
    let rendered = metis_core::render::render(&inv, "titan-db").unwrap();
    let user_data = String::from_utf8(rendered.seed["user-data"].clone()).unwrap();
    assert!(
        user_data.contains("dev=/dev/disk/by-partlabel/'cidata'")
            && !user_data.contains("by-label"),
        "{user_data}"
    );

    let image = |dir: &Path| {
        let inv = metis_core::lab::load(dir).unwrap();
        let out = dir.join("titan-db.img");
        let img = metis_core::build::node::write_node_image(&inv, "titan-db", &out, None).unwrap();
        (
            img.personalised.seed_partition.clone(),
            img.personalised.root_partition.clone(),
            std::fs::read(&out).unwrap(),
        )
    };
    let (seed_by_name, root_by_name, bytes_by_name) = image(by_name.path());
    let (seed_by_label, root_by_label, bytes_by_label) = image(by_label.path());
    assert_eq!(seed_by_name.gpt_name.as_deref(), Some("cidata"));
    let (root_by_name, root_by_label) = (root_by_name.unwrap(), root_by_label.unwrap());
    assert_eq!(root_by_name.gpt_name.as_deref(), Some("rootfs"));
    assert_eq!(root_by_name.number, root_by_label.number, "another root");
    assert_eq!(
        seed_by_name.number, seed_by_label.number,
        "another partition"
    );
    // The same card but for the seed partition (its user-data names the other path).
    let seed = seed_by_name.start as usize..(seed_by_name.start + seed_by_name.len) as usize;
    assert_eq!(bytes_by_name.len(), bytes_by_label.len());
    assert_eq!(bytes_by_name[..seed.start], bytes_by_label[..seed.start]);
    assert_eq!(bytes_by_name[seed.end..], bytes_by_label[seed.end..]);
    assert_ne!(bytes_by_name[seed.clone()], bytes_by_label[seed]);
}
