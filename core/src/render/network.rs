//! `network-config`: netplan v2, one `ethernets` entry per interface, matched
//! by MAC and renamed to its stable name.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::yaml::{flow_list, quote};
use crate::inventory::Node;

/// Renders the node's `network-config`.
///
/// The document keeps the top-level `network:` key, so the file is also a
/// valid netplan file as it stands (cloud-init strips the key, netplan needs
/// it). Default routes are written as `to: 0.0.0.0/0` / `to: ::/0` and not as
/// `to: default`: cloud-init 22.4 (Debian 12, Armbian bookworm) converts v2
/// into networkd or ifupdown files itself on those systems and rejects
/// `default` as "not a valid ip address", which would leave the node without
/// a network. netplan treats both spellings the same.
pub(super) fn network_config(node: &Node) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rendered by Metis for node {}: static addresses, matched by MAC.\n\
         # Do not edit: change the inventory and render again.",
        node.name
    );
    out.push_str("network:\n  version: 2\n  ethernets:\n");
    for iface in &node.interfaces {
        let _ = writeln!(out, "    {}:", quote(&iface.name));
        let _ = writeln!(out, "      match:");
        let _ = writeln!(
            out,
            "        macaddress: {}",
            quote(&iface.mac.to_ascii_lowercase())
        );
        let _ = writeln!(out, "      set-name: {}", quote(&iface.name));
        let _ = writeln!(out, "      dhcp4: {}", iface.dhcp4);
        if !iface.addresses.is_empty() {
            let addrs: Vec<String> = iface.addresses.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(out, "      addresses: {}", flow_list(&addrs));
        }
        let gateways: Vec<(&str, IpAddr)> =
            [("0.0.0.0/0", iface.gateway4), ("::/0", iface.gateway6)]
                .into_iter()
                .filter_map(|(to, gw)| gw.map(|g| (to, g)))
                .collect();
        if !gateways.is_empty() {
            let _ = writeln!(out, "      routes:");
            for (to, via) in gateways {
                let _ = writeln!(out, "        - to: {}", quote(to));
                let _ = writeln!(out, "          via: {}", quote(&via.to_string()));
            }
        }
        if !iface.dns.is_empty() || !iface.search.is_empty() {
            let _ = writeln!(out, "      nameservers:");
            if !iface.dns.is_empty() {
                let dns: Vec<String> = iface.dns.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(out, "        addresses: {}", flow_list(&dns));
            }
            if !iface.search.is_empty() {
                let _ = writeln!(out, "        search: {}", flow_list(&iface.search));
            }
        }
    }
    out
}
