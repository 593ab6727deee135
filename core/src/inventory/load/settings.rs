//! Settings a lab, class or node may set (time zone, DNS, journald, kubelet,
//! users, extra k3s config): their rules, and the merge lab → class → node.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::builtin;
use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::Pos;
use crate::inventory::model::*;
use crate::inventory::rules::{self, Rule, RuleError};
use crate::inventory::schema::{self, S};

/// k3s config keys Metis writes itself; an inventory may not set them in `k3s_config`.
const METIS_OWNED_K3S_KEYS: &[&str] = &[
    "node-name",
    "node-ip",
    "node-label",
    "node-taint",
    "server",
    "token",
    "token-file",
    "agent-token",
    "agent-token-file",
    "cluster-init",
    "kubelet-arg",
];

impl Cx {
    pub(super) fn settings_rules(&mut self, file: &Path, s: &schema::SettingsFile) {
        if let Some(tz) = &s.timezone {
            self.rule(file, tz, H_TZ, |v| {
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains("..") {
                    Err(RuleError::new(
                        Rule::TimeZone,
                        format!("`{v}` is not a time zone such as `Europe/Berlin` or `Etc/UTC`"),
                    ))
                } else {
                    Ok(())
                }
            });
        }
        for d in s.dns.iter().flatten() {
            self.rule(file, d, H_DNS, |v| rules::ip(v));
        }
        for d in s.search.iter().flatten() {
            self.rule(file, d, H_SEARCH, |v| rules::dns_name(v));
        }
        if let Some(j) = &s.journald {
            for v in [&j.system_max_use, &j.system_keep_free]
                .into_iter()
                .flatten()
            {
                self.rule(file, v, H_JSIZE, |v| rules::journald_size(v));
            }
            if let Some(v) = &j.max_retention {
                self.rule(file, v, H_SPAN, |v| rules::time_span(v));
            }
        }
        if let Some(k) = &s.kubelet {
            if let Some(v) = &k.container_log_max_size {
                self.rule(file, v, H_LOGSIZE, |v| rules::log_size(v));
            }
            if let Some(v) = &k.container_log_max_files {
                self.rule(file, v, H_LOG_FILES, |v| {
                    if *v >= 2 {
                        Ok(())
                    } else {
                        Err(RuleError::new(
                            Rule::LogFiles,
                            format!("container_log_max_files is {v}; kubelet requires at least 2"),
                        ))
                    }
                });
            }
            for v in [&k.image_gc_high_threshold, &k.image_gc_low_threshold]
                .into_iter()
                .flatten()
            {
                self.rule(file, v, H_PERCENT, |v| {
                    if *v <= 100 {
                        Ok(())
                    } else {
                        Err(RuleError::new(
                            Rule::Percentage,
                            format!("{v} is not a percentage (0–100)"),
                        ))
                    }
                });
            }
        }
        for (key, v) in s.k3s_config.iter().flatten() {
            if METIS_OWNED_K3S_KEYS.contains(&key.as_str()) {
                self.err(
                    file,
                    Pos::of(v),
                    format!(
                        "k3s_config may not set `{key}`: Metis writes it from the node's inventory"
                    ),
                    "use the node's k3s/network/kubelet settings instead",
                );
            }
        }
        for u in s.users.iter().flatten() {
            self.rule(file, &u.name, H_USER, |v| rules::user_name(v));
            for k in &u.ssh_authorized_keys {
                self.rule(file, k, H_SSH, |v| rules::ssh_public_key(v));
            }
        }
        let mut seen = HashMap::new();
        for u in s.users.iter().flatten() {
            if let Some(prev) = seen.insert(u.name.value.clone(), Pos::of(&u.name)) {
                self.err(
                    file,
                    Pos::of(&u.name),
                    format!(
                        "user `{}` is listed twice (first at line {})",
                        u.name.value, prev.line
                    ),
                    "keep one entry per user; merge their keys and groups into it",
                );
            }
        }
    }
}

/// Merges lab defaults → class defaults → node overrides, node winning.
/// Scalars and lists replace; journald and kubelet merge key by key; users merge by name.
pub(super) fn merge_settings(
    lab: &schema::SettingsFile,
    class: Option<&schema::SettingsFile>,
    node: &schema::SettingsFile,
) -> Settings {
    let layers: Vec<&schema::SettingsFile> = [Some(lab), class, Some(node)]
        .into_iter()
        .flatten()
        .collect();
    fn last<'a, T: 'a>(it: impl Iterator<Item = Option<&'a T>>) -> Option<&'a T> {
        it.flatten().last()
    }
    let timezone = last(layers.iter().map(|l| l.timezone.as_ref()))
        .map(|s| s.value.clone())
        .unwrap_or_else(|| builtin::TIMEZONE.to_string());
    let strings = |f: &dyn Fn(&schema::SettingsFile) -> Option<&Vec<S<String>>>| -> Vec<String> {
        last(layers.iter().map(|l| f(l)))
            .map(|v| v.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default()
    };
    let ntp = strings(&|l| l.ntp.as_ref());
    let dns = strings(&|l| l.dns.as_ref())
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let search = strings(&|l| l.search.as_ref());
    let j = |f: &dyn Fn(&schema::JournaldFile) -> Option<&S<String>>, d: &str| -> String {
        last(layers.iter().map(|l| l.journald.as_ref().and_then(f)))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| d.to_string())
    };
    let journald = Journald {
        system_max_use: j(
            &|x| x.system_max_use.as_ref(),
            builtin::JOURNALD_SYSTEM_MAX_USE,
        ),
        system_keep_free: j(
            &|x| x.system_keep_free.as_ref(),
            builtin::JOURNALD_SYSTEM_KEEP_FREE,
        ),
        max_retention: j(
            &|x| x.max_retention.as_ref(),
            builtin::JOURNALD_MAX_RETENTION,
        ),
    };
    let k = |f: &dyn Fn(&schema::KubeletFile) -> Option<u64>| -> Option<u64> {
        layers
            .iter()
            .rev()
            .find_map(|l| l.kubelet.as_ref().and_then(f))
    };
    let kubelet = Kubelet {
        container_log_max_size: last(layers.iter().map(|l| {
            l.kubelet
                .as_ref()
                .and_then(|x| x.container_log_max_size.as_ref())
        }))
        .map(|s| s.value.clone())
        .unwrap_or_else(|| builtin::CONTAINER_LOG_MAX_SIZE.to_string()),
        container_log_max_files: k(&|x| x.container_log_max_files.as_ref().map(|v| v.value as u64))
            .map(|v| v as u32)
            .unwrap_or(builtin::CONTAINER_LOG_MAX_FILES),
        image_gc_high_threshold: k(&|x| x.image_gc_high_threshold.as_ref().map(|v| v.value as u64))
            .map(|v| v as u8)
            .unwrap_or(builtin::IMAGE_GC_HIGH),
        image_gc_low_threshold: k(&|x| x.image_gc_low_threshold.as_ref().map(|v| v.value as u64))
            .map(|v| v as u8)
            .unwrap_or(builtin::IMAGE_GC_LOW),
    };
    let mut k3s_extra_config = BTreeMap::new();
    for l in &layers {
        for (key, v) in l.k3s_config.iter().flatten() {
            k3s_extra_config.insert(key.clone(), v.value.clone());
        }
    }
    let mut users: Vec<User> = Vec::new();
    for l in &layers {
        for u in l.users.iter().flatten() {
            let user = User {
                name: u.name.value.clone(),
                gecos: u.gecos.clone(),
                ssh_authorized_keys: u
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| k.value.clone())
                    .collect(),
                sudo: u.sudo,
                shell: u.shell.clone(),
                groups: u.groups.clone(),
            };
            match users.iter_mut().find(|x| x.name == user.name) {
                Some(x) => *x = user,
                None => users.push(user),
            }
        }
    }
    let disk_timeout_sec = last(layers.iter().map(|l| l.disk_timeout_sec.as_ref()))
        .map(|s| s.value)
        .unwrap_or(builtin::DISK_TIMEOUT_SEC);
    Settings {
        timezone,
        ntp,
        dns,
        search,
        journald,
        kubelet,
        k3s_extra_config,
        users,
        disk_timeout_sec,
    }
}
