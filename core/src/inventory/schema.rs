//! The inventory files as written: every field optional where a default can
//! fill it, every value spanned so validation can name its line. Unknown keys
//! are rejected (`deny_unknown_fields`) so a typo never silently does nothing.
//! Field docs live in docs/inventory.md; these types mirror it one to one.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with the line and column it was written at.
pub type S<T> = Spanned<T>;

/// `metis.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub registry: RegistryFile,
    pub signing: SigningFile,
    pub operators: OperatorsFile,
    #[serde(default)]
    pub builder: Option<BuilderFile>,
    pub cluster: ClusterFile,
    #[serde(default)]
    pub defaults: SettingsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub host: S<String>,
    pub prefix: S<String>,
    #[serde(default)]
    pub ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningFile {
    pub public_keys: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsFile {
    pub recipients: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderFile {
    pub recipient: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub servers: Vec<S<String>>,
    pub k3s_version: S<String>,
    pub domain: S<String>,
}

/// Settings that merge lab defaults → class defaults → node overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    #[serde(default)]
    pub timezone: Option<S<String>>,
    #[serde(default)]
    pub ntp: Option<Vec<S<String>>>,
    #[serde(default)]
    pub dns: Option<Vec<S<String>>>,
    #[serde(default)]
    pub search: Option<Vec<S<String>>>,
    #[serde(default)]
    pub journald: Option<JournaldFile>,
    #[serde(default)]
    pub kubelet: Option<KubeletFile>,
    #[serde(default)]
    pub k3s_config: Option<BTreeMap<String, S<String>>>,
    #[serde(default)]
    pub users: Option<Vec<UserFile>>,
    #[serde(default)]
    pub disk_timeout_sec: Option<S<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldFile {
    #[serde(default)]
    pub system_max_use: Option<S<String>>,
    #[serde(default)]
    pub system_keep_free: Option<S<String>>,
    #[serde(default)]
    pub max_retention: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletFile {
    #[serde(default)]
    pub container_log_max_size: Option<S<String>>,
    #[serde(default)]
    pub container_log_max_files: Option<S<u32>>,
    #[serde(default)]
    pub image_gc_high_threshold: Option<S<u8>>,
    #[serde(default)]
    pub image_gc_low_threshold: Option<S<u8>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub name: S<String>,
    #[serde(default)]
    pub gecos: Option<String>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<S<String>>,
    #[serde(default)]
    pub sudo: bool,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `classes/<name>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassFile {
    #[serde(default)]
    pub description: Option<String>,
    pub architecture: S<String>,
    pub os: S<String>,
    pub golden: GoldenFile,
    pub seed: S<SeedFile>,
    pub root: S<RootFile>,
    #[serde(default = "yes")]
    pub k3s: bool,
    #[serde(default)]
    pub defaults: SettingsFile,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenFile {
    #[serde(default)]
    pub oci: Option<S<String>>,
    #[serde(default)]
    pub path: Option<S<String>>,
    #[serde(default)]
    pub url: Option<S<String>>,
    #[serde(default)]
    pub sha256: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    #[serde(default)]
    pub label: Option<S<String>>,
    #[serde(default)]
    pub gpt_name: Option<S<String>>,
    #[serde(default)]
    pub filesystem: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFile {
    #[serde(default)]
    pub label: Option<S<String>>,
    #[serde(default)]
    pub gpt_name: Option<S<String>>,
}

/// `nodes/<name>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub class: S<String>,
    #[serde(default)]
    pub hostname: Option<S<String>>,
    pub network: NetworkFile,
    #[serde(default)]
    pub k3s: Option<K3sFile>,
    #[serde(default)]
    pub disks: Vec<S<DiskFile>>,
    #[serde(default)]
    pub hooks: Option<HooksFile>,
    #[serde(default)]
    pub overrides: SettingsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub interfaces: Vec<InterfaceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceFile {
    #[serde(default)]
    pub name: Option<S<String>>,
    pub mac: S<String>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub addresses: Vec<S<String>>,
    #[serde(default)]
    pub gateway: Option<S<String>>,
    #[serde(default)]
    pub gateway6: Option<S<String>>,
    #[serde(default)]
    pub dns: Option<Vec<S<String>>>,
    #[serde(default)]
    pub search: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sFile {
    pub role: S<String>,
    #[serde(default)]
    pub labels: Vec<S<String>>,
    #[serde(default)]
    pub taints: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFile {
    #[serde(default)]
    pub uuid: Option<S<String>>,
    #[serde(default)]
    pub mount: Option<S<String>>,
    #[serde(default)]
    pub filesystem: Option<S<String>>,
    #[serde(default)]
    pub longhorn: bool,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksFile {
    #[serde(default)]
    pub files: Vec<HookFileFile>,
    #[serde(default)]
    pub commands: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookFileFile {
    pub path: S<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub secret: Option<S<String>>,
    #[serde(default)]
    pub mode: Option<S<String>>,
    #[serde(default)]
    pub owner: Option<S<String>>,
}
