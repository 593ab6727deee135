//! `metis-build render NODE --out DIR` as an operator runs it: for a k3s
//! server (embedded etcd) it prints, on stderr, the exact commands that let
//! the node rejoin under its old name; for other nodes it prints none.

use std::path::Path;
use std::process::Command;

fn render(node: &str, out: &Path) -> std::process::Output {
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory");
    Command::new(env!("CARGO_BIN_EXE_metis-build"))
        .arg("render")
        .arg(node)
        .arg("--inventory")
        .arg(&inventory)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_server_gets_the_etcd_rejoin_commands_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render("titan-0a", &tmp.path().join("titan-0a"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (first, rest) = stderr.split_once('\n').unwrap_or_default();
    assert!(first.starts_with("rendered titan-0a "), "{stderr}");
    assert_eq!(
        rest,
        "titan-0a is a k3s server with embedded etcd: before its card boots, remove its old etcd member and node from the live cluster:\n    \
         kubectl annotate node titan-0a etcd.k3s.cattle.io/remove=true\n    \
         kubectl delete node titan-0a\n"
    );
    // The same commands are in render.json for scripts.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("titan-0a/render.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["server_rejoin_commands"],
        serde_json::json!([
            "kubectl annotate node titan-0a etcd.k3s.cattle.io/remove=true",
            "kubectl delete node titan-0a"
        ])
    );
}

#[test]
fn agents_and_hosts_outside_the_cluster_get_no_rejoin_commands() {
    for node in ["titan-13", "atlas"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = render(node, &tmp.path().join(node));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{node}: {stderr}");
        assert!(!stderr.contains("kubectl"), "{node}: {stderr}");
    }
}
