//! `nodes/<node>.yaml`: one node (its class, hostname, settings, k3s role) and
//! the rules across nodes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::cx::Cx;
use super::hints::*;
use super::settings::merge_settings;
use crate::inventory::diag::{closest, Pos};
use crate::inventory::model::*;
use crate::inventory::rules;
use crate::inventory::schema;

impl Cx {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn node(
        &mut self,
        name: &str,
        file: &Path,
        f: &schema::NodeFile,
        lab_file: &schema::LabFile,
        lab: &Lab,
        classes: &BTreeMap<String, (Class, &schema::ClassFile)>,
        class_names: &[String],
    ) -> Option<Node> {
        let class = match classes.get(&f.class.value) {
            Some(c) => Some(c),
            None => {
                // A class that exists but failed its own checks is reported there.
                if !class_names.contains(&f.class.value) {
                    let hint = match closest(&f.class.value, class_names.iter().map(String::as_str))
                    {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("known classes: {}", class_names.join(", ")),
                    };
                    self.err(
                        file,
                        Pos::of(&f.class),
                        format!("unknown class `{}`", f.class.value),
                        hint,
                    );
                }
                None
            }
        };
        let hostname = match &f.hostname {
            Some(h) => {
                self.rule(file, h, H_HOST, |v| rules::dns_label(v));
                h.value.clone()
            }
            None => name.to_string(),
        };
        self.settings_rules(file, &f.overrides);
        let settings = merge_settings(
            &lab_file.defaults,
            class.map(|c| &c.1.defaults),
            &f.overrides,
        );
        if settings.kubelet.image_gc_low_threshold >= settings.kubelet.image_gc_high_threshold {
            self.err(
                file,
                Pos::FILE,
                format!(
                    "image GC low threshold ({}) must be below the high threshold ({}) after merging defaults",
                    settings.kubelet.image_gc_low_threshold, settings.kubelet.image_gc_high_threshold
                ),
                "set kubelet.image_gc_low_threshold below image_gc_high_threshold",
            );
        }

        let interfaces = self.interfaces(file, f, &settings);
        let (role, labels, taints) = self.k3s(name, file, f, class, &hostname, &interfaces, lab);
        let disks = self.disks(file, f);
        let hooks = self.hooks(file, f);
        let fqdn = format!("{hostname}.{}", lab.cluster.domain);
        Some(Node {
            name: name.to_string(),
            file: file.to_path_buf(),
            class: class?.0.name.clone(),
            hostname,
            fqdn,
            interfaces,
            role: role?,
            labels,
            taints,
            disks,
            hooks,
            settings,
        })
    }

    /// A node's k3s role, labels and taints, checked against its class and
    /// the lab's join URLs.
    #[allow(clippy::too_many_arguments)]
    fn k3s(
        &mut self,
        name: &str,
        file: &Path,
        f: &schema::NodeFile,
        class: Option<&(Class, &schema::ClassFile)>,
        hostname: &str,
        interfaces: &[Interface],
        lab: &Lab,
    ) -> (Option<Role>, Vec<String>, Vec<Taint>) {
        let class_runs_k3s = class.map(|c| c.0.k3s).unwrap_or(true);
        let (role, labels, taints) = match &f.k3s {
            None => {
                if class.is_some() && class_runs_k3s {
                    self.err(file, Pos::of(&f.class), format!("class `{}` runs k3s but the node has no `k3s:` section", f.class.value), "add `k3s: {role: agent}` (or server, or none for a node that stays out of the cluster)");
                }
                (Some(Role::None), Vec::new(), Vec::new())
            }
            Some(k) => {
                let role = self
                    .one_of(file, &k.role, "k3s role", &["server", "agent", "none"])
                    .map(|r| match r {
                        "server" => Role::Server,
                        "agent" => Role::Agent,
                        _ => Role::None,
                    });
                if let (Some(r), false) = (role, class_runs_k3s) {
                    if r != Role::None {
                        self.err(
                            file,
                            Pos::of(&k.role),
                            format!(
                                "role `{r}` on class `{}`, whose golden image does not carry k3s",
                                f.class.value
                            ),
                            "use `role: none`, or a class with `k3s: true`",
                        );
                    }
                }
                let mut label_keys: HashMap<String, u64> = HashMap::new();
                let mut labels = Vec::new();
                for l in &k.labels {
                    if let Some(key) = self.rule(file, l, H_LABEL, |v| rules::node_label(v)) {
                        if let Some(prev) = label_keys.insert(key.clone(), Pos::of(l).line) {
                            self.err(
                                file,
                                Pos::of(l),
                                format!("label key `{key}` is set twice (also at line {prev})"),
                                "keep one of them; a node has one value per label key",
                            );
                        }
                        labels.push(l.value.clone());
                    }
                }
                let mut taints: Vec<Taint> = Vec::new();
                let mut taint_lines: Vec<u64> = Vec::new();
                for t in &k.taints {
                    if let Some(taint) = self.rule(file, t, H_TAINT, |v| rules::taint(v)) {
                        // Kubernetes refuses a node whose taints repeat a key
                        // and effect pair, whatever the values.
                        if let Some(i) = taints
                            .iter()
                            .position(|o| o.key == taint.key && o.effect == taint.effect)
                        {
                            self.err(
                                file,
                                Pos::of(t),
                                format!(
                                    "taint key `{}` with effect {} is set twice (also at line {}); Kubernetes allows one taint per key and effect",
                                    taint.key, taint.effect.as_str(), taint_lines[i]
                                ),
                                "keep one of them",
                            );
                            continue;
                        }
                        taints.push(taint);
                        taint_lines.push(Pos::of(t).line);
                    }
                }
                if role == Some(Role::None) {
                    if let Some(t) = k.taints.first() {
                        self.err(file, Pos::of(t), "taints on a node with role `none`: it never registers with k3s, so they would never apply", "remove the taints or give the node a role");
                    }
                    if let Some(l) = k.labels.first() {
                        self.err(file, Pos::of(l), "labels on a node with role `none`: it never registers with k3s, so they would never apply", "remove the labels or give the node a role");
                    }
                }
                if let Some(r @ (Role::Server | Role::Agent)) = role {
                    // A recovery card must join a live server; never start a
                    // new cluster. The render picks the first URL that is not
                    // the node's own (render::k3s::join_url), by the same names.
                    let own: Vec<String> = interfaces
                        .iter()
                        .flat_map(|i| i.addresses.iter().map(|a| a.addr.to_string()))
                        .chain([
                            hostname.to_string(),
                            format!("{hostname}.{}", lab.cluster.domain),
                            name.to_string(),
                        ])
                        .collect();
                    let others = lab
                        .cluster
                        .servers
                        .iter()
                        .filter_map(|u| rules::server_url(u).ok())
                        .filter(|h| !own.contains(h))
                        .count();
                    if others == 0 && !lab.cluster.servers.is_empty() {
                        self.err(
                            file,
                            Pos::of(&k.role),
                            format!("{r} `{name}` would join itself: every cluster.servers URL in metis.yaml points at this node"),
                            "a recovery card joins a live server and never runs cluster-init; list another server's URL or a VIP in metis.yaml cluster.servers",
                        );
                    }
                }
                (role, labels, taints)
            }
        };
        (role, labels, taints)
    }

    /// Rules across nodes: hostnames, addresses, MACs and disk UUIDs are unique.
    pub(super) fn cross_node(&mut self, nodes: &[(String, PathBuf, schema::NodeFile)]) {
        let mut hostnames: HashMap<String, (PathBuf, Pos)> = HashMap::new();
        let mut ips: HashMap<IpAddr, (PathBuf, Pos)> = HashMap::new();
        let mut macs: HashMap<String, (PathBuf, Pos)> = HashMap::new();
        let mut uuids: HashMap<String, (PathBuf, Pos)> = HashMap::new();
        let dup = |cx: &mut Cx,
                   what: &str,
                   val: String,
                   file: &Path,
                   at: Pos,
                   prev: Option<(PathBuf, Pos)>| {
            if let Some((pf, pp)) = prev {
                cx.err(
                    file,
                    at,
                    format!(
                        "{what} `{val}` is also used by {}:{}",
                        pf.display(),
                        pp.line
                    ),
                    format!("every node needs its own {what}"),
                );
            }
        };
        for (name, file, f) in nodes {
            let (hn, hpos) = match &f.hostname {
                Some(h) => (h.value.clone(), Pos::of(h)),
                None => (name.clone(), Pos::FILE),
            };
            let prev = hostnames.insert(hn.clone(), (file.clone(), hpos));
            dup(self, "hostname", hn, file, hpos, prev);
            for iface in &f.network.interfaces {
                if let Ok(m) = rules::mac(&iface.mac.value) {
                    let prev = macs.insert(m.clone(), (file.clone(), Pos::of(&iface.mac)));
                    dup(self, "MAC address", m, file, Pos::of(&iface.mac), prev);
                }
                for a in &iface.addresses {
                    if let Some(c) = IpCidr::parse(&a.value) {
                        let prev = ips.insert(c.addr, (file.clone(), Pos::of(a)));
                        dup(self, "address", c.addr.to_string(), file, Pos::of(a), prev);
                    }
                }
            }
            for d in &f.disks {
                if let Some(u) = &d.value.uuid {
                    if let Ok(u2) = rules::fs_uuid(&u.value) {
                        let prev = uuids.insert(u2.clone(), (file.clone(), Pos::of(u)));
                        dup(self, "disk UUID", u2, file, Pos::of(u), prev);
                    }
                }
            }
        }
    }
}
