//! Where Metis puts things: on the seed partition (relative paths) and on the
//! node (absolute paths). The phase scripts spell the same paths; a test keeps
//! them in step. A leaf: the render writes these files, the inventory refuses a
//! hook that would replace one, the image and the tests read them.

/// cloud-init user-data on the seed partition.
pub const SEED_USER_DATA: &str = "user-data";
/// cloud-init meta-data on the seed partition.
pub const SEED_META_DATA: &str = "meta-data";
/// cloud-init network-config on the seed partition.
pub const SEED_NETWORK_CONFIG: &str = "network-config";
/// The secrets phase on the seed partition (bootcmd runs it from there).
pub const SEED_SECRETS_PHASE: &str = "metis/secrets-phase.sh";
/// Armbian's boot environment on its seed (boot) partition.
pub const ARMBIAN_ENV: &str = "armbianEnv.txt";

/// k3s configuration.
pub const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// k3s join token (secret), named by `token-file` in the k3s configuration.
pub const K3S_TOKEN: &str = "/etc/rancher/k3s/token";
/// k3s node password (secret).
pub const NODE_PASSWORD: &str = "/etc/rancher/node/password";
/// k3s registry configuration (may hold credentials: from the bundle only).
pub const REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
/// The lab registry's CA certificate, when the inventory names one.
pub const REGISTRY_CA: &str = "/etc/rancher/k3s/metis-registry-ca.pem";
/// KubeletConfiguration drop-in (k3s ≥ 1.32).
pub const KUBELET_DROPIN: &str = "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/60-metis.conf";
/// journald limits.
pub const JOURNALD_DROPIN: &str = "/etc/systemd/journald.conf.d/60-metis.conf";
/// Parameters of the k3s phase.
pub const NODE_ENV: &str = "/etc/metis/node.env";
/// The node's data-disk fstab lines.
pub const FSTAB: &str = "/etc/metis/fstab";
/// The k3s phase.
pub const K3S_PHASE: &str = "/usr/local/lib/metis/k3s-phase.sh";
/// The node's hook commands, `NNN.sh`, run in order by the k3s phase.
pub const HOOKS_DIR: &str = "/usr/local/lib/metis/hooks";
/// What the bootstrap applied and what failed.
pub const STATUS: &str = "/var/lib/metis/bootstrap.json";
/// systemd's machine id (written at build time).
pub const MACHINE_ID: &str = "/etc/machine-id";
/// Orders cloud-init's local stage after the image's own mounts (written
/// at build time; Ubuntu and Armbian, whose seed is the boot partition).
pub const CLOUD_INIT_LOCAL_DROPIN: &str =
    "/etc/systemd/system/cloud-init-local.service.d/60-metis-seed.conf";
/// armbianEnv.txt as the node sees it (Armbian mounts its boot partition
/// at /boot).
pub const ARMBIAN_BOOT_ENV: &str = "/boot/armbianEnv.txt";
/// Puts the node's `ethaddr` back after armbian-firstrun randomised it
/// (written at build time; Armbian).
pub const ARMBIAN_FIRSTRUN_DROPIN: &str =
    "/etc/systemd/system/armbian-firstrun.service.d/60-metis-mac.conf";
/// Armbian's first-run settings.
pub const ARMBIAN_FIRSTRUN: &str = "/etc/default/armbian-firstrun";
/// The journal tag (`SYSLOG_IDENTIFIER`) of every bootstrap message.
pub const LOG_TAG: &str = "metis-bootstrap";

/// An SSH host private key, `/etc/ssh/ssh_host_<type>_key`.
pub fn ssh_host_key(key_type: &str) -> String {
    format!("/etc/ssh/ssh_host_{key_type}_key")
}

/// The k3s unit's drop-in holding `RequiresMountsFor=` the Longhorn disks.
pub fn k3s_unit_dropin(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.d/60-metis-longhorn.conf")
}

/// Whether Metis writes `path` on the node itself, so a hook file may not
/// take it over (`metis-build check` refuses such a hook).
pub fn is_metis_owned(path: &str) -> bool {
    // The path as the node resolves it: `//`, `.` and `..` folded.
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let path = format!("/{}", parts.join("/"));
    let path = path.as_str();
    [
        K3S_CONFIG,
        K3S_TOKEN,
        NODE_PASSWORD,
        REGISTRIES,
        REGISTRY_CA,
        KUBELET_DROPIN,
        JOURNALD_DROPIN,
        NODE_ENV,
        FSTAB,
        K3S_PHASE,
        STATUS,
        MACHINE_ID,
        CLOUD_INIT_LOCAL_DROPIN,
        ARMBIAN_FIRSTRUN_DROPIN,
        ARMBIAN_FIRSTRUN,
    ]
    .contains(&path)
        || path == k3s_unit_dropin("k3s.service")
        || path == k3s_unit_dropin("k3s-agent.service")
        || path == HOOKS_DIR
        || path.starts_with(&format!("{HOOKS_DIR}/"))
        || path.starts_with("/etc/ssh/ssh_host_")
        || path.starts_with("/var/lib/metis/")
}
