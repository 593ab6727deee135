//! The GitOps pipeline with the real binary: `metis-build plan` and `publish`
//! against a real TLS + password registry on loopback and an `oci:` directory.
//! Only what changed is built; unchanged nodes cost nothing; the index follows.

use metis_tests::DemoBuilderEnv;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_tests::registry::{Auth, TestRegistry, PASSWORD, USER};
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
    metis_build_in(&std::env::current_dir().unwrap(), lab, registry, args)
}

/// [`metis_build`] run in the working directory `cwd`.
fn metis_build_in(cwd: &Path, lab: &Lab, registry: &[&str], args: &[&str]) -> Output {
    let demo = workspace_root().join("inventory/demo-keys");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-build"));
    cmd.current_dir(cwd)
        .args(args)
        .args(["--inventory", lab.inv.to_str().unwrap()])
        .args(registry)
        .env("PATH", metis_tests::tool::search_path())
        .demo_builder_env()
        .env("METIS_REGISTRY_USERNAME", USER)
        .env("METIS_REGISTRY_PASSWORD", PASSWORD);
    if args[0] == "publish" {
        cmd.args(["--key", demo.join("cosign.key").to_str().unwrap()])
            .args(["--work-dir", lab.work.to_str().unwrap()]);
    }
    cmd.output().unwrap()
}

/// The report or plan on stdout, whatever the exit status.
fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn statuses(report: &Value, status: &str) -> Vec<String> {
    let mut v: Vec<String> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == status)
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn planned<'a>(plan: &'a Value, node: &str) -> &'a Value {
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} not planned: {plan:#}"))
}

/// Requests in the registry's access log that change something.
fn writes(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .lines()
        .filter(|l| {
            ["\"PUT ", "\"POST ", "\"PATCH ", "\"DELETE "]
                .iter()
                .any(|m| l.contains(m))
        })
        .map(str::to_string)
        .collect()
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

#[test]
fn a_relative_oci_registry_flag_is_relative_to_the_working_directory() {
    let lab = lab();
    let cwd = lab._dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    let r: &[&str] = &["--registry", "oci:reg"];
    let first = json(&metis_build_in(
        &cwd,
        &lab,
        r,
        &["publish", "--json", "titan-04", "titan-db"],
    ));
    assert_eq!(built(&first), ["titan-04", "titan-db"]);
    assert!(
        cwd.join("reg/index.json").is_file(),
        "no layout in the working directory"
    );
    assert!(
        !lab.inv.join("reg").exists(),
        "a layout beside the inventory"
    );
    // The same flag from the same directory finds what was published.
    let plan = json(&metis_build_in(&cwd, &lab, r, &["plan", "--json"]));
    for node in ["titan-04", "titan-db"] {
        assert_eq!(planned(&plan, node)["action"], "skip", "{plan:#}");
    }
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

/// The registry's tags of `repo` (under `lab/metis/`), empty when it has none.
fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let o = Command::new("skopeo")
        .args(["list-tags", "--cert-dir", reg.cert_dir().to_str().unwrap()])
        .args(["--creds", &format!("{USER}:{PASSWORD}")])
        .arg(format!("docker://{}/lab/metis/{repo}", reg.host()))
        .output()
        .unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("unknown") || err.contains("404") || err.contains("not found"),
            "skopeo list-tags {repo}: {err}"
        );
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["Tags"]
        .as_array()
        .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_failing_class_fails_its_nodes_only_and_holds_back_the_index() {
    let reg = TestRegistry::start().unwrap();
    let lab = lab();
    let host = format!("{}/lab/metis", reg.host());
    let ca = reg.ca_file();
    let r: &[&str] = &["--registry", &host, "--ca-file", ca.to_str().unwrap()];
    // rpi4-armbian-std's golden image is missing (titan-31, titan-32).
    edit(
        &lab.inv.join("classes/rpi4-armbian-std.yaml"),
        "golden/armbian.img",
        "golden/missing.img",
    );

    // A dry run builds and pushes nothing.
    let dry = metis_build(&lab, r, &["publish", "--json", "--dry-run"]);
    let dry = json(&dry);
    assert_eq!(statuses(&dry, "would build").len(), 21, "{dry:#}");
    assert!(
        writes(&reg).is_empty(),
        "a dry run wrote: {:#?}",
        writes(&reg)
    );

    let o = metis_build(&lab, r, &["publish", "--json", "--jobs", "2"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let first = stdout_json(&o);
    let failed = statuses(&first, "failed");
    assert_eq!(failed.len(), 2, "{first:#}");
    for n in first["nodes"].as_array().unwrap() {
        if n["status"] == "failed" {
            let d = n["detail"].as_str().unwrap();
            assert!(
                d.contains("rpi4-armbian-std") && d.contains("missing.img"),
                "the failure names the class and the file: {d}"
            );
        }
    }
    assert_eq!(built(&first).len(), 19, "{first:#}");
    assert_eq!(first["index_published"], false);
    assert!(tags(&reg, "index").is_empty(), "the index was published");
    // Each class base went up once, to its golden repository; nodes mount it.
    let log = reg.log();
    for class in [
        "amd64-agents",
        "control-plane",
        "external",
        "rpi4-armbian-longhorn",
        "rpi5-ubuntu",
    ] {
        let puts = log
            .lines()
            .filter(|l| {
                l.contains(&format!(
                    "\"PUT /v2/lab/metis/golden/{class}/blobs/uploads/"
                ))
            })
            .count();
        assert_eq!(puts, 1, "class {class}: {puts} base uploads");
    }
    assert!(!log.contains("/golden/rpi4-armbian-std/blobs/uploads"));

    // --partial publishes the index without the failed nodes; still exit 1.
    let o = metis_build(&lab, r, &["publish", "--json", "--partial"]);
    assert_eq!(o.status.code(), Some(1));
    let second = stdout_json(&o);
    assert!(built(&second).is_empty(), "{second:#}");
    assert_eq!(second["index_published"], true, "{second:#}");
    let index = read_index(&reg, &ca);
    assert_eq!(index["nodes"].as_object().unwrap().len(), 19, "{index:#}");
    assert!(index["nodes"].get("titan-31").is_none());

    // Fixed: the two nodes are built and the index lists all 21.
    edit(
        &lab.inv.join("classes/rpi4-armbian-std.yaml"),
        "golden/missing.img",
        "golden/armbian.img",
    );
    let third = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert_eq!(built(&third), failed);
    assert_eq!(
        read_index(&reg, &ca)["nodes"].as_object().unwrap().len(),
        21
    );
}

#[test]
fn a_node_that_cannot_be_planned_fails_alone() {
    let lab = lab();
    let reg_dir = tempfile::tempdir().unwrap();
    let loc = format!("oci:{}", reg_dir.path().display());
    let r: &[&str] = &["--registry", &loc];
    json(&metis_build(&lab, r, &["publish", "--json"]));
    // titan-13's `latest` now names a blob that is no manifest (the index document).
    let p = reg_dir.path().join("index.json");
    let mut refs: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let m = refs["manifests"].as_array_mut().unwrap();
    let doc = m
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "metis/index:latest")
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .unwrap();
    let layout = metis_core::oci::Layout::open_or_create(reg_dir.path()).unwrap();
    let layer = layout.manifest(&doc).unwrap().layers[0].clone();
    let t13 = m
        .iter_mut()
        .find(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"] == "metis/nodes/titan-13:latest"
        })
        .unwrap();
    t13["digest"] = layer.digest.clone().into();
    t13["size"] = layer.size.into();
    std::fs::write(&p, serde_json::to_vec(&refs).unwrap()).unwrap();
    edit(
        &lab.inv.join("nodes/titan-04.yaml"),
        "lab.home.arpa/",
        "lab.home.arpa/x-",
    );

    let o = metis_build(&lab, r, &["plan", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let plan = stdout_json(&o);
    let t13 = planned(&plan, "titan-13");
    assert_eq!(t13["action"], "fail", "{plan:#}");
    assert!(
        t13["reason"].as_str().unwrap().contains("malformed"),
        "{t13:#}"
    );
    assert_eq!(planned(&plan, "titan-04")["action"], "build", "{plan:#}");
    let o = metis_build(&lab, r, &["publish", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report = stdout_json(&o);
    assert_eq!(statuses(&report, "failed"), ["titan-13"], "{report:#}");
    assert_eq!(built(&report), ["titan-04"]);
    assert_eq!(report["index_published"], false);
}

#[test]
fn reruns_of_a_published_revision_succeed_and_never_sign_it_twice() {
    let lab = lab();
    let reg_dir = tempfile::tempdir().unwrap();
    let loc = format!("oci:{}", reg_dir.path().display());
    let r: &[&str] = &["--registry", &loc];
    let first = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "--revision", "100"],
    ));
    assert_eq!(built(&first).len(), 21);
    // A rerun (CI rerun, manual dispatch) of the same or an older commit: a no-op.
    for rev in ["100", "50"] {
        let again = json(&metis_build(
            &lab,
            r,
            &["publish", "--json", "--revision", rev],
        ));
        assert!(built(&again).is_empty(), "{again:#}");
        assert_eq!(again["index_published"], false);
    }
    // A change at the revision a node is already signed at is refused …
    edit(
        &lab.inv.join("nodes/titan-13.yaml"),
        "lab.home.arpa/board=rpi4",
        "lab.home.arpa/board=rpi4b",
    );
    let o = metis_build(&lab, r, &["publish", "--json", "--revision", "100"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already signed for node titan-13"), "{err}");
    let o = metis_build(&lab, r, &["publish", "--json", "--revision", "99"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("older than the published revision 100"));
    // … a newer one is not.
    let next = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "--revision", "101"],
    ));
    assert_eq!(built(&next), ["titan-13"]);

    // A new operator: every node, and the plan says why.
    edit(
        &lab.inv.join("metis.yaml"),
        "  recipients:\n",
        "  recipients:\n    - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n",
    );
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    for n in plan["nodes"].as_array().unwrap() {
        assert_eq!(n["action"], "build", "{n:#}");
        assert_eq!(n["reason"], "operator recipients changed", "{n:#}");
    }
    // A class default says so.
    let o = metis_build(&lab, r, &["publish", "--json"]);
    assert!(o.status.success());
    edit(
        &lab.inv.join("classes/control-plane.yaml"),
        "system_max_use: 1G",
        "system_max_use: 2G",
    );
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    assert_eq!(
        planned(&plan, "titan-0a")["reason"],
        "changed class settings"
    );
    json(&metis_build(&lab, r, &["publish", "--json"]));

    // --rebuild re-signs unchanged nodes (a new signing key), at a new revision.
    let forced = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "--rebuild", "titan-04"],
    ));
    assert_eq!(built(&forced), ["titan-04"], "{forced:#}");
    assert_eq!(planned(&forced, "titan-04")["detail"], "forced (--rebuild)");

    // --prune on a layout: the removed node's tags go, and blobs only it needed.
    let layout = metis_core::oci::Layout::open_or_create(reg_dir.path()).unwrap();
    let patch = |node: &str| {
        let l = layout
            .resolve(&format!("metis/nodes/{node}"), "latest")
            .unwrap()
            .unwrap();
        layout.manifest(&l.manifest.digest).unwrap().layers[1]
            .digest
            .clone()
    };
    let atlas_patch = patch("atlas");
    std::fs::remove_file(lab.inv.join("nodes/atlas.yaml")).unwrap();
    let pruned = json(&metis_build(&lab, r, &["publish", "--json", "--prune"]));
    assert_eq!(statuses(&pruned, "removed"), ["atlas"], "{pruned:#}");
    assert!(layout
        .refs()
        .unwrap()
        .iter()
        .all(|x| !x.repository.ends_with("nodes/atlas")));
    assert!(
        !layout.has_blob(&atlas_patch, None),
        "atlas's patch blob was kept"
    );
    assert!(layout.has_blob(&patch("titan-04"), None));
}

#[test]
fn a_stale_index_is_published_again() {
    let lab = lab();
    let reg_dir = tempfile::tempdir().unwrap();
    let loc = format!("oci:{}", reg_dir.path().display());
    let r: &[&str] = &["--registry", &loc];
    json(&metis_build(&lab, r, &["publish", "--json"]));
    let old_refs = std::fs::read(reg_dir.path().join("index.json")).unwrap();
    edit(
        &lab.inv.join("nodes/titan-13.yaml"),
        "lab.home.arpa/board=rpi4",
        "lab.home.arpa/board=rpi4b",
    );
    json(&metis_build(&lab, r, &["publish", "--json"]));
    // As if that run died after its last node and before the index: the
    // index tags are back where they were; the node's are new.
    let mut refs: Value = serde_json::from_slice(&old_refs).unwrap();
    let now: Value =
        serde_json::from_slice(&std::fs::read(reg_dir.path().join("index.json")).unwrap()).unwrap();
    let is_index = |d: &Value| {
        d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap()
            .starts_with("metis/index:")
    };
    let m = refs["manifests"].as_array_mut().unwrap();
    m.retain(|d| is_index(d));
    m.extend(
        now["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| !is_index(d))
            .cloned(),
    );
    std::fs::write(
        reg_dir.path().join("index.json"),
        serde_json::to_vec(&refs).unwrap(),
    )
    .unwrap();
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    assert!(
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["action"] == "skip"),
        "{plan:#}"
    );
    assert!(
        plan["index_update"]
            .as_str()
            .unwrap_or("")
            .contains("titan-13"),
        "{plan:#}"
    );
    let rerun = json(&metis_build(&lab, r, &["publish", "--json"]));
    assert!(built(&rerun).is_empty());
    assert_eq!(rerun["index_published"], true, "{rerun:#}");
    let t13 = rerun["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "titan-13")
        .unwrap()
        .clone();
    let layout = metis_core::oci::Layout::open_or_create(reg_dir.path()).unwrap();
    let idx = layout.resolve("metis/index", "latest").unwrap().unwrap();
    let doc = layout
        .read_blob(&layout.manifest(&idx.manifest.digest).unwrap().layers[0].digest)
        .unwrap();
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["nodes"]["titan-13"]["digest"], t13["digest"], "{doc:#}");
    // And then it is current.
    let plan = json(&metis_build(&lab, r, &["plan", "--json"]));
    assert!(plan["index_update"].is_null(), "{plan:#}");
}

#[test]
fn a_killed_run_is_finished_by_a_rerun_at_the_same_revision() {
    let reg = TestRegistry::start().unwrap();
    let lab = lab();
    let host = format!("{}/lab/metis", reg.host());
    let ca = reg.ca_file();
    let r: &[&str] = &["--registry", &host, "--ca-file", ca.to_str().unwrap()];
    let demo = workspace_root().join("inventory/demo-keys");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .args([
            "publish",
            "--json",
            "--jobs",
            "1",
            "--revision",
            "1700000000",
        ])
        .args(["--inventory", lab.inv.to_str().unwrap()])
        .args(r)
        .args(["--key", demo.join("cosign.key").to_str().unwrap()])
        .args(["--work-dir", lab.work.to_str().unwrap()])
        .env("PATH", metis_tests::tool::search_path())
        .demo_builder_env()
        .env("METIS_REGISTRY_USERNAME", USER)
        .env("METIS_REGISTRY_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let pushed = reg
            .log()
            .lines()
            .any(|l| l.contains("\"PUT /v2/lab/metis/nodes/") && l.contains("/manifests/"));
        if pushed {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "publish ended before the first node manifest"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no node manifest within 2 min"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(tags(&reg, "index").is_empty(), "killed before the index");

    let rerun = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "--revision", "1700000000"],
    ));
    assert_eq!(rerun["index_published"], true, "{rerun:#}");
    // The killed node was pushed but (most likely) not signed: built again,
    // at the same revision, which nothing signed holds yet.
    assert!(built(&rerun).len() >= 20, "{rerun:#}");
    let index = read_index(&reg, &ca);
    let nodes = index["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 21, "{index:#}");
    assert!(
        nodes.values().all(|e| e["revision"] == 1700000000u64),
        "{index:#}"
    );
    // Nothing left to do.
    let again = json(&metis_build(
        &lab,
        r,
        &["publish", "--json", "--revision", "1700000000"],
    ));
    assert!(built(&again).is_empty() && again["index_published"] == false);
}

#[test]
fn prune_deletes_the_artifacts_of_removed_nodes() {
    // Bearer tokens, as Harbor: a delete needs its own scope.
    let reg = TestRegistry::start_with(Auth::Token).unwrap();
    let lab = lab();
    let host = format!("{}/lab/metis", reg.host());
    let ca = reg.ca_file();
    let r: &[&str] = &["--registry", &host, "--ca-file", ca.to_str().unwrap()];
    json(&metis_build(&lab, r, &["publish", "--json"]));
    assert!(tags(&reg, "nodes/atlas").contains(&"latest".to_string()));
    std::fs::remove_file(lab.inv.join("nodes/atlas.yaml")).unwrap();
    std::fs::remove_file(lab.inv.join("nodes/titan-21.yaml")).unwrap();
    // Without --prune the artifact stays …
    json(&metis_build(&lab, r, &["publish", "--json", "titan-04"]))
        .get("nodes")
        .unwrap();
    assert!(!tags(&reg, "nodes/atlas").is_empty());
    assert!(read_index(&reg, &ca)["nodes"].get("atlas").is_none());
    // … and a node that leaves the index in a --prune run goes.
    std::fs::remove_file(lab.inv.join("nodes/titan-05.yaml")).unwrap();
    let pruned = json(&metis_build(&lab, r, &["publish", "--json", "--prune"]));
    assert_eq!(statuses(&pruned, "removed"), ["titan-05"], "{pruned:#}");
    assert!(
        tags(&reg, "nodes/titan-05").is_empty(),
        "{:?}",
        tags(&reg, "nodes/titan-05")
    );
    assert!(!tags(&reg, "nodes/titan-04").is_empty());
    assert!(read_index(&reg, &ca)["nodes"].get("titan-04").is_some());
}
