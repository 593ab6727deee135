//! `metis.yaml`: registry, signing keys, operators, cluster and lab defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::{Diagnostic, Pos};
use crate::inventory::model::*;
use crate::inventory::rules::{self, Rule, RuleError};
use crate::inventory::schema;
use crate::location::{self, is_test_registry};

impl Cx {
    /// `metis-flash --inventory` reads the `registry:` block line by line, not
    /// as YAML (lab_registry): a warning where it could not read this one.
    /// An empty host or prefix already has its error.
    pub(super) fn flasher_reads_registry(&mut self, f: &schema::LabFile, text: &str) {
        if f.registry.host.value.is_empty() || f.registry.prefix.value.is_empty() {
            return;
        }
        if let Err((line, column, reason)) = crate::lab_registry::check_block(text) {
            self.diags.push(
                Diagnostic::warning(
                    Path::new("metis.yaml"),
                    Pos { line, column },
                    format!("`metis-flash --inventory` cannot read this registry block: {reason}"),
                )
                .hint("write `registry:` with one `host:`, `prefix:` and `ca_file:` line each under it, as docs/inventory.md does (metis-flash setup does not need it)"),
            );
        }
    }

    pub(super) fn lab(&mut self, f: &schema::LabFile) -> Lab {
        let file = Path::new("metis.yaml");
        let host = f.registry.host.value.clone();
        if host.is_empty() {
            self.err(
                file,
                Pos::of(&f.registry.host),
                "registry host is empty",
                "write `host: harbor.example.org` or `oci:/path/to/dir`",
            );
        } else if location::layout_dir(&host).is_none() {
            let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
            if name.parse::<IpAddr>().is_err()
                && rules::dns_name(name).is_err()
                && name != "localhost"
            {
                self.err(
                    file,
                    Pos::of(&f.registry.host),
                    format!("`{host}` is not `host[:port]` nor `oci:DIR`"),
                    "write the registry's host name or address with an optional port, e.g. `harbor.lab.example:443`, or `oci:DIR` for an OCI layout directory",
                );
            }
        }
        self.rule(file, &f.registry.prefix, H_PREFIX, |s| {
            rules::repo_prefix(s)
        });
        if let Some(ca) = &f.registry.ca_file {
            if !self.dir.join(&ca.value).is_file() {
                self.err(
                    file,
                    Pos::of(ca),
                    format!("registry CA file `{}` does not exist", ca.value),
                    format!(
                        "put the registry's CA certificate (PEM) at {} (paths are relative to the inventory directory), or remove `ca_file:` if the registry's certificate is publicly trusted",
                        self.dir.join(&ca.value).display()
                    ),
                );
            }
        }
        if f.signing.public_keys.is_empty() {
            self.err(
                file,
                Pos::FILE,
                "signing.public_keys is empty",
                "name at least one cosign public key file (metis-build keys generate makes one)",
            );
        }
        for k in &f.signing.public_keys {
            if !self.dir.join(&k.value).is_file() {
                self.err(
                    file,
                    Pos::of(k),
                    format!("public key file `{}` does not exist", k.value),
                    "paths are relative to the inventory directory",
                );
            }
        }
        let demo_key = f.signing.public_keys.iter().find(|k| {
            Path::new(&k.value)
                .components()
                .any(|c| c.as_os_str() == "demo-keys")
        });
        if let Some(k) = demo_key {
            if !is_test_registry(&host) {
                self.diags.push(
                    Diagnostic::warning(
                        file,
                        Pos::of(k),
                        format!("DEMO signing key `{}` used with registry `{host}`: its private half is public, anyone can sign for this lab", k.value),
                    )
                    .hint("generate the lab's own keys (see inventory/demo-keys/README.md) before publishing anywhere but a loopback or oci: registry"),
                );
            }
        }
        if f.operators.recipients.is_empty() {
            self.err(
                file,
                Pos::FILE,
                "operators.recipients is empty: nobody could decrypt a card's secrets",
                "add the age public key (age1…) or SSH public key of each operator",
            );
        }
        for r in &f.operators.recipients {
            self.rule(file, r, H_AGE, |s| rules::age_recipient(s));
        }
        if let Some(b) = &f.builder {
            self.rule(file, &b.recipient, H_AGE, |s| rules::age_recipient(s));
        }
        if !is_test_registry(&host) {
            let demo = self.demo_recipients.clone();
            let named = f
                .operators
                .recipients
                .iter()
                .map(|r| ("operator", r))
                .chain(f.builder.iter().map(|b| ("builder", &b.recipient)));
            for (who, r) in named {
                if demo.iter().any(|d| d == r.value.trim()) {
                    self.diags.push(
                        Diagnostic::warning(
                            file,
                            Pos::of(r),
                            format!("DEMO {who} age recipient used with registry `{host}`: its identity is public (demo-keys/), anyone can decrypt this lab's secrets"),
                        )
                        .hint("generate the lab's own age keys (age-keygen; see inventory/demo-keys/README.md), then `metis-build secrets rekey`"),
                    );
                }
            }
        }
        if f.cluster.servers.is_empty() {
            self.err(
                file,
                Pos::FILE,
                "cluster.servers is empty",
                "list the join URL of the live servers (or the VIP), e.g. `https://10.0.0.10:6443`",
            );
        }
        for s in &f.cluster.servers {
            self.rule(file, s, H_SERVER, |s| rules::server_url(s));
        }
        let version = self
            .rule(file, &f.cluster.k3s_version, H_K3S_VERSION, |s| {
                K3sVersion::parse(s)
                    .ok_or_else(|| RuleError::new(Rule::K3sVersion, format!("`{s}` is not a k3s version; write it as `v1.32.4+k3s1` (the version the golden images carry)")))
            })
            .unwrap_or(K3sVersion {
                major: 1,
                minor: 32,
                patch: 0,
                k3s: 1,
            });
        self.rule(file, &f.cluster.domain, H_DOMAIN, |s| rules::dns_name(s));
        self.settings_rules(file, &f.defaults);
        Lab {
            registry: Registry {
                host,
                prefix: f.registry.prefix.value.clone(),
                ca_file: f.registry.ca_file.as_ref().map(|c| PathBuf::from(&c.value)),
            },
            signing_public_keys: f
                .signing
                .public_keys
                .iter()
                .map(|k| PathBuf::from(&k.value))
                .collect(),
            operator_recipients: f
                .operators
                .recipients
                .iter()
                .map(|r| r.value.clone())
                .collect(),
            builder_recipient: f.builder.as_ref().map(|b| b.recipient.value.clone()),
            cluster: Cluster {
                servers: f.cluster.servers.iter().map(|s| s.value.clone()).collect(),
                k3s_version: version,
                domain: f.cluster.domain.value.clone(),
            },
        }
    }
}
