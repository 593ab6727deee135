//! A node's network interfaces: MAC, name, addresses, gateways, DNS.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::Pos;
use crate::inventory::model::*;
use crate::inventory::rules::{self, Rule, RuleError};
use crate::inventory::schema;

impl Cx {
    /// A node's interfaces, with the lab's or class's DNS where it sets none.
    pub(super) fn interfaces(
        &mut self,
        file: &Path,
        f: &schema::NodeFile,
        settings: &Settings,
    ) -> Vec<Interface> {
        let mut interfaces = Vec::new();
        if f.network.interfaces.is_empty() {
            self.err(
                file,
                Pos::FILE,
                "network.interfaces is empty",
                "add at least one interface with its `mac:` and `addresses:`",
            );
        }
        let mut names_seen: HashMap<String, u64> = HashMap::new();
        for (i, iface) in f.network.interfaces.iter().enumerate() {
            let mac = self.rule(file, &iface.mac, H_MAC, |v| rules::mac(v));
            let ifname = iface
                .name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_else(|| format!("eth{i}"));
            if let Some(n) = &iface.name {
                self.rule(file, n, H_IFNAME, |v| {
                    let ok = !v.is_empty()
                        && v.len() <= 15
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                    if ok {
                        Ok(())
                    } else {
                        Err(RuleError::new(
                            Rule::InterfaceName,
                            format!(
                                "`{v}` is not a Linux interface name (1–15 letters, digits, `-_.`)"
                            ),
                        ))
                    }
                });
            }
            let line = Pos::of(&iface.mac).line;
            if let Some(prev) = names_seen.insert(ifname.clone(), line) {
                self.err(
                    file,
                    Pos::of(&iface.mac),
                    format!("two interfaces are named `{ifname}` (the other at line {prev})"),
                    "give each interface its own `name:`",
                );
            }
            let addresses: Vec<IpCidr> = iface
                .addresses
                .iter()
                .filter_map(|a| self.rule(file, a, H_CIDR, |v| rules::cidr(v)))
                .collect();
            if !iface.dhcp && iface.addresses.is_empty() {
                self.err(file, Pos::of(&iface.mac), format!("interface `{ifname}` has no addresses and no `dhcp: true`"), "a recovery card needs the node's static address: add `addresses: [10.x.y.z/24]`");
            }
            let gateway4 = iface.gateway.as_ref().and_then(|g| {
                let ip = self.rule(file, g, H_GATEWAY, |v| rules::ip(v))?;
                if !ip.is_ipv4() {
                    self.err(
                        file,
                        Pos::of(g),
                        "`gateway` must be IPv4",
                        "move an IPv6 gateway to `gateway6:`, and write the IPv4 gateway as `gateway: a.b.c.d`",
                    );
                } else if !addresses.is_empty()
                    && !addresses.iter().any(|a| rules::in_subnet(a, &ip))
                {
                    self.err(
                        file,
                        Pos::of(g),
                        format!("gateway {ip} is not in the subnet of any address of `{ifname}`"),
                        "check the gateway and the addresses' prefix lengths",
                    );
                }
                Some(ip)
            });
            let gateway6 = iface.gateway6.as_ref().and_then(|g| {
                let ip = self.rule(file, g, H_GATEWAY6, |v| rules::ip(v))?;
                if !ip.is_ipv6() {
                    self.err(
                        file,
                        Pos::of(g),
                        "`gateway6` must be IPv6",
                        "move an IPv4 gateway to `gateway:`, and write the IPv6 gateway as `gateway6: fd00::1` (or a link-local `fe80::1`)",
                    );
                }
                Some(ip)
            });
            let dns: Vec<IpAddr> = match &iface.dns {
                Some(list) => list
                    .iter()
                    .filter_map(|d| self.rule(file, d, H_DNS, |v| rules::ip(v)))
                    .collect(),
                None => settings.dns.clone(),
            };
            let search: Vec<String> = match &iface.search {
                Some(list) => list
                    .iter()
                    .filter_map(|d| {
                        self.rule(file, d, H_SEARCH, |v| rules::dns_name(v))
                            .map(|_| d.value.clone())
                    })
                    .collect(),
                None => settings.search.clone(),
            };
            interfaces.push(Interface {
                name: ifname,
                mac: mac.unwrap_or_default(),
                dhcp4: iface.dhcp,
                addresses,
                gateway4,
                gateway6,
                dns,
                search,
            });
        }
        interfaces
    }
}
