//! k3s files: `/etc/rancher/k3s/config.yaml`, the kubelet limits, the unit
//! drop-in that waits for Longhorn disks, and `registries.yaml`.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::yaml::quote;
use super::{paths, RenderError};
use crate::inventory::{rules, Inventory, Node, Role};

/// The join URL for the node: the first `cluster.servers` entry that does not
/// point at the node itself. A recovery card never starts a new cluster, so
/// there is no `cluster-init` and a server always joins a live one.
pub(super) fn join_url<'a>(inv: &'a Inventory, node: &Node) -> Result<&'a str, RenderError> {
    let own: Vec<String> = node
        .addresses()
        .map(|a| a.to_string())
        .chain([node.hostname.clone(), node.fqdn.clone(), node.name.clone()])
        .collect();
    inv.lab
        .cluster
        .servers
        .iter()
        .find(|u| match rules::server_url(u) {
            Ok(host) => !own.contains(&host),
            Err(_) => false,
        })
        .map(String::as_str)
        .ok_or_else(|| RenderError::Unrenderable {
            node: node.name.clone(),
            what: "every cluster.servers URL points at this node; it would have nobody to join"
                .into(),
        })
}

/// The unit k3s runs as in the node's role (`None` for role none).
pub(super) fn unit(role: Role) -> Option<&'static str> {
    match role {
        Role::Server => Some("k3s.service"),
        Role::Agent => Some("k3s-agent.service"),
        Role::None => None,
    }
}

/// The address k3s advertises: the primary IPv4 and the first static IPv6
/// (dual stack takes one of each). None for a DHCP-only node: k3s then picks
/// the address of the default route itself.
fn node_ip(node: &Node) -> Option<String> {
    let v4 = node.primary_ipv4();
    let v6 = node.addresses().find(IpAddr::is_ipv6);
    let ips: Vec<String> = v4.into_iter().chain(v6).map(|a| a.to_string()).collect();
    (!ips.is_empty()).then(|| ips.join(","))
}

/// `/etc/rancher/k3s/config.yaml`.
pub(super) fn config_yaml(inv: &Inventory, node: &Node) -> Result<String, RenderError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rendered by Metis for node {}. Do not edit: change the inventory and\n\
         # render again. The join token is in token-file, installed from the card's\n\
         # secrets slot at first boot; it is never in this file.",
        node.name
    );
    let _ = writeln!(out, "node-name: {}", quote(&node.name));
    if let Some(ip) = node_ip(node) {
        let _ = writeln!(out, "node-ip: {}", quote(&ip));
    }
    let _ = writeln!(out, "server: {}", quote(join_url(inv, node)?));
    let _ = writeln!(out, "token-file: {}", quote(paths::K3S_TOKEN));
    // k3s applies labels and taints only when the node registers, which is
    // exactly what a recovered node does (its old Node object is deleted first).
    if !node.labels.is_empty() {
        out.push_str("node-label:\n");
        for l in &node.labels {
            let _ = writeln!(out, "  - {}", quote(l));
        }
    }
    if !node.taints.is_empty() {
        out.push_str("node-taint:\n");
        for t in &node.taints {
            let _ = writeln!(out, "  - {}", quote(&t.to_string()));
        }
    }
    if !inv.lab.cluster.k3s_version.has_kubelet_conf_d() {
        // Before 1.32 the kubelet has no drop-in directory under k3s; the
        // limits go on its command line.
        let k = &node.settings.kubelet;
        out.push_str("kubelet-arg:\n");
        for arg in [
            format!("container-log-max-size={}", k.container_log_max_size),
            format!("container-log-max-files={}", k.container_log_max_files),
            format!("image-gc-high-threshold={}", k.image_gc_high_threshold),
            format!("image-gc-low-threshold={}", k.image_gc_low_threshold),
        ] {
            let _ = writeln!(out, "  - {}", quote(&arg));
        }
    }
    for (key, value) in &node.settings.k3s_extra_config {
        let _ = writeln!(out, "{}: {}", quote(key), quote(value));
    }
    Ok(out)
}

/// The KubeletConfiguration drop-in for k3s ≥ 1.32
/// (`/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/`). It sorts after k3s's
/// own `00-k3s-defaults.conf`, so its values win.
pub(super) fn kubelet_conf(node: &Node) -> String {
    let k = &node.settings.kubelet;
    format!(
        "# Rendered by Metis for node {}: container log and image GC limits.\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         containerLogMaxSize: {}\n\
         containerLogMaxFiles: {}\n\
         imageGCHighThresholdPercent: {}\n\
         imageGCLowThresholdPercent: {}\n",
        node.name,
        quote(&k.container_log_max_size),
        k.container_log_max_files,
        k.image_gc_high_threshold,
        k.image_gc_low_threshold,
    )
}

/// Drop-in for the k3s unit: `RequiresMountsFor=` each Longhorn mount point,
/// so systemd never starts k3s while a Longhorn disk is missing (it would
/// write into the empty directory on the root filesystem and Longhorn would
/// take it for the disk). The mounts are `nofail`, so the rest of the node
/// still boots.
pub(super) fn unit_dropin(node: &Node) -> Option<String> {
    let mounts = super::longhorn_mounts(node);
    if mounts.is_empty() || unit(node.role).is_none() {
        return None;
    }
    Some(format!(
        "# Rendered by Metis for node {}: k3s must not start while a Longhorn\n\
         # disk is not mounted.\n\
         [Unit]\n\
         RequiresMountsFor={}\n",
        node.name,
        mounts.join(" ")
    ))
}

/// The registry k3s pulls from, unless the lab publishes into an OCI layout
/// directory (`oci:`), which k3s cannot use.
pub(super) fn registry_host(inv: &Inventory) -> Option<&str> {
    inv.registry_host()
}

/// Appends `/etc/rancher/k3s/registries.yaml` for the lab's Harbor to `out`
/// and returns true, or returns false when there is no registry k3s can use.
/// The mirror and CA part comes from the inventory; `auth` (user, password)
/// from the secrets bundle. The whole file is installed by the secrets phase
/// only, so there is one writer and cloud-init's `write_files` (which runs
/// after it) never overwrites it with a version lacking the credentials.
///
/// `out` is the caller's (zeroizing) buffer; the password is quoted into a
/// zeroizing temporary, so no copy of it outlives this call.
pub(super) fn registries_yaml(
    inv: &Inventory,
    auth: Option<(&str, &str)>,
    out: &mut String,
) -> bool {
    let Some(host) = registry_host(inv) else {
        return false;
    };
    out.push_str(
        "# Rendered by Metis: pull through the lab's registry. Installed from the\n\
         # card's secrets slot (it may hold the registry credentials).\n",
    );
    let _ = writeln!(out, "mirrors:\n  {}:\n    endpoint:", quote(host));
    let _ = writeln!(out, "      - {}", quote(&format!("https://{host}")));
    let ca = inv.lab.registry.ca_file.is_some();
    if ca || auth.is_some() {
        let _ = writeln!(out, "configs:\n  {}:", quote(host));
        if let Some((user, password)) = auth {
            let password = zeroize::Zeroizing::new(quote(password));
            let _ = writeln!(out, "    auth:");
            let _ = writeln!(out, "      username: {}", quote(user));
            out.push_str("      password: ");
            out.push_str(&password);
            out.push('\n');
        }
        if ca {
            let _ = writeln!(
                out,
                "    tls:\n      ca_file: {}",
                quote(paths::REGISTRY_CA)
            );
        }
    }
    true
}
