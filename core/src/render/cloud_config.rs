//! `user-data` (#cloud-config): identity, users, SSH, time, the non-secret
//! files and the two bootstrap phases.

use std::fmt::Write as _;

use super::yaml::{block, flow_list, quote};
use crate::inventory::{Class, Node};

/// A file cloud-init writes (`write_files`). Never a secret.
pub(super) struct WriteFile {
    pub path: String,
    pub content: String,
    pub permissions: String,
    pub owner: String,
}

/// Renders the node's user-data.
pub(super) fn user_data(node: &Node, class: &Class, bootcmd: &str, files: &[WriteFile]) -> String {
    let s = &node.settings;
    let mut out = String::from("#cloud-config\n");
    let _ = writeln!(
        out,
        "# Rendered by Metis for node {} (class {}).\n\
         # Do not edit: change the inventory and render again. Nothing here is\n\
         # secret; the node's secrets come from the card's secrets slot\n\
         # (docs/bundle.md).",
        node.name, class.name
    );

    out.push_str("\n# Identity\n");
    let _ = writeln!(out, "hostname: {}", quote(&node.hostname));
    let _ = writeln!(out, "fqdn: {}", quote(&node.fqdn));
    out.push_str("prefer_fqdn_over_hostname: false\n");
    out.push_str("preserve_hostname: false\n");
    out.push_str("manage_etc_hosts: true\n");
    let _ = writeln!(out, "timezone: {}", quote(&s.timezone));
    if !s.ntp.is_empty() {
        out.push_str("ntp:\n  enabled: true\n");
        let _ = writeln!(out, "  servers: {}", flow_list(&s.ntp));
    }

    out.push_str("\n# Users: keys only, no passwords.\n");
    if s.users.is_empty() {
        out.push_str("# (the inventory names no users; the image's default user stays)\n");
    } else {
        // Listing users without `default` also drops the image's default user.
        out.push_str("users:\n");
        for u in &s.users {
            let _ = writeln!(out, "  - name: {}", quote(&u.name));
            if let Some(g) = &u.gecos {
                let _ = writeln!(out, "    gecos: {}", quote(g));
            }
            if !u.groups.is_empty() {
                let _ = writeln!(out, "    groups: {}", flow_list(&u.groups));
            }
            if let Some(sh) = &u.shell {
                let _ = writeln!(out, "    shell: {}", quote(sh));
            }
            if u.sudo {
                let _ = writeln!(out, "    sudo: {}", quote("ALL=(ALL) NOPASSWD:ALL"));
            }
            out.push_str("    lock_passwd: true\n");
            if !u.ssh_authorized_keys.is_empty() {
                out.push_str("    ssh_authorized_keys:\n");
                for k in &u.ssh_authorized_keys {
                    let _ = writeln!(out, "      - {}", quote(k));
                }
            }
        }
    }
    out.push_str("disable_root: true\n");
    out.push_str("ssh_pwauth: false\n");

    out.push_str(
        "\n# SSH host keys: the node's own, installed by the secrets phase before\n\
         # cloud-init's ssh module runs, are kept. Only a key type the card's\n\
         # secrets lack is generated (cloud-init skips types whose key file exists).\n",
    );
    out.push_str("ssh_deletekeys: false\n");
    out.push_str("ssh_genkeytypes: [\"ed25519\", \"ecdsa\", \"rsa\"]\n");

    out.push_str("\n# Phase 1, every boot, before sshd: install secrets from the card's slot.\n");
    out.push_str("bootcmd:\n  -");
    block(&mut out, 4, bootcmd);

    out.push_str("\n# Non-secret files.\n");
    out.push_str("write_files:\n");
    for f in files {
        let _ = writeln!(out, "  - path: {}", quote(&f.path));
        let _ = writeln!(out, "    owner: {}", quote(&f.owner));
        let _ = writeln!(out, "    permissions: {}", quote(&f.permissions));
        if !f.owner.starts_with("root:") {
            // Users are created after write_files; write it in the final stage.
            out.push_str("    defer: true\n");
        }
        out.push_str("    content:");
        block(&mut out, 6, &f.content);
    }

    out.push_str(
        "\n# Phase 2, first boot: data disks, then k3s, then hooks (docs in the script).\n",
    );
    out.push_str("runcmd:\n");
    let _ = writeln!(out, "  - {}", flow_list(&["sh", super::paths::K3S_PHASE]));
    out
}
