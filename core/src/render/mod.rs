//! Node rendering: one node of the inventory → the files its card's seed
//! partition needs, so the node boots as itself with no manual step, plus its
//! secrets bundle, kept apart.
//!
//! [`render`] gives the seed (cloud-init NoCloud `meta-data`, `user-data`,
//! `network-config` and the secrets phase under `metis/`), the files and edits
//! the image engine applies at build time, and the node's identifiers. It is
//! deterministic: the same inventory gives the same bytes. Nothing it returns
//! is secret; the seed is published unencrypted and cloud-init keeps a copy on
//! the node.
//!
//! [`bundle`] gives the bytes of the card's secrets slot ([`SLOT_FILE`],
//! [`SLOT_SIZE`] bytes; format in docs/bundle.md) from the node's
//! [`NodeSecrets`].
//!
//! First boot runs in two idempotent phases (POSIX sh, [`SECRETS_PHASE`] and
//! [`K3S_PHASE`]): cloud-init's `bootcmd` installs the secrets from the slot
//! and zeroes it, before sshd starts; its `runcmd` mounts the data disks and
//! only then enables k3s in the node's role.
//!
//! ```no_run
//! let inv = metis_core::lab::load(std::path::Path::new("inventory"))?;
//! let rendered = metis_core::render::render(&inv, "titan-13")?;
//! for (path, bytes) in &rendered.seed {
//!     println!("{path}: {} bytes", bytes.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bootstrap;
mod bundle;
mod cloud_config;
mod identity;
mod k3s;
mod network;
mod vendor;
mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::inventory::{HookFileSource, Inventory, Node, Role};

pub use bootstrap::{K3S_PHASE, SECRETS_PHASE};
pub use bundle::{
    bundle, NodeSecrets, RegistryAuth, SshHostKey, SshKeyType, BUNDLE_FORMAT, SLOT_FILE, SLOT_SIZE,
};
pub use identity::machine_id;
pub use vendor::cloud_init_local_dropin;

/// Where rendered things live (moved to [`crate::paths`], a leaf the inventory
/// imports too).
pub use crate::paths;

/// Everything rendered for one node. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The node.
    pub node: String,
    /// Files of the seed partition: path relative to its root → bytes
    /// (`user-data`, `meta-data`, `network-config`, `metis/…`). The image
    /// engine also creates the empty [`SLOT_FILE`] there.
    pub seed: BTreeMap<String, Vec<u8>>,
    /// Whole files the image engine writes into the root filesystem at build
    /// time (`/etc/machine-id` must exist before systemd starts).
    pub root_files: Vec<RootFile>,
    /// `key=value` edits of files on the root filesystem, applied at build
    /// time (Armbian's `/etc/default/armbian-firstrun`).
    pub root_edits: Vec<KeyValueEdit>,
    /// `key=value` edits of existing files on the seed partition, applied at
    /// build time (Armbian's `armbianEnv.txt` `ethaddr`).
    pub seed_edits: Vec<KeyValueEdit>,
    /// cloud-init instance-id (also in `meta-data`).
    pub instance_id: String,
    /// `/etc/machine-id` value, 32 lowercase hex digits.
    pub machine_id: String,
    /// For a k3s server: the commands to run against the live cluster before
    /// the card boots, so the node can rejoin etcd under its old name.
    pub server_rejoin_commands: Option<Vec<String>>,
}

/// A whole file for the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFile {
    /// Absolute path on the node.
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Permission bits, e.g. `0o444`.
    pub mode: u32,
}

/// Sets `key=value` in a line-oriented `key=value` file; see [`KeyValueEdit::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueEdit {
    /// Path: absolute on the root filesystem, relative on the seed partition.
    pub path: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Why a node cannot be rendered or bundled. Messages name secrets, never
/// their values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The inventory has no node of that name.
    #[error("no node `{node}` in the inventory; `metis-build nodes` lists them")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
    /// The node's inventory holds something the card cannot carry as written.
    #[error("node `{node}` cannot be rendered: {what}")]
    Unrenderable {
        /// The node.
        node: String,
        /// What and why.
        what: String,
    },
    /// A file the inventory refers to could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret the node needs is not in its sealed secrets.
    #[error("node `{node}` needs a secret it does not have: {what}; add it to the node's sealed secrets")]
    MissingSecret {
        /// The node.
        node: String,
        /// Which secret.
        what: String,
    },
    /// A secret is malformed.
    #[error("node `{node}`: {what}")]
    InvalidSecret {
        /// The node.
        node: String,
        /// What is wrong (never the value).
        what: String,
    },
    /// The bundle is larger than the card's secrets slot.
    #[error("the secrets bundle of node `{node}` is {size} bytes, more than the {limit}-byte secrets slot; drop unneeded secret hook files or key types")]
    BundleTooLarge {
        /// The node.
        node: String,
        /// Bundle size in bytes.
        size: u64,
        /// The slot size.
        limit: u64,
    },
    /// Writing the bundle archive failed (a path too long for ustar, say).
    #[error("building the secrets bundle of node `{node}`")]
    Bundle {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn find_node<'a>(inv: &'a Inventory, node: &str) -> Result<&'a Node, RenderError> {
    inv.nodes.get(node).ok_or_else(|| RenderError::UnknownNode {
        node: node.to_string(),
    })
}

/// The commands that let a k3s server with embedded etcd rejoin under its old
/// name: its old etcd member must be removed first, which k3s does when the
/// node carries the annotation; then its Node object goes, so labels and
/// taints are applied afresh at registration.
pub fn server_rejoin_commands(node: &str) -> Vec<String> {
    vec![
        format!("kubectl annotate node {node} etcd.k3s.cattle.io/remove=true"),
        format!("kubectl delete node {node}"),
    ]
}

/// Mount points of the node's Longhorn disks, which k3s must never start without.
fn longhorn_mounts(node: &Node) -> Vec<&str> {
    node.disks
        .iter()
        .filter(|d| d.longhorn)
        .map(|d| d.mount.as_str())
        .collect()
}

/// Renders node `node` of `inv`.
pub fn render(inv: &Inventory, node: &str) -> Result<Rendered, RenderError> {
    let node = find_node(inv, node)?;
    let class = inv.class_of(node);
    let unrenderable = |what: String| RenderError::Unrenderable {
        node: node.name.clone(),
        what,
    };

    // Files cloud-init writes, Metis's first, then the node's hooks.
    let mut files: Vec<cloud_config::WriteFile> = Vec::new();
    let mut add = |path: &str, content: String, permissions: &str| {
        files.push(cloud_config::WriteFile {
            path: path.to_string(),
            content,
            permissions: permissions.to_string(),
            owner: "root:root".to_string(),
        })
    };
    if node.role != Role::None {
        add(paths::K3S_CONFIG, k3s::config_yaml(inv, node)?, "0600");
        if inv.lab.cluster.k3s_version.has_kubelet_conf_d() {
            add(paths::KUBELET_DROPIN, k3s::kubelet_conf(node), "0644");
        }
        if let (Some(unit), Some(dropin)) = (k3s::unit(node.role), k3s::unit_dropin(node)) {
            add(&paths::k3s_unit_dropin(unit), dropin, "0644");
        }
        if let (Some(_), Some(ca)) = (k3s::registry_host(inv), &inv.lab.registry.ca_file) {
            let path = inv.dir.join(ca);
            let pem = std::fs::read_to_string(&path)
                .map_err(|source| RenderError::Io { path, source })?;
            add(paths::REGISTRY_CA, pem, "0644");
        }
    }
    let j = &node.settings.journald;
    add(
        paths::JOURNALD_DROPIN,
        format!(
            "# Rendered by Metis for node {}: journal size and age limits.\n\
             [Journal]\n\
             SystemMaxUse={}\n\
             SystemKeepFree={}\n\
             MaxRetentionSec={}\n",
            node.name, j.system_max_use, j.system_keep_free, j.max_retention
        ),
        "0644",
    );
    add(paths::NODE_ENV, bootstrap::node_env(node), "0644");
    if let Some(fstab) = bootstrap::fstab(node)? {
        add(paths::FSTAB, fstab, "0644");
    }
    add(paths::K3S_PHASE, K3S_PHASE.to_string(), "0755");
    for (path, script) in bootstrap::hook_scripts(node) {
        add(&path, script, "0755");
    }
    for hf in &node.hooks.files {
        if paths::is_metis_owned(&hf.path) {
            return Err(unrenderable(format!(
                "hook file {} would replace a file Metis writes itself",
                hf.path
            )));
        }
        if let HookFileSource::Content(content) = &hf.source {
            files.push(cloud_config::WriteFile {
                path: hf.path.clone(),
                content: content.clone(),
                permissions: hf.mode.clone(),
                owner: hf.owner.clone(),
            });
        }
    }

    let bootcmd = bootstrap::bootcmd(node, class);
    let mut seed = BTreeMap::new();
    seed.insert(
        paths::SEED_USER_DATA.to_string(),
        cloud_config::user_data(node, class, &bootcmd, &files).into_bytes(),
    );
    seed.insert(
        paths::SEED_NETWORK_CONFIG.to_string(),
        network::network_config(node).into_bytes(),
    );
    seed.insert(
        paths::SEED_SECRETS_PHASE.to_string(),
        SECRETS_PHASE.as_bytes().to_vec(),
    );

    let machine_id = machine_id(&inv.lab.cluster.domain, &node.name);
    let mut root_files = vec![RootFile {
        path: paths::MACHINE_ID.to_string(),
        content: format!("{machine_id}\n").into_bytes(),
        mode: 0o444,
    }];
    root_files.extend(vendor::root_files(class, node));
    let root_edits = vendor::root_edits(class);
    let seed_edits = vendor::seed_edits(class, node);

    let instance_id =
        identity::instance_id(&node.name, &seed, &root_files, &root_edits, &seed_edits);
    // NoCloud reads `instance-id` with a hyphen. The vendors' own meta-data
    // (Ubuntu's, Armbian's) say `instance_id`, which NoCloud ignores, so Metis
    // always writes its own.
    seed.insert(
        paths::SEED_META_DATA.to_string(),
        format!(
            "# Rendered by Metis for node {}. A new instance-id makes cloud-init\n\
             # run first boot again; the same one (a reboot) does not.\n\
             instance-id: {}\n\
             local-hostname: {}\n",
            node.name,
            yaml::quote(&instance_id),
            yaml::quote(&node.hostname)
        )
        .into_bytes(),
    );

    Ok(Rendered {
        node: node.name.clone(),
        seed,
        root_files,
        root_edits,
        seed_edits,
        instance_id,
        machine_id,
        server_rejoin_commands: (node.role == Role::Server)
            .then(|| server_rejoin_commands(&node.name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts spell the node paths themselves; keep them in step.
    #[test]
    fn scripts_use_the_paths_of_this_module() {
        let (lib, _) = paths::K3S_PHASE.rsplit_once('/').unwrap();
        let (state, status) = paths::STATUS.rsplit_once('/').unwrap();
        assert_eq!(paths::HOOKS_DIR, format!("{lib}/hooks"));
        for needle in [
            format!("LIB={lib}\n"),
            format!("STATE=$ROOT{state}\n"),
            format!("STATUS=$STATE/{status}\n"),
            format!("JOURNALD_DROPIN=$ROOT{}\n", paths::JOURNALD_DROPIN),
            format!(". \"$ROOT{}\"", paths::NODE_ENV),
            format!("\"$ROOT{}\"", paths::FSTAB),
            "\"$ROOT$LIB\"/hooks/*.sh".to_string(),
            format!("TAG={}\n", paths::LOG_TAG),
        ] {
            assert!(K3S_PHASE.contains(&needle), "k3s phase lacks {needle:?}");
        }
        for needle in [
            format!("TAG={}\n", paths::LOG_TAG),
            format!("slot=$seed/{SLOT_FILE}\n"),
            format!("BUNDLE_FORMAT={BUNDLE_FORMAT}\n"),
            format!("STATE=$ROOT{state}\n"),
        ] {
            assert!(
                SECRETS_PHASE.contains(&needle),
                "secrets phase lacks {needle:?}"
            );
        }
    }
}
