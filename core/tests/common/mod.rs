//! Shared by the render tests: the example lab, a variant lab that exercises
//! what the example does not (a real registry with CA and credentials, k3s
//! before 1.32, IPv6, DHCP, secret hook files, two data disks), test secrets
//! made of unique marker strings, and running real tools.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_core::inventory::{self, Inventory};
use metis_core::render::{NodeSecrets, RegistryAuth, SshHostKey, SshKeyType};
use zeroize::Zeroizing;

/// The example lab shipped in `inventory/`.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory")
}

pub fn example() -> Inventory {
    metis_core::lab::load(&example_dir()).expect("the example inventory loads")
}

/// One node per class, the golden-file nodes.
pub const ONE_PER_CLASS: &[&str] = &[
    "titan-04", // rpi5-ubuntu
    "titan-0a", // control-plane (server)
    "titan-12", // rpi4-armbian-std
    "titan-13", // rpi4-armbian-longhorn
    "titan-db", // amd64-agents (taints)
    "atlas",    // external (role none, hooks)
];

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A copy of the example lab in a temporary directory, changed by `edit`.
pub fn copy_example(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inventory");
    copy_dir(&example_dir(), &dir);
    edit(&dir);
    (tmp, dir)
}

/// Replaces `from` (which must occur) with `to` in `file`.
pub fn replace(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// The variant node with everything the example nodes lack.
pub const VARIANT_NODE: &str = "titan-99";

pub const VARIANT_CA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBdemoLabCAforTestsOnly\n-----END CERTIFICATE-----\n";

/// The example lab plus: Harbor with a CA, k3s v1.31 (kubelet flags instead of
/// the drop-in), and node titan-99.
pub fn variant() -> (tempfile::TempDir, Inventory) {
    let (tmp, dir) = copy_example(|dir| {
        let lab = dir.join("metis.yaml");
        replace(
            &lab,
            "host: oci:../out/registry",
            "host: harbor.lab.home.arpa\n  ca_file: lab-ca.pem",
        );
        replace(
            &lab,
            "k3s_version: v1.32.4+k3s1",
            "k3s_version: v1.31.5+k3s1",
        );
        std::fs::write(dir.join("lab-ca.pem"), VARIANT_CA).unwrap();
        std::fs::write(
            dir.join("nodes").join(format!("{VARIANT_NODE}.yaml")),
            r#"class: rpi4-armbian-longhorn
hostname: oceanus-2
network:
  interfaces:
    - name: eth0
      mac: "DC:A6:32:00:00:99"
      addresses: [192.168.22.99/24, "fd00:22::99/64"]
      gateway: 192.168.22.1
      gateway6: "fd00:22::1"
    - name: wlan0
      mac: "dc:a6:32:00:01:99"
      dhcp: true
      dns: [192.168.22.2]
      search: [iot.lab.home.arpa]
k3s:
  role: agent
  labels:
    - lab.home.arpa/board=rpi4
  taints:
    - lab.home.arpa/slow=true:PreferNoSchedule
disks:
  - uuid: 6b1f0c3e-93a2-4d7e-9c11-000000000099
    mount: /var/lib/longhorn
    longhorn: true
  - uuid: 6b1f0c3e-93a2-4d7e-9c11-000000000098
    mount: /srv/backup
    filesystem: xfs
    options: [noatime]
hooks:
  files:
    - path: /etc/lab/api-key
      secret: lab_api_key
      owner: ops:ops
    - path: /etc/lab/banner
      content: |
        oceanus-2, restored by Metis
  commands:
    - echo hook one >"${METIS_ROOT:-}/var/tmp/hook-1"
    - |
      echo hook two
      echo also two >"${METIS_ROOT:-}/var/tmp/hook-2"
overrides:
  disk_timeout_sec: 120
  k3s_config:
    kube-proxy-arg: metrics-bind-address=0.0.0.0
"#,
        )
        .unwrap();
        // `check` wants a sealed source per node; these tests build
        // NodeSecrets directly, so any sealed file will do.
        std::fs::copy(
            dir.join("secrets/titan-13.age"),
            dir.join("secrets").join(format!("{VARIANT_NODE}.age")),
        )
        .unwrap();
    });
    let inv = metis_core::lab::load(&dir).unwrap_or_else(|e| {
        panic!(
            "variant inventory: {e}\n{:#?}",
            metis_core::lab::check(&dir).diagnostics
        )
    });
    (tmp, inv)
}

/// Every node of the example lab, then the variant node, each with its
/// inventory (and the variant's temporary directory, kept alive).
pub fn every_node() -> Vec<(Inventory, String, Option<tempfile::TempDir>)> {
    let inv = example();
    let mut v: Vec<_> = inv
        .nodes
        .keys()
        .map(|n| (inv.clone(), n.clone(), None))
        .collect();
    let (tmp, variant) = variant();
    v.push((variant, VARIANT_NODE.to_string(), Some(tmp)));
    assert_eq!(v.len(), 22, "21 example nodes and the variant");
    v
}

/// A marker no rendered file could contain by chance.
pub fn marker(node: &str, what: &str) -> String {
    format!("MARKER-{what}-{node}-5e3c9a")
}

/// Test secrets for `node`: every value is a marker.
pub fn secrets(inv: &Inventory, node: &str) -> NodeSecrets {
    let mut s = NodeSecrets {
        ssh_host_keys: [SshKeyType::Ed25519, SshKeyType::Ecdsa, SshKeyType::Rsa]
            .into_iter()
            .map(|t| SshHostKey {
                key_type: t,
                private_pem: Zeroizing::new(format!(
                    "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
                    marker(node, &format!("ssh-{}", t.as_str()))
                )),
                public: format!(
                    "{} AAAAPUBLIC{} root@{node}",
                    match t {
                        SshKeyType::Ed25519 => "ssh-ed25519",
                        SshKeyType::Ecdsa => "ecdsa-sha2-nistp256",
                        SshKeyType::Rsa => "ssh-rsa",
                    },
                    t.as_str()
                ),
            })
            .collect(),
        node_password: Some(Zeroizing::new(marker(node, "node-password"))),
        k3s_token: Some(Zeroizing::new(marker(node, "k3s-token"))),
        registry_auth: Some(RegistryAuth {
            username: "robot$metis".into(),
            password: Zeroizing::new(marker(node, "registry-password")),
        }),
        extra: BTreeMap::new(),
    };
    for hf in &inv.nodes[node].hooks.files {
        if let inventory::HookFileSource::Secret(key) = &hf.source {
            s.extra.insert(
                key.clone(),
                Zeroizing::new(format!("{}\n", marker(node, key)).into_bytes()),
            );
        }
    }
    s
}

/// Every secret value of `secrets`, for "appears nowhere" checks.
pub fn secret_values(secrets: &NodeSecrets) -> Vec<String> {
    let mut v: Vec<String> = secrets
        .ssh_host_keys
        .iter()
        .map(|k| k.private_pem.lines().nth(1).unwrap().to_string())
        .collect();
    v.extend(secrets.node_password.iter().map(|p| p.to_string()));
    v.extend(secrets.k3s_token.iter().map(|p| p.to_string()));
    v.extend(secrets.registry_auth.iter().map(|a| a.password.to_string()));
    v.extend(
        secrets
            .extra
            .values()
            .map(|x| String::from_utf8_lossy(x).trim().to_string()),
    );
    v
}

/// Runs a real tool; a missing tool fails the test, naming it.
pub fn run(cmd: &mut Command) -> Output {
    let name = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {name}: {e} (install it; .ci/run does)");
    })
}

/// Runs a real tool and requires success.
pub fn run_ok(cmd: &mut Command) -> Output {
    let name = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{name} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parses YAML (the seed files) into a JSON value.
pub fn yaml(bytes: &[u8]) -> serde_json::Value {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// The `write_files` entries of a user-data: path → (permissions, owner, content).
pub fn write_files(user_data: &[u8]) -> BTreeMap<String, (String, String, String)> {
    let v = yaml(user_data);
    v["write_files"]
        .as_array()
        .expect("write_files is a list")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (
                    f["permissions"].as_str().unwrap().to_string(),
                    f["owner"].as_str().unwrap().to_string(),
                    f["content"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}
