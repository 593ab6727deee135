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
    let err = inventory::load(&dir).expect_err("the inventory must not load");
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
