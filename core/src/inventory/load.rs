//! Reading the inventory directory, checking every rule and resolving it into
//! the [`model`](super::model). All findings of a run are collected, not only
//! the first: a pull request gets the whole list at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::diag::{closest, from_yaml_error, Diagnostic, Pos, Severity};
use super::model::*;
use super::rules;
use super::schema::{self, S};
use crate::oci::is_test_registry;

/// Built-in defaults, used where neither metis.yaml, the class nor the node says otherwise.
pub mod builtin {
    /// Time zone.
    pub const TIMEZONE: &str = "Etc/UTC";
    /// journald `SystemMaxUse=`.
    pub const JOURNALD_SYSTEM_MAX_USE: &str = "500M";
    /// journald `SystemKeepFree=`.
    pub const JOURNALD_SYSTEM_KEEP_FREE: &str = "1G";
    /// journald `MaxRetentionSec=`.
    pub const JOURNALD_MAX_RETENTION: &str = "1month";
    /// kubelet `containerLogMaxSize`.
    pub const CONTAINER_LOG_MAX_SIZE: &str = "10Mi";
    /// kubelet `containerLogMaxFiles`.
    pub const CONTAINER_LOG_MAX_FILES: u32 = 5;
    /// kubelet `imageGCHighThresholdPercent`.
    pub const IMAGE_GC_HIGH: u8 = 85;
    /// kubelet `imageGCLowThresholdPercent`.
    pub const IMAGE_GC_LOW: u8 = 80;
    /// Seconds to wait for a data disk.
    pub const DISK_TIMEOUT_SEC: u32 = 30;
}

// What to write instead, for each rule of [`rules`] (the message says what is
// wrong, these say how to fix it).
const H_PREFIX: &str =
    "write the repository prefix as lowercase path segments, e.g. `prefix: metis` or `lab/metis`";
const H_AGE: &str = "paste the whole public key: an `age1…` recipient (`age-keygen -y KEYFILE` prints it) or an `ssh-ed25519 …`/`ssh-rsa …` line";
const H_SERVER: &str =
    "write the join URL of a live server or the VIP, e.g. `https://10.0.0.10:6443`";
const H_DOMAIN: &str = "write the cluster's DNS domain, e.g. `lab.home.arpa`";
const H_TZ: &str = "write a name from the tz database, e.g. `Europe/Berlin` or `Etc/UTC` (`timedatectl list-timezones` lists them)";
const H_DNS: &str = "write the DNS server's IP address, e.g. `192.168.1.1` or `fd00::1`";
const H_SEARCH: &str =
    "write a search domain such as `lab.home.arpa` (lowercase letters, digits, `-` and dots)";
const H_JSIZE: &str =
    "write a size journald accepts: a number with K, M, G or T, e.g. `500M` or `1G`";
const H_SPAN: &str = "write a systemd time span, e.g. `1month`, `2week` or `30d`";
const H_LOGSIZE: &str = "write a size kubelet accepts, e.g. `10Mi` or `100Mi`";
const H_LOG_FILES: &str = "set `container_log_max_files` to 2 or more";
const H_PERCENT: &str = "write a whole percentage from 0 to 100";
const H_USER: &str = "write a Linux user name: lowercase letters, digits, `-` and `_`, starting with a letter, e.g. `ops`";
const H_SSH: &str = "paste the whole public key line, e.g. `ssh-ed25519 AAAA… comment` (from ~/.ssh/id_ed25519.pub)";
const H_HOST: &str =
    "write a host name of lowercase letters, digits and `-` (at most 63), e.g. `titan-04`";
const H_MAC: &str = "write the interface's MAC as six hex octets separated by `:`, e.g. `dc:a6:32:01:02:03` (`ip link` on the node shows it)";
const H_IFNAME: &str =
    "write a Linux interface name of at most 15 letters, digits or `-_.`, e.g. `eth0`";
const H_CIDR: &str =
    "write the address with its prefix length, e.g. `192.168.1.20/24` or `fd00::20/64`";
const H_GATEWAY: &str = "write the gateway's IPv4 address, e.g. `192.168.1.1`";
const H_GATEWAY6: &str = "write the gateway's IPv6 address, e.g. `fd00::1` or `fe80::1`";
const H_LABEL: &str =
    "write the label as `key=value`, e.g. `lab.example/board=rpi4` (see docs/inventory.md)";
const H_TAINT: &str = "write the taint as `key=value:Effect`, e.g. `dedicated=db:NoSchedule` (Effect NoSchedule, PreferNoSchedule or NoExecute)";
const H_UUID: &str = "write the filesystem UUID `blkid` shows for the disk on the node, e.g. `6b1f0c3e-93a2-4d7e-9c11-0123456789ab`";
const H_MODE: &str = "write the mode as octal digits in quotes, e.g. `\"0644\"` or `\"0600\"`";
const H_SHA: &str = "write the image file's SHA-256 as 64 lowercase hex digits (`sha256sum FILE`)";
const H_K3S_VERSION: &str = "write the k3s version the golden images carry, e.g. `v1.32.4+k3s1` (`k3s --version` prints it)";

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

/// The result of checking an inventory.
#[derive(Debug)]
pub struct Checked {
    /// The resolved inventory, when there was no error.
    pub inventory: Option<Inventory>,
    /// Every finding, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// Errors of [`load`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The inventory has errors; each names its file and line.
    #[error("{}", invalid_message(dir, diagnostics))]
    Invalid {
        /// The inventory directory.
        dir: String,
        /// All findings.
        diagnostics: Vec<Diagnostic>,
    },
}

/// The inventory's errors (the first few, each with file and line) and how to
/// see them all.
fn invalid_message(dir: &str, diagnostics: &[Diagnostic]) -> String {
    const SHOWN: usize = 5;
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let mut text = format!("the inventory at {dir} has {} error(s):", errors.len());
    for d in errors.iter().take(SHOWN) {
        text.push_str(&format!("\n{d}"));
    }
    if errors.len() > SHOWN {
        text.push_str(&format!("\n… and {} more", errors.len() - SHOWN));
    }
    text.push_str(&format!(
        "\nrun `metis-build check --inventory {dir}` to see every finding"
    ));
    text
}

/// Loads and validates an inventory, failing on any error.
///
/// Golden image files are not looked for: commands that work without them
/// (`nodes`, `render --out`, `golden import`, which is how they arrive) must
/// work on a fresh clone; the stage that reads one reports it missing.
pub fn load(dir: &Path) -> Result<Inventory, InventoryError> {
    let checked = check_with(
        dir,
        Required {
            sealed: true,
            golden_files: false,
        },
    );
    match checked.inventory {
        Some(inv) => Ok(inv),
        None => Err(InventoryError::Invalid {
            dir: dir.display().to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

/// Loads and validates an inventory like [`load`], except that nodes may lack
/// their sealed secrets (`secrets/<node>.age`): what `metis-build secrets`
/// works from, since it is what creates them.
pub fn load_for_sealing(dir: &Path) -> Result<Inventory, InventoryError> {
    let checked = check_with(
        dir,
        Required {
            sealed: false,
            golden_files: false,
        },
    );
    match checked.inventory {
        Some(inv) => Ok(inv),
        None => Err(InventoryError::Invalid {
            dir: dir.display().to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

/// Reads, validates and resolves the inventory in `dir`, collecting every
/// finding: what `metis-build check` reports. Beyond [`load`], every local
/// golden image file (`golden: {path: …}`) must exist and be readable, so a
/// fresh clone hears what to run before `publish` fails on each node.
pub fn check(dir: &Path) -> Checked {
    check_with(
        dir,
        Required {
            sealed: true,
            golden_files: true,
        },
    )
}

/// Which files outside the YAML the inventory must already have.
#[derive(Debug, Clone, Copy)]
struct Required {
    /// `secrets/<node>.age` and `secrets/cluster.age`.
    sealed: bool,
    /// The classes' local golden images (`golden.path`).
    golden_files: bool,
}

fn check_with(dir: &Path, required: Required) -> Checked {
    if !dir.is_dir() {
        return Checked {
            inventory: None,
            diagnostics: vec![Diagnostic::error(dir, Pos::FILE, "inventory directory does not exist").hint(
                "pass --inventory DIR (or set METIS_INVENTORY) to the directory holding metis.yaml, classes/ and nodes/",
            )],
        };
    }
    let mut cx = Cx {
        dir: dir.to_path_buf(),
        diags: Vec::new(),
    };
    let lab = cx.parse::<schema::LabFile>(Path::new("metis.yaml"));
    let (class_files, unparsed_classes) = cx.parse_dir::<schema::ClassFile>("classes");
    let (node_files, _) = cx.parse_dir::<schema::NodeFile>("nodes");

    let mut inventory = None;
    if let Some((lab_file, lab_text)) = lab {
        let lab = cx.lab(&lab_file);
        cx.flasher_reads_registry(&lab_file, &lab_text);
        let classes: BTreeMap<String, (Class, &schema::ClassFile)> = class_files
            .iter()
            .filter_map(|(name, path, f)| cx.class(name, path, f).map(|c| (name.clone(), (c, f))))
            .collect();
        // A class whose file exists is known even when it failed to parse:
        // its own error says what is wrong, its nodes get no second one.
        let mut class_names: Vec<String> = class_files
            .iter()
            .map(|(n, _, _)| n.clone())
            .chain(unparsed_classes)
            .collect();
        class_names.sort();
        let mut nodes = BTreeMap::new();
        for (name, path, f) in &node_files {
            if let Some(node) = cx.node(name, path, f, &lab_file, &lab, &classes, &class_names) {
                nodes.insert(name.clone(), node);
            }
        }
        cx.cross_node(&node_files);
        if required.sealed {
            cx.sealed_sources(&node_files);
        }
        // Apart, so a clone without its images still hears about everything
        // else, render errors included.
        let golden_findings = if required.golden_files {
            cx.golden_files(&class_files)
        } else {
            Vec::new()
        };
        if node_files.is_empty() && cx.errors() == 0 {
            cx.diags.push(
                Diagnostic::warning(Path::new("nodes"), Pos::FILE, "the inventory has no nodes")
                    .hint("add one file per node as nodes/<name>.yaml (see docs/inventory.md)"),
            );
        }
        if cx.errors() == 0 {
            let inv = Inventory {
                dir: dir.to_path_buf(),
                lab,
                classes: classes.into_iter().map(|(k, (c, _))| (k, c)).collect(),
                nodes,
            };
            cx.renders(&inv);
            if cx.errors() == 0 && golden_findings.is_empty() {
                inventory = Some(inv);
            }
        }
        cx.diags.extend(golden_findings);
    }
    let mut diagnostics = cx.diags;
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diagnostics.dedup();
    Checked {
        inventory,
        diagnostics,
    }
}

struct Cx {
    dir: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Cx {
    fn errors(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Records an error; every error says how to fix it.
    fn err(&mut self, file: &Path, at: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(file, at, msg).hint(hint));
    }

    /// Checks a spanned value with a rule, recording an error at its
    /// position with `hint`, what to write instead.
    fn rule<T, R>(
        &mut self,
        file: &Path,
        v: &S<T>,
        hint: &str,
        f: impl FnOnce(&T) -> Result<R, String>,
    ) -> Option<R> {
        match f(&v.value) {
            Ok(r) => Some(r),
            Err(msg) => {
                self.err(file, Pos::of(v), msg, hint);
                None
            }
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, rel: &Path) -> Option<(T, String)> {
        let full = self.dir.join(rel);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "is {} an inventory directory? It needs metis.yaml, classes/ and nodes/ (see docs/inventory.md)",
                        self.dir.display()
                    )
                } else {
                    format!(
                        "make {} readable by this user",
                        self.dir.join(rel).display()
                    )
                };
                self.err(rel, Pos::FILE, format!("cannot read: {e}"), hint);
                return None;
            }
        };
        match serde_saphyr::from_str::<T>(&text) {
            Ok(v) => Some((v, text)),
            Err(e) => {
                self.diags.push(from_yaml_error(rel, &text, &e));
                None
            }
        }
    }

    /// The parsed files of `sub/`, and the names of those that exist but did
    /// not parse (their errors are recorded; they still exist for references).
    fn parse_dir<T: serde::de::DeserializeOwned>(
        &mut self,
        sub: &str,
    ) -> (Vec<(String, PathBuf, T)>, Vec<String>) {
        let full = self.dir.join(sub);
        let entries = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e) => {
                self.err(
                    Path::new(sub),
                    Pos::FILE,
                    format!("cannot read directory: {e}"),
                    format!("create {sub}/ with one YAML file per entry"),
                );
                return (Vec::new(), Vec::new());
            }
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        let mut out = Vec::new();
        let mut unparsed = Vec::new();
        for path in names {
            let rel = Path::new(sub).join(path.file_name().unwrap_or_default());
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "yml" {
                self.err(
                    &rel,
                    Pos::FILE,
                    "inventory files must end in .yaml",
                    format!("rename it to {}", rel.with_extension("yaml").display()),
                );
                continue;
            }
            if ext != "yaml" {
                continue;
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Err(e) = rules::dns_label(&stem) {
                self.err(
                    &rel,
                    Pos::FILE,
                    format!("file name is not a valid name: {e}"),
                    "the file stem is the node/class name; rename the file",
                );
                continue;
            }
            match self.parse::<T>(&rel) {
                Some((v, _)) => out.push((stem, rel, v)),
                None => unparsed.push(stem),
            }
        }
        (out, unparsed)
    }

    /// Every node must render: whatever the rules above miss but the render
    /// refuses is still found here, at `check` time, not when a card is built.
    fn renders(&mut self, inv: &Inventory) {
        for node in inv.nodes.values() {
            if let Err(e) = crate::render::render(inv, &node.name) {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(&format!(": {s}"));
                    source = s.source();
                }
                self.err(
                    &node.file,
                    Pos::FILE,
                    message,
                    format!(
                        "fix what it names in {} (or in metis.yaml or the node's class); `metis-build render {}` shows the same error",
                        node.file.display(),
                        node.name
                    ),
                );
            }
        }
    }

    /// Every class pinned to a local golden image needs the file: without it
    /// no card of the class can be built. Only presence and readability are
    /// checked (the digest is checked where the image is read, in full);
    /// `oci:` and `url:` pins need the network and are left to `publish`.
    fn golden_files(
        &self,
        class_files: &[(String, PathBuf, schema::ClassFile)],
    ) -> Vec<Diagnostic> {
        let mut findings = Vec::new();
        for (class, file, f) in class_files {
            let g = &f.golden;
            let Some(path) = g
                .path
                .as_ref()
                .filter(|_| g.oci.is_none() && g.url.is_none())
            else {
                continue;
            };
            let full = self.dir.join(&path.value);
            let problem = match std::fs::metadata(&full) {
                Ok(m) if m.is_file() => match std::fs::File::open(&full) {
                    Ok(_) => continue,
                    Err(e) => format!("cannot be read: {e}"),
                },
                Ok(_) => "is not a file".to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                Err(e) => format!("cannot be read: {e}"),
            };
            findings.push(
                Diagnostic::error(
                    file,
                    Pos::of(path),
                    format!(
                        "golden image `{}` of class `{class}` {problem} ({})",
                        path.value,
                        full.display()
                    ),
                )
                .hint(format!(
                    "run `tests/golden/gen.sh {}` (the example's stand-ins) or `metis-build golden import {class} FILE --sha256 HEX --pin`",
                    full.parent().unwrap_or(&self.dir).display()
                )),
            );
        }
        findings
    }

    /// Every node needs its sealed source `secrets/<node>.age`, and a lab with
    /// nodes needs `secrets/cluster.age`: without them no card can be built.
    fn sealed_sources(&mut self, node_files: &[(String, PathBuf, schema::NodeFile)]) {
        let hint = format!(
            "run `metis-build secrets init --inventory {}` (it creates only what is missing)",
            self.dir.display()
        );
        for (name, path, _) in node_files {
            if name == "cluster" {
                self.err(
                    path,
                    Pos::FILE,
                    "a node cannot be named `cluster`: secrets/cluster.age holds the lab-wide secrets",
                    "rename the node file",
                );
                continue;
            }
            let sealed = Path::new("secrets").join(format!("{name}.age"));
            if !self.dir.join(&sealed).is_file() {
                self.err(
                    path,
                    Pos::FILE,
                    format!(
                        "node `{name}` has no sealed secrets ({} is missing)",
                        sealed.display()
                    ),
                    hint.clone(),
                );
            }
        }
        if !node_files.is_empty() && !self.dir.join("secrets/cluster.age").is_file() {
            self.err(
                Path::new("metis.yaml"),
                Pos::FILE,
                "the lab has no sealed cluster secrets (secrets/cluster.age is missing)",
                hint,
            );
        }
    }

    /// Recipients derived from the demo identities in `demo-keys/*.agekey`,
    /// when that directory exists.
    fn demo_recipients(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("demo-keys")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("agekey") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines().map(str::trim) {
                if let Ok(id) = line.parse::<age::x25519::Identity>() {
                    out.push(id.to_public().to_string());
                }
            }
        }
        out
    }

    /// `metis-flash --inventory` reads the `registry:` block line by line, not
    /// as YAML (lab_registry): a warning where it could not read this one.
    /// An empty host or prefix already has its error.
    fn flasher_reads_registry(&mut self, f: &schema::LabFile, text: &str) {
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

    fn lab(&mut self, f: &schema::LabFile) -> Lab {
        let file = Path::new("metis.yaml");
        let host = f.registry.host.value.clone();
        if host.is_empty() {
            self.err(
                file,
                Pos::of(&f.registry.host),
                "registry host is empty",
                "write `host: harbor.example.org` or `oci:/path/to/dir`",
            );
        } else if !host.starts_with("oci:") {
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
            let demo = self.demo_recipients();
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
                    .ok_or_else(|| format!("`{s}` is not a k3s version; write it as `v1.32.4+k3s1` (the version the golden images carry)"))
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

    fn one_of<'a>(
        &mut self,
        file: &Path,
        v: &S<String>,
        what: &str,
        options: &[&'a str],
    ) -> Option<&'a str> {
        if let Some(o) = options.iter().find(|o| **o == v.value) {
            return Some(o);
        }
        let hint = match closest(&v.value, options.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("use one of: {}", options.join(", ")),
        };
        self.err(
            file,
            Pos::of(v),
            format!("unknown {what} `{}`", v.value),
            hint,
        );
        None
    }

    fn class(&mut self, name: &str, file: &Path, f: &schema::ClassFile) -> Option<Class> {
        let arch = self.one_of(file, &f.architecture, "architecture", &["arm64", "amd64"]);
        let os = self.one_of(file, &f.os, "os", &["ubuntu", "armbian", "debian"]);
        let g = &f.golden;
        let sources = [g.oci.is_some(), g.path.is_some(), g.url.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let golden = if sources != 1 {
            self.err(
                file,
                Pos::FILE,
                "golden must name exactly one of `oci`, `path` or `url`",
                "pin the class's golden image once, by digest",
            );
            None
        } else if let Some(oci) = &g.oci {
            let ok = oci
                .value
                .split_once("@sha256:")
                .is_some_and(|(_, d)| rules::sha256_hex(d).is_ok());
            if !ok {
                self.err(
                    file,
                    Pos::of(oci),
                    format!("`{}` is not pinned by digest", oci.value),
                    "write it as `registry/repo@sha256:<64 hex>`; tags can move",
                );
            }
            Some(Golden::Oci {
                reference: oci.value.clone(),
            })
        } else {
            let sha = match &g.sha256 {
                Some(s) => self
                    .rule(file, s, H_SHA, |v| rules::sha256_hex(v))
                    .map(|_| s.value.clone()),
                None => {
                    self.err(
                        file,
                        Pos::FILE,
                        "golden image has no `sha256`",
                        "add `sha256:` with the image file's digest (`sha256sum FILE`)",
                    );
                    None
                }
            };
            match (&g.path, &g.url, sha) {
                (Some(p), _, Some(sha256)) => Some(Golden::Path {
                    path: PathBuf::from(&p.value),
                    sha256,
                }),
                (_, Some(u), Some(sha256)) => {
                    if !u.value.starts_with("https://") && !u.value.starts_with("http://") {
                        self.err(
                            file,
                            Pos::of(u),
                            format!("`{}` is not an http(s) URL", u.value),
                            "write the image's download URL starting with `https://`",
                        );
                    }
                    Some(Golden::Url {
                        url: u.value.clone(),
                        sha256,
                    })
                }
                _ => None,
            }
        };
        let seed_fs = match &f.seed.filesystem {
            Some(fs) => self
                .one_of(file, fs, "seed filesystem", &["vfat"])
                .map(|_| SeedFilesystem::Vfat),
            None => Some(SeedFilesystem::Vfat),
        };
        if f.seed.label.value.is_empty() {
            self.err(
                file,
                Pos::of(&f.seed.label),
                "seed label is empty",
                "Ubuntu for Raspberry Pi: system-boot; Armbian: armbi_boot; cloud images: CIDATA",
            );
        }
        if f.root.label.value.is_empty() {
            self.err(
                file,
                Pos::of(&f.root.label),
                "root label is empty",
                "write the golden image's root filesystem label (Ubuntu for Raspberry Pi: writable; Armbian: armbi_root; cloud images: rootfs); `blkid` on the image shows it",
            );
        }
        self.settings_rules(file, &f.defaults);
        Some(Class {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: f.description.clone().unwrap_or_default(),
            architecture: match arch? {
                "arm64" => Arch::Arm64,
                _ => Arch::Amd64,
            },
            os: match os? {
                "ubuntu" => Os::Ubuntu,
                "armbian" => Os::Armbian,
                _ => Os::Debian,
            },
            golden: golden?,
            seed: SeedLocation {
                label: f.seed.label.value.clone(),
                filesystem: seed_fs?,
            },
            root_label: f.root.label.value.clone(),
            k3s: f.k3s,
        })
    }

    fn settings_rules(&mut self, file: &Path, s: &schema::SettingsFile) {
        if let Some(tz) = &s.timezone {
            self.rule(file, tz, H_TZ, |v| {
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains("..") {
                    Err(format!(
                        "`{v}` is not a time zone such as `Europe/Berlin` or `Etc/UTC`"
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
                        Err(format!(
                            "container_log_max_files is {v}; kubelet requires at least 2"
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
                        Err(format!("{v} is not a percentage (0–100)"))
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

    #[allow(clippy::too_many_arguments)]
    fn node(
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

        // Network.
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
                        Err(format!(
                            "`{v}` is not a Linux interface name (1–15 letters, digits, `-_.`)"
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

        // k3s.
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
                            hostname.clone(),
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

        // Disks.
        let mut disks = Vec::new();
        let mut mounts: HashMap<String, u64> = HashMap::new();
        for d in &f.disks {
            let at = Pos::of(d);
            let d = &d.value;
            let uuid = match &d.uuid {
                Some(u) => self.rule(file, u, H_UUID, |v| rules::fs_uuid(v)),
                None => {
                    let what = if d.longhorn { "Longhorn disk" } else { "disk" };
                    self.err(file, at, format!("{what} has no `uuid`"), "disks are mounted by filesystem UUID so a renamed device cannot be mounted in its place; take it from `blkid` on the node");
                    None
                }
            };
            let mount = match &d.mount {
                Some(m) => {
                    if !m.value.starts_with('/') || m.value == "/" || m.value.contains("..") {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` must be an absolute path other than /",
                                m.value
                            ),
                            "write the full path without `..`, e.g. `mount: /var/lib/longhorn`",
                        );
                    }
                    if m.value
                        .contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\')
                    {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` contains whitespace or a backslash, which fstab cannot hold as written",
                                m.value
                            ),
                            "choose a mount point without spaces or backslashes, e.g. `/var/lib/longhorn-2`",
                        );
                    }
                    if let Some(prev) = mounts.insert(m.value.clone(), Pos::of(m).line) {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` is used twice (also at line {prev})",
                                m.value
                            ),
                            "give each disk its own mount point, e.g. `/var/lib/longhorn-2`",
                        );
                    }
                    Some(m.value.clone())
                }
                None => {
                    self.err(
                        file,
                        at,
                        "disk has no `mount` point",
                        "add `mount: /var/lib/longhorn` (or where it belongs)",
                    );
                    None
                }
            };
            if let Some(bad) = d.options.iter().find(|o| {
                o.is_empty()
                    || o.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\')
            }) {
                self.err(
                    file,
                    at,
                    format!("mount option `{bad}` is empty or contains whitespace or a backslash, which fstab cannot hold as written"),
                    "write each option as its own list item without spaces, e.g. `options: [noatime, discard]`",
                );
            }
            let filesystem = match &d.filesystem {
                Some(fs) => self
                    .one_of(file, fs, "filesystem", &["ext4", "xfs", "btrfs"])
                    .map(str::to_string),
                None => Some("ext4".to_string()),
            };
            if let (Some(uuid), Some(mount), Some(filesystem)) = (uuid, mount, filesystem) {
                disks.push(Disk {
                    uuid,
                    mount,
                    filesystem,
                    longhorn: d.longhorn,
                    options: d.options.clone(),
                });
            }
        }

        // Hooks.
        let mut hooks = Hooks::default();
        if let Some(h) = &f.hooks {
            for hf in &h.files {
                if !hf.path.value.starts_with('/') {
                    self.err(
                        file,
                        Pos::of(&hf.path),
                        format!("hook file path `{}` must be absolute", hf.path.value),
                        format!(
                            "write the full path on the node, e.g. `/{}`",
                            hf.path.value.trim_start_matches("./")
                        ),
                    );
                }
                if crate::render::paths::is_metis_owned(&hf.path.value) {
                    self.err(
                        file,
                        Pos::of(&hf.path),
                        format!("hook file `{}` would replace a file Metis writes itself", hf.path.value),
                        "set what it holds through the inventory instead (k3s, network, kubelet, journald, disks); to add to it, write a drop-in next to it, e.g. /etc/rancher/k3s/config.yaml.d/50-hook.yaml",
                    );
                }
                let source = match (&hf.content, &hf.secret) {
                    (Some(c), None) => Some(HookFileSource::Content(c.clone())),
                    (None, Some(s)) => Some(HookFileSource::Secret(s.value.clone())),
                    _ => {
                        self.err(file, Pos::of(&hf.path), "hook file needs exactly one of `content` or `secret`", "`content:` for inline text, `secret: KEY` for a value of the node's sealed secrets");
                        None
                    }
                };
                let default_mode = if hf.secret.is_some() { "0600" } else { "0644" };
                let mode = match &hf.mode {
                    Some(m) => self.rule(file, m, H_MODE, |v| rules::file_mode(v)),
                    None => Some(default_mode.to_string()),
                };
                let owner = hf
                    .owner
                    .as_ref()
                    .map(|o| o.value.clone())
                    .unwrap_or_else(|| "root:root".into());
                if let (Some(source), Some(mode)) = (source, mode) {
                    hooks.files.push(HookFile {
                        path: hf.path.value.clone(),
                        source,
                        mode,
                        owner,
                    });
                }
            }
            for c in &h.commands {
                if c.value.trim().is_empty() {
                    self.err(
                        file,
                        Pos::of(c),
                        "empty hook command",
                        "remove the empty entry from `hooks.commands`",
                    );
                } else {
                    hooks.commands.push(c.value.clone());
                }
            }
        }

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

    /// Rules across nodes: hostnames, addresses, MACs and disk UUIDs are unique.
    fn cross_node(&mut self, nodes: &[(String, PathBuf, schema::NodeFile)]) {
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

/// Merges lab defaults → class defaults → node overrides, node winning.
/// Scalars and lists replace; journald and kubelet merge key by key; users merge by name.
fn merge_settings(
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
