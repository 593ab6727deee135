//! The GitOps pipeline with the real binary: `metis-build plan` and `publish`
//! against a real TLS + password registry on loopback and an `oci:` directory.
//! Only what changed is built; unchanged nodes cost nothing; the index follows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_tests::registry::{TestRegistry, PASSWORD, USER};
use metis_tests::workspace_root;
use serde_json::Value;

struct Lab {
    _dir: tempfile::TempDir,
    inv: PathBuf,
    work: PathBuf,
}

fn lab() -> Lab {
    let dir = tempfile::Builder::new()
        .prefix("metis-publish-")
        .tempdir()
        .unwrap();
    let inv = dir.path().join("inventory");
    metis_tests::copy_example_inventory(&inv);
    metis_tests::golden::generate_standins(&inv.join("golden")).unwrap();
    let work = dir.path().join("work");
    Lab {
        _dir: dir,
        inv,
        work,
    }
}

fn metis_build(lab: &Lab, registry: &[&str], args: &[&str]) -> Output {
    let demo = workspace_root().join("inventory/demo-keys");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-build"));
    cmd.args(args)
        .args(["--inventory", lab.inv.to_str().unwrap()])
        .args(registry)
        .env("PATH", metis_tests::tool::search_path())
        .env("COSIGN_PASSWORD", "demo")
        .env(
            "METIS_AGE_IDENTITY",
            std::fs::read_to_string(demo.join("builder.agekey")).unwrap(),
        )
        .env("METIS_REGISTRY_USERNAME", USER)
        .env("METIS_REGISTRY_PASSWORD", PASSWORD);
    if args[0] == "publish" {
        cmd.args(["--key", demo.join("cosign.key").to_str().unwrap()])
            .args(["--work-dir", lab.work.to_str().unwrap()]);
    }
    cmd.output().unwrap()
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn built(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "built")
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn uploaded(report: &Value) -> u64 {
    report["base_bytes_uploaded"].as_u64().unwrap()
        + report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["uploaded_bytes"].as_u64().unwrap())
            .sum::<u64>()
}

fn edit(path: &Path, from: &str, to: &str) {
    let t = std::fs::read_to_string(path).unwrap();
    assert!(t.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, t.replacen(from, to, 1)).unwrap();
}

#[test]
fn publish_builds_exactly_what_changed_against_a_real_registry() {
    let reg = TestRegistry::start().unwrap();
    let lab = lab();
    let host = format!("{}/lab/metis", reg.host());
    let ca = reg.ca_file();
    let r: &[&str] = &["--registry", &host, "--ca-file", ca.to_str().unwrap()];

    // Full publish: every node, each class base uploaded once.
    let first = json(&metis_build(&lab, r, &["publish", "--json", "--jobs", "2"]));
    assert_eq!(built(&first).len(), 21, "{first:#}");
    assert_eq!(first["index_published"], true);
    let all_bytes = uploaded(&first);

    // Nothing changed: nothing uploaded, no manifest pushed.
    let log_before = reg.log().matches("PUT /v2/").count();
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    assert!(
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["action"] == "skip"),
        "{plan:#}"
    );
    let second = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert!(built(&second).is_empty(), "{second:#}");
    assert_eq!(uploaded(&second), 0);
    assert_eq!(second["index_published"], false);
    assert_eq!(
        reg.log().matches("PUT /v2/").count(),
        log_before,
        "a no-op publish wrote to the registry"
    );

    // One node's label: exactly that node, and far fewer bytes than the full build.
    edit(
        &lab.inv.join("nodes/titan-13.yaml"),
        "lab.home.arpa/board=rpi4",
        "lab.home.arpa/board=rpi4b",
    );
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    let reasons: Vec<&Value> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "build")
        .collect();
    assert_eq!(reasons.len(), 1, "{plan:#}");
    assert_eq!(reasons[0]["reason"], "changed node settings");
    let third = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&third), ["titan-13"]);
    assert_eq!(third["base_bytes_uploaded"], 0);
    assert!(
        uploaded(&third) < 1 << 20 && uploaded(&third) * 10 < all_bytes,
        "one node uploaded {}",
        uploaded(&third)
    );
    assert_eq!(third["revision"], 2);

    // A class default: exactly that class's nodes.
    edit(
        &lab.inv.join("classes/control-plane.yaml"),
        "system_max_use: 1G",
        "system_max_use: 2G",
    );
    let fourth = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&fourth), ["titan-0a", "titan-0b", "titan-0c"]);

    // Add a node, remove one: the index follows; the removed node's artifact stays.
    std::fs::copy(
        lab.inv.join("nodes/titan-21.yaml"),
        lab.inv.join("nodes/titan-22.yaml"),
    )
    .unwrap();
    edit(
        &lab.inv.join("nodes/titan-22.yaml"),
        "00:1b:21:3a:00:64",
        "00:1b:21:3a:00:65",
    );
    edit(
        &lab.inv.join("nodes/titan-22.yaml"),
        "192.168.22.64/24",
        "192.168.22.65/24",
    );
    std::fs::copy(
        lab.inv.join("secrets/titan-21.age"),
        lab.inv.join("secrets/titan-22.age"),
    )
    .unwrap();
    std::fs::remove_file(lab.inv.join("nodes/atlas.yaml")).unwrap();
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    let action = |n: &str| {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .map(|x| x["action"].clone())
    };
    assert_eq!(action("titan-22"), Some("build".into()));
    assert_eq!(action("atlas"), Some("remove".into()));
    let fifth = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&fifth), ["titan-22"]);
    assert_eq!(fifth["index_published"], true);
    let index = read_index(&reg, &ca);
    assert!(index["nodes"].get("titan-22").is_some(), "{index:#}");
    assert!(index["nodes"].get("atlas").is_none(), "{index:#}");
    assert_eq!(index["nodes"]["titan-13"]["revision"], 2);
    assert_eq!(index["nodes"]["titan-22"]["revision"], fifth["revision"]);

    // skopeo, another OCI client, reads a node artifact we pushed.
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--cert-dir",
            reg.cert_dir().to_str().unwrap(),
        ])
        .args(["--creds", &format!("{USER}:{PASSWORD}")])
        .arg(format!(
            "docker://{}/lab/metis/nodes/titan-13:latest",
            reg.host()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["artifactType"], "application/vnd.metis.node-image.v1");
    assert_eq!(m["annotations"]["dev.metis.node"], "titan-13");
}

fn read_index(reg: &TestRegistry, ca: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("skopeo")
        .args(["copy", "--src-cert-dir", reg.cert_dir().to_str().unwrap()])
        .args(["--src-creds", &format!("{USER}:{PASSWORD}")])
        .arg(format!("docker://{}/lab/metis/index:latest", reg.host()))
        .arg(format!(
            "oci:{}:lab/metis/index:latest",
            dir.path().display()
        ))
        .output()
        .unwrap();
    let _ = ca;
    assert!(
        o.status.success(),
        "skopeo copy of the index: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let layout = metis_core::oci::Layout::open_or_create(dir.path()).unwrap();
    let r = layout.refs().unwrap();
    let manifest = layout.manifest(&r[0].manifest.digest).unwrap();
    let doc = layout.read_blob(&manifest.layers[0].digest).unwrap();
    serde_json::from_slice(&doc).unwrap()
}

#[test]
fn an_interrupted_run_is_finished_by_the_next() {
    let lab = lab();
    let reg_dir = tempfile::tempdir().unwrap();
    let loc = format!("oci:{}", reg_dir.path().display());
    let r: &[&str] = &["--registry", &loc];
    // A first run that got through two nodes only (as if killed): no index yet.
    let first = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "titan-04", "titan-db"],
    ));
    assert_eq!(built(&first), ["titan-04", "titan-db"]);
    // The next run builds the rest and publishes the index.
    let second = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&second).len(), 19, "{second:#}");
    assert!(!built(&second).contains(&"titan-04".to_string()));
    assert_eq!(second["index_published"], true);
    // A manifest pushed but never signed (killed between the two) is rebuilt, not trusted.
    let layout = metis_core::oci::Layout::open_or_create(reg_dir.path()).unwrap();
    let refs = layout.refs().unwrap();
    let sig = refs
        .iter()
        .find(|x| x.repository.ends_with("nodes/titan-05") && x.tag.starts_with("sha256-"))
        .expect("titan-05 is signed");
    remove_ref(reg_dir.path(), &format!("{}:{}", sig.repository, sig.tag));
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    let t05 = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "titan-05")
        .unwrap();
    assert_eq!(t05["action"], "build", "{t05:#}");
    assert!(t05["reason"].as_str().unwrap().contains("no signature"));
    let third = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&third), ["titan-05"]);
}

/// Drops one tag from an OCI layout's index.json.
fn remove_ref(layout: &Path, name: &str) {
    let p = layout.join("index.json");
    let mut idx: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let m = idx["manifests"].as_array_mut().unwrap();
    let before = m.len();
    m.retain(|d| d["annotations"]["org.opencontainers.image.ref.name"] != name);
    assert_eq!(m.len() + 1, before, "ref {name} not found");
    std::fs::write(&p, serde_json::to_vec(&idx).unwrap()).unwrap();
}

#[test]
fn workflows_parse_and_pin_every_action() {
    let dir = workspace_root().join(".github/workflows");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let o = Command::new("python3")
            .args(["-c", "import sys, yaml; yaml.safe_load(open(sys.argv[1]))"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{} is not YAML: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(u) = line.trim().trim_start_matches("- ").strip_prefix("uses:") {
                let u = u.trim();
                let sha = u
                    .split('@')
                    .nth(1)
                    .unwrap_or("")
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                assert!(
                    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: `{u}` is not pinned to a commit SHA",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no `uses:` found — did the workflows move?");
}
