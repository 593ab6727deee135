//! The resolved inventory: what the rest of Metis works from once loading and
//! validation succeeded. Every value is concrete (defaults merged, addresses
//! parsed); nothing here carries YAML positions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::location::RegistryLocation;

/// The whole lab: `metis.yaml`, its classes and its nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Directory the inventory was loaded from.
    pub dir: PathBuf,
    /// Lab-wide settings from `metis.yaml`.
    pub lab: Lab,
    /// Classes by name (file stem of `classes/<name>.yaml`).
    pub classes: BTreeMap<String, Class>,
    /// Nodes by name (file stem of `nodes/<name>.yaml`).
    pub nodes: BTreeMap<String, Node>,
}

impl Inventory {
    /// Where the lab's registry is, for [`Registry::open_at`](crate::oci::Registry::open_at):
    /// an `oci:` directory written relative is relative to the inventory directory.
    pub fn registry_location(&self) -> RegistryLocation {
        RegistryLocation::in_inventory(&self.dir, &self.lab.registry.host)
    }

    /// The lab registry's host, or `None` when the lab publishes into an OCI
    /// image-layout directory (`oci:`), which has no host.
    pub fn registry_host(&self) -> Option<&str> {
        crate::location::host(&self.lab.registry.host)
    }

    /// The registry's extra CA file, relative to the inventory directory.
    pub fn registry_ca_file(&self) -> Option<PathBuf> {
        self.lab.registry.ca_file.as_ref().map(|f| self.dir.join(f))
    }

    /// The class a node belongs to. Loading guarantees it exists.
    pub fn class_of(&self, node: &Node) -> &Class {
        self.classes
            .get(&node.class)
            .expect("validated inventory: every node's class exists")
    }
}

/// Lab-wide settings from `metis.yaml`.
#[derive(Debug, Clone, Serialize)]
pub struct Lab {
    /// Where artifacts are published.
    pub registry: Registry,
    /// Cosign public keys (paths, relative to the inventory) that artifacts must verify against.
    pub signing_public_keys: Vec<PathBuf>,
    /// age recipients of the operators allowed to flash (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`).
    pub operator_recipients: Vec<String>,
    /// age recipient of the CI builder, which decrypts the sealed sources.
    pub builder_recipient: Option<String>,
    /// The k3s cluster the nodes join.
    pub cluster: Cluster,
}

/// Registry location.
#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// `host[:port]`, or `oci:DIR` for an OCI image-layout directory.
    pub host: String,
    /// Repository prefix, e.g. `metis` → `<host>/metis/nodes/<node>`.
    pub prefix: String,
    /// Extra CA certificate (PEM) for a lab CA.
    pub ca_file: Option<PathBuf>,
}

/// The cluster the nodes join.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Join URLs of live servers (a VIP is a list of one), `https://host:6443`.
    pub servers: Vec<String>,
    /// k3s version the golden images carry, e.g. `v1.32.4+k3s1`.
    pub k3s_version: K3sVersion,
    /// DNS domain of the nodes: a node's FQDN is `<hostname>.<domain>`.
    pub domain: String,
}

/// A parsed k3s version `vMAJOR.MINOR.PATCH+k3sN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct K3sVersion {
    /// Major version (1).
    pub major: u32,
    /// Minor version (32 for v1.32.x).
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// k3s release suffix number (`+k3sN`).
    pub k3s: u32,
}

impl K3sVersion {
    /// Parses `v1.32.4+k3s1` (the leading `v` and the `+k3sN` suffix are optional).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let (core, suffix) = match s.split_once('+') {
            Some((c, suf)) => (c, Some(suf)),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let k3s = match suffix {
            None => 1,
            Some(suf) => suf.strip_prefix("k3s")?.parse().ok()?,
        };
        Some(Self {
            major,
            minor,
            patch,
            k3s,
        })
    }

    /// Whether kubelet reads KubeletConfiguration drop-ins from
    /// `/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/` (k3s ≥ 1.32).
    pub fn has_kubelet_conf_d(&self) -> bool {
        (self.major, self.minor) >= (1, 32)
    }
}

impl fmt::Display for K3sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{}.{}.{}+k3s{}",
            self.major, self.minor, self.patch, self.k3s
        )
    }
}

/// CPU architecture of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit ARM (Raspberry Pi 4/5).
    Arm64,
    /// x86-64.
    Amd64,
}

/// Operating-system family of a class's golden image; decides which vendor
/// first-boot quirks the render must defeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Ubuntu (Raspberry Pi or cloud image).
    Ubuntu,
    /// Armbian `-ci` images: `armbian-firstrun` regenerates SSH host keys unless told not to.
    Armbian,
    /// Debian cloud images.
    Debian,
}

/// Where a class's golden image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Golden {
    /// An OCI reference pinned by digest (`registry/repo@sha256:…`).
    Oci {
        /// The reference.
        reference: String,
    },
    /// A local file (relative paths are relative to the inventory directory).
    Path {
        /// Path to the raw, `.zst` or `.xz` image.
        path: PathBuf,
        /// Expected SHA-256 of the file, lowercase hex.
        sha256: String,
    },
    /// A URL downloaded by CI.
    Url {
        /// Where to fetch it.
        url: String,
        /// Expected SHA-256 of the file, lowercase hex.
        sha256: String,
    },
}

pub use crate::layout::{PartitionSelector, SeedFilesystem, SeedPartition};

/// A class: golden image, layout and defaults shared by its nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Class {
    /// Class name.
    pub name: String,
    /// File it was loaded from.
    pub file: PathBuf,
    /// Free text.
    pub description: String,
    /// CPU architecture.
    pub architecture: Arch,
    /// OS family of the golden image.
    pub os: Os,
    /// Golden image source.
    pub golden: Golden,
    /// Seed partition.
    pub seed: SeedPartition,
    /// The ext4 root partition. Serialised as `root_label: <label>` when
    /// found by label, as it was before GPT names, so the publish plan's input
    /// digest of an existing class does not change.
    #[serde(rename = "root_label", serialize_with = "root_as_before")]
    pub root: PartitionSelector,
    /// Whether the golden image carries k3s (false for hosts outside the cluster).
    pub k3s: bool,
}

fn root_as_before<S: serde::Serializer>(root: &PartitionSelector, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    match root {
        PartitionSelector::Label(label) => s.serialize_str(label),
        other => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(other.key(), other.value())?;
            map.end()
        }
    }
}

/// k3s role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Control-plane server (joins a live server; never `cluster-init`).
    Server,
    /// Worker.
    Agent,
    /// Not part of the cluster.
    None,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Agent => "agent",
            Role::None => "none",
        })
    }
}

/// Kubernetes taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaintEffect {
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
    /// `NoExecute`.
    NoExecute,
}

impl TaintEffect {
    /// The spelling Kubernetes uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint, `key[=value]:Effect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Optional value.
    pub value: Option<String>,
    /// Effect.
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

/// An address with its prefix length, e.g. `10.0.0.5/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpCidr {
    /// Parses `addr/prefix`; the prefix is required.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, p) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max && !p.starts_with('+')).then_some(Self { addr, prefix })
    }
}

/// One network interface, matched by MAC.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Stable name the interface is renamed to (`eth0`, `lan0`, …).
    pub name: String,
    /// MAC address, lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// DHCPv4 instead of static addresses.
    pub dhcp4: bool,
    /// Static addresses (IPv4 and IPv6).
    pub addresses: Vec<IpCidr>,
    /// IPv4 default gateway.
    pub gateway4: Option<IpAddr>,
    /// IPv6 default gateway.
    pub gateway6: Option<IpAddr>,
    /// Name servers.
    pub dns: Vec<IpAddr>,
    /// DNS search domains.
    pub search: Vec<String>,
}

/// A Longhorn or extra data disk, mounted by filesystem UUID.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// Filesystem UUID.
    pub uuid: String,
    /// Mount point.
    pub mount: String,
    /// Filesystem type (`ext4`, `xfs`, …).
    pub filesystem: String,
    /// Whether Longhorn uses it (k3s must not start while it is not mounted).
    pub longhorn: bool,
    /// Extra mount options (besides `nofail` and the device timeout).
    pub options: Vec<String>,
}

/// A login user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Full name / GECOS.
    pub gecos: Option<String>,
    /// SSH public keys.
    pub ssh_authorized_keys: Vec<String>,
    /// Passwordless sudo.
    pub sudo: bool,
    /// Login shell.
    pub shell: Option<String>,
    /// Supplementary groups.
    pub groups: Vec<String>,
}

/// An extra file a node wants on its root filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct HookFile {
    /// Absolute path on the node.
    pub path: String,
    /// Where the bytes come from.
    pub source: HookFileSource,
    /// Octal mode, e.g. `0644`.
    pub mode: String,
    /// `user:group`.
    pub owner: String,
}

/// Content of a hook file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFileSource {
    /// Inline, non-secret content (published in user-data).
    Content(String),
    /// The value of this key in the node's sealed secrets (goes only into the secrets bundle).
    Secret(String),
}

/// Per-node hooks, applied in order: files first, then commands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hooks {
    /// Files written by cloud-init (or the secrets phase for secret ones).
    pub files: Vec<HookFile>,
    /// Shell commands run at the end of the k3s phase, in order.
    pub commands: Vec<String>,
}

/// journald limits (`/etc/systemd/journald.conf.d/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Journald {
    /// `SystemMaxUse=`.
    pub system_max_use: String,
    /// `SystemKeepFree=`.
    pub system_keep_free: String,
    /// `MaxRetentionSec=`.
    pub max_retention: String,
}

/// Kubelet container-log and image-GC limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kubelet {
    /// `containerLogMaxSize` / `container-log-max-size`, e.g. `10Mi`.
    pub container_log_max_size: String,
    /// `containerLogMaxFiles`.
    pub container_log_max_files: u32,
    /// `imageGCHighThresholdPercent`.
    pub image_gc_high_threshold: u8,
    /// `imageGCLowThresholdPercent`.
    pub image_gc_low_threshold: u8,
}

/// Settings after merging lab defaults → class defaults → node overrides.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Time zone, e.g. `Etc/UTC`.
    pub timezone: String,
    /// NTP servers (empty: the image's default).
    pub ntp: Vec<String>,
    /// Default name servers for interfaces that set none.
    pub dns: Vec<IpAddr>,
    /// Default search domains.
    pub search: Vec<String>,
    /// journald limits.
    pub journald: Journald,
    /// kubelet limits.
    pub kubelet: Kubelet,
    /// Extra k3s config entries (`key: value` lines of `/etc/rancher/k3s/config.yaml`).
    pub k3s_extra_config: BTreeMap<String, String>,
    /// Login users (merged by name, node wins).
    pub users: Vec<User>,
    /// Seconds systemd waits for a data disk before giving up (`x-systemd.device-timeout`).
    pub disk_timeout_sec: u32,
}

/// One node, fully resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Node name (file stem, also the k3s node name).
    pub name: String,
    /// File it was loaded from.
    pub file: PathBuf,
    /// Class name.
    pub class: String,
    /// Host name.
    pub hostname: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// k3s role.
    pub role: Role,
    /// Node labels, `key=value`.
    pub labels: Vec<String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Data disks.
    pub disks: Vec<Disk>,
    /// Hooks.
    pub hooks: Hooks,
    /// Effective settings.
    pub settings: Settings,
}

impl Node {
    /// The node's primary IPv4 address (first static IPv4 of the first interface that has one).
    pub fn primary_ipv4(&self) -> Option<IpAddr> {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .find(|a| a.addr.is_ipv4())
            .map(|a| a.addr)
    }

    /// All static addresses of the node.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr))
    }
}
