//! Input the render could not turn into a working card is rejected when the
//! inventory is loaded (`metis-build check`), before anything is rendered.

mod common;

use std::path::Path;

use common::*;
use metis_core::inventory;

/// Loads a changed copy of the example lab; it must fail with an error in
/// `file` whose message contains `want`.
fn rejected(edit: impl FnOnce(&Path), file: &str, want: &str) {
    let (_tmp, dir) = copy_example(edit);
    let err = metis_core::lab::load(&dir).expect_err("the inventory must not load");
    let inventory::InventoryError::Invalid { diagnostics, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert!(
        diagnostics
            .iter()
            .any(|d| d.file == Path::new(file) && d.message.contains(want)),
        "no error in {file} containing {want:?}: {diagnostics:#?}"
    );
}

#[test]
fn taints_on_role_none_do_not_load() {
    rejected(
        |dir| {
            replace(
                &dir.join("nodes/atlas.yaml"),
                "  role: none",
                "  role: none\n  taints:\n    - dedicated=backup:NoSchedule",
            )
        },
        "nodes/atlas.yaml",
        "taints on a node with role `none`",
    );
}

#[test]
fn a_longhorn_disk_without_uuid_does_not_load() {
    rejected(
        |dir| {
            replace(
                &dir.join("nodes/titan-13.yaml"),
                "  - uuid: 6b1f0c3e-93a2-4d7e-9c11-000000000013\n    mount:",
                "  - mount:",
            )
        },
        "nodes/titan-13.yaml",
        "Longhorn disk has no `uuid`",
    );
}

#[test]
fn a_longhorn_disk_without_mount_point_does_not_load() {
    rejected(
        |dir| {
            replace(
                &dir.join("nodes/titan-13.yaml"),
                "    mount: /var/lib/longhorn\n",
                "",
            )
        },
        "nodes/titan-13.yaml",
        "disk has no `mount` point",
    );
}

#[test]
fn a_server_that_would_join_itself_does_not_load() {
    rejected(
        |dir| {
            replace(
                &dir.join("metis.yaml"),
                "https://192.168.22.10:6443",
                "https://192.168.22.11:6443",
            )
        },
        "nodes/titan-0a.yaml",
        "would join itself",
    );
}

#[test]
fn the_unchanged_example_loads_and_every_node_renders() {
    let inv = example();
    assert_eq!(inv.nodes.len(), 21);
    assert_eq!(inv.classes.len(), 6);
    for name in inv.nodes.keys() {
        metis_core::render::render(&inv, name).unwrap();
    }
}

/// What the rules let through but the render refuses is still found by
/// `check`, as an error in each affected node's file: here a registry CA file
/// that exists (the rule) but is not text, which only reading it shows.
#[test]
fn check_renders_every_node_and_reports_what_the_rules_missed() {
    let (_tmp, dir) = copy_example(|dir| {
        replace(
            &dir.join("metis.yaml"),
            "  host: oci:../out/registry\n  prefix: metis\n",
            "  host: harbor.lab.home.arpa\n  prefix: metis\n  ca_file: harbor-ca.pem\n",
        );
        std::fs::write(dir.join("harbor-ca.pem"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    });
    let checked = metis_core::lab::check(&dir);
    assert!(checked.inventory.is_none(), "the inventory must not load");
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == inventory::Severity::Error)
        .collect();
    // Every k3s node reads the CA; the external host (role none) does not.
    let atlas = Path::new("nodes/atlas.yaml");
    for node in ["titan-04", "titan-0a", "titan-13", "titan-db"] {
        let file = Path::new("nodes").join(format!("{node}.yaml"));
        let d = errors
            .iter()
            .find(|d| d.file == file)
            .unwrap_or_else(|| panic!("no finding for {node}: {errors:#?}"));
        assert!(
            d.message.contains("harbor-ca.pem") && d.message.contains("UTF-8"),
            "{d}"
        );
        let hint = d.hint.as_deref().unwrap_or_default();
        assert!(hint.contains(&format!("metis-build render {node}")), "{d}");
    }
    assert!(errors.iter().all(|d| d.file != atlas), "{errors:#?}");
}

/// A class file that does not parse is reported once, in that file; its
/// nodes do not also get a false "unknown class".
#[test]
fn a_class_that_does_not_parse_is_still_a_known_class() {
    let (_tmp, dir) = copy_example(|dir| {
        replace(
            &dir.join("classes/rpi4-armbian-longhorn.yaml"),
            "architecture: arm64",
            "architecture: [arm64",
        )
    });
    let checked = metis_core::lab::check(&dir);
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == inventory::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("classes/rpi4-armbian-longhorn.yaml")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains("unknown class")),
        "{errors:#?}"
    );
}
