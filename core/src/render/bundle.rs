//! The node's secrets bundle: what goes into the card's secrets slot, and
//! nowhere else. Format: docs/bundle.md.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

use super::{k3s, paths, RenderError};
use crate::inventory::{HookFileSource, Inventory, Role};

/// Name of the pre-allocated, zero-filled slot file at the root of the seed
/// partition. The image engine creates it ([`SLOT_SIZE`] zero bytes in
/// contiguous clusters) and records where it lies; the flasher writes the
/// bundle there; the secrets phase installs it and zeroes it in place.
pub const SLOT_FILE: &str = "metis-secrets.bin";

/// Size of the slot file in bytes. A bundle is exactly this long (part of
/// the artifact's wire format, so defined there).
pub use crate::artifact::SLOT_SIZE;

/// Version of the bundle format, the second word of the manifest's first line.
/// The secrets phase refuses (and leaves the slot alone) on any other.
pub const BUNDLE_FORMAT: u32 = 1;

/// SSH host key algorithms a bundle can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SshKeyType {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp{256,384,521}`.
    Ecdsa,
    /// `ssh-rsa`.
    Rsa,
}

impl SshKeyType {
    /// The name in `/etc/ssh/ssh_host_<name>_key`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SshKeyType::Ed25519 => "ed25519",
            SshKeyType::Ecdsa => "ecdsa",
            SshKeyType::Rsa => "rsa",
        }
    }

    /// Parses `ed25519`, `ecdsa` or `rsa`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ed25519" => Some(SshKeyType::Ed25519),
            "ecdsa" => Some(SshKeyType::Ecdsa),
            "rsa" => Some(SshKeyType::Rsa),
            _ => None,
        }
    }

    fn public_prefix(&self) -> &'static str {
        match self {
            SshKeyType::Ed25519 => "ssh-ed25519 ",
            SshKeyType::Ecdsa => "ecdsa-sha2-nistp",
            SshKeyType::Rsa => "ssh-rsa ",
        }
    }
}

/// One SSH host key pair of the node.
pub struct SshHostKey {
    /// Algorithm.
    pub key_type: SshKeyType,
    /// Private key as OpenSSH writes it (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub private_pem: Zeroizing<String>,
    /// Public key line (`ssh-ed25519 AAAA… comment`).
    pub public: String,
}

/// Credentials for the lab's registry (`registries.yaml` `auth`).
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or robot-account token.
    pub password: Zeroizing<String>,
}

/// Everything secret one node needs at first boot, as the secrets stage
/// unsealed it. Its `Debug` shows which secrets are present, never a value.
#[derive(Default)]
pub struct NodeSecrets {
    /// The node's SSH host keys (at least one).
    pub ssh_host_keys: Vec<SshHostKey>,
    /// k3s node password (`/etc/rancher/node/password`); must match the
    /// cluster's `<node>.node-password.k3s` secret or k3s rejects the node.
    /// Required for roles server and agent.
    pub node_password: Option<Zeroizing<String>>,
    /// k3s join token. Required for roles server and agent.
    pub k3s_token: Option<Zeroizing<String>>,
    /// Registry credentials, used when the lab's registry is not `oci:`.
    pub registry_auth: Option<RegistryAuth>,
    /// Values of the node's secret hook files, by the key the hook names.
    pub extra: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for NodeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .ssh_host_keys
            .iter()
            .map(|k| k.key_type.as_str())
            .collect();
        f.debug_struct("NodeSecrets")
            .field("ssh_host_keys", &keys)
            .field(
                "node_password",
                &self.node_password.as_ref().map(|_| "<redacted>"),
            )
            .field("k3s_token", &self.k3s_token.as_ref().map(|_| "<redacted>"))
            .field(
                "registry_auth",
                &self
                    .registry_auth
                    .as_ref()
                    .map(|a| (&a.username, "<redacted>")),
            )
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One file the secrets phase installs.
struct Entry {
    path: String,
    mode: String,
    owner: String,
    content: Zeroizing<Vec<u8>>,
}

/// A one-line secret (token, password) as its file holds it: the value and
/// one newline, as k3s itself writes them (it trims whitespace on reading).
fn line_file(node: &str, what: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, RenderError> {
    let v = value.trim_end_matches(['\n', '\r']);
    if v.is_empty() || v.contains(['\n', '\r']) {
        return Err(RenderError::InvalidSecret {
            node: node.into(),
            what: format!("{what} must be one non-empty line"),
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(v.len() + 1));
    out.extend_from_slice(v.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// The bytes for the node's secrets slot: exactly [`SLOT_SIZE`] bytes, a
/// deterministic ustar archive (manifest, then the files) padded with zeros.
/// Same secrets → same bytes.
///
/// Fails when a secret the node needs is missing or malformed, or when the
/// archive does not fit the slot. Errors name the secret, never its value.
pub fn bundle(
    inv: &Inventory,
    node_name: &str,
    secrets: &NodeSecrets,
) -> Result<Zeroizing<Vec<u8>>, RenderError> {
    let node = super::find_node(inv, node_name)?;
    let missing = |what: &str| RenderError::MissingSecret {
        node: node.name.clone(),
        what: what.into(),
    };
    let invalid = |what: String| RenderError::InvalidSecret {
        node: node.name.clone(),
        what,
    };
    let root = "root:root".to_string();
    let mut entries: Vec<Entry> = Vec::new();

    // SSH host keys, in a fixed order.
    if secrets.ssh_host_keys.is_empty() {
        return Err(missing("SSH host keys (without them the node would get new ones and SSH clients would refuse it)"));
    }
    let mut keys: Vec<&SshHostKey> = secrets.ssh_host_keys.iter().collect();
    keys.sort_by_key(|k| k.key_type);
    for pair in keys.windows(2) {
        if pair[0].key_type == pair[1].key_type {
            return Err(invalid(format!(
                "two {} SSH host keys",
                pair[0].key_type.as_str()
            )));
        }
    }
    for k in keys {
        let t = k.key_type.as_str();
        let private = k.private_pem.trim_start();
        if !private.starts_with("-----BEGIN ") || !private.contains("PRIVATE KEY-----") {
            return Err(invalid(format!(
                "the {t} SSH host private key is not a PEM private key"
            )));
        }
        if !k.public.starts_with(k.key_type.public_prefix()) || k.public.trim().contains('\n') {
            return Err(invalid(format!(
                "the {t} SSH host public key is not one `{}…` line",
                k.key_type.public_prefix().trim_end()
            )));
        }
        let mut private_bytes = Zeroizing::new(k.private_pem.as_bytes().to_vec());
        if !private_bytes.ends_with(b"\n") {
            private_bytes.push(b'\n');
        }
        entries.push(Entry {
            path: paths::ssh_host_key(t),
            mode: "0600".into(),
            owner: root.clone(),
            content: private_bytes,
        });
        entries.push(Entry {
            path: format!("{}.pub", paths::ssh_host_key(t)),
            mode: "0644".into(),
            owner: root.clone(),
            content: Zeroizing::new(format!("{}\n", k.public.trim_end()).into_bytes()),
        });
    }

    // k3s identity and join token.
    if node.role != Role::None {
        let password = secrets
            .node_password
            .as_ref()
            .ok_or_else(|| missing("k3s node password"))?;
        entries.push(Entry {
            path: paths::NODE_PASSWORD.into(),
            mode: "0600".into(),
            owner: root.clone(),
            content: line_file(&node.name, "the k3s node password", password)?,
        });
        let token = secrets
            .k3s_token
            .as_ref()
            .ok_or_else(|| missing("k3s join token"))?;
        entries.push(Entry {
            path: paths::K3S_TOKEN.into(),
            mode: "0600".into(),
            owner: root.clone(),
            content: line_file(&node.name, "the k3s token", token)?,
        });

        // registries.yaml: mirror/CA from the inventory, auth from the secrets.
        let auth = match &secrets.registry_auth {
            Some(a) => {
                if a.username.is_empty() || a.username.contains(['\n', '\r']) {
                    return Err(invalid(
                        "the registry user name must be one non-empty line".into(),
                    ));
                }
                if a.password.contains(['\n', '\r']) {
                    return Err(invalid("the registry password must be one line".into()));
                }
                Some((a.username.as_str(), a.password.as_str()))
            }
            None => None,
        };
        // Sized up front so the buffer holding the password never reallocates
        // (which would leave an unzeroed copy behind).
        let mut registries = Zeroizing::new(String::with_capacity(4096));
        if k3s::registries_yaml(inv, auth, &mut registries) {
            entries.push(Entry {
                path: paths::REGISTRIES.into(),
                mode: "0600".into(),
                owner: root.clone(),
                content: Zeroizing::new(registries.as_bytes().to_vec()),
            });
        }
    }

    // Secret hook files.
    for hf in &node.hooks.files {
        if let HookFileSource::Secret(key) = &hf.source {
            let value = secrets
                .extra
                .get(key)
                .ok_or_else(|| missing(&format!("`{key}` (for hook file {})", hf.path)))?;
            entries.push(Entry {
                path: hf.path.clone(),
                mode: hf.mode.clone(),
                owner: hf.owner.clone(),
                content: value.clone(),
            });
        }
    }

    let mut manifest = format!("metis-bundle {BUNDLE_FORMAT}\nnode {}\n", node.name);
    for e in &entries {
        // The secrets phase reads `file MODE OWNER PATH` with `read`.
        let mode_ok =
            (3..=4).contains(&e.mode.len()) && e.mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !mode_ok
            || e.owner.is_empty()
            || e.owner.contains(char::is_whitespace)
            || !e.path.starts_with('/')
            || e.path.contains(['\n', '\r', '\\'])
            || e.path.trim_end() != e.path
        {
            return Err(RenderError::Unrenderable {
                node: node.name.clone(),
                what: format!(
                    "secret file `{}` (mode `{}`, owner `{}`) cannot be listed in the bundle manifest",
                    e.path, e.mode, e.owner
                ),
            });
        }
        manifest.push_str(&format!("file {} {} {}\n", e.mode, e.owner, e.path));
    }

    let archive_error = |source: std::io::Error| RenderError::Bundle {
        node: node.name.clone(),
        source,
    };
    // Capacity for the whole slot up front: the archive never reallocates, so
    // no copy of a secret is left behind in freed memory.
    let buf = Vec::with_capacity(SLOT_SIZE as usize + 64 * 1024);
    let mut tar = tar::Builder::new(buf);
    append(&mut tar, "manifest", "0600", manifest.as_bytes()).map_err(archive_error)?;
    for e in &entries {
        append(&mut tar, &format!("files{}", e.path), &e.mode, &e.content)
            .map_err(archive_error)?;
    }
    let archive = Zeroizing::new(tar.into_inner().map_err(archive_error)?);
    let size = archive.len() as u64;
    if size > SLOT_SIZE {
        return Err(RenderError::BundleTooLarge {
            node: node.name.clone(),
            size,
            limit: SLOT_SIZE,
        });
    }
    let mut slot = Zeroizing::new(Vec::with_capacity(SLOT_SIZE as usize));
    slot.extend_from_slice(&archive);
    slot.resize(SLOT_SIZE as usize, 0);
    Ok(slot)
}

/// Appends one regular file with a plain ustar header: owner 0:0, mtime 0, no
/// user or group names, so the archive depends on its content only.
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: &str,
    content: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    // set_path keeps to ustar's name/prefix fields and fails on longer paths
    // rather than writing a GNU long-name entry.
    h.set_path(path)?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(u32::from_str_radix(mode, 8).map_err(|_| std::io::Error::other("bad mode"))?);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(content.len() as u64);
    h.set_cksum();
    tar.append(&h, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let s = NodeSecrets {
            ssh_host_keys: vec![SshHostKey {
                key_type: SshKeyType::Ed25519,
                private_pem: Zeroizing::new("PRIVATE-MARKER".into()),
                public: "ssh-ed25519 AAAA".into(),
            }],
            node_password: Some(Zeroizing::new("PASSWORD-MARKER".into())),
            k3s_token: Some(Zeroizing::new("TOKEN-MARKER".into())),
            registry_auth: Some(RegistryAuth {
                username: "robot".into(),
                password: Zeroizing::new("REGISTRY-MARKER".into()),
            }),
            extra: [("k".to_string(), Zeroizing::new(b"EXTRA-MARKER".to_vec()))].into(),
        };
        let d = format!("{s:?}");
        for m in [
            "PRIVATE-MARKER",
            "PASSWORD-MARKER",
            "TOKEN-MARKER",
            "REGISTRY-MARKER",
            "EXTRA-MARKER",
        ] {
            assert!(!d.contains(m), "{d}");
        }
        assert!(d.contains("ed25519") && d.contains("robot"), "{d}");
    }

    #[test]
    fn line_files_are_one_line() {
        assert_eq!(&**line_file("n", "t", "abc").unwrap(), b"abc\n");
        assert_eq!(&**line_file("n", "t", "abc\n").unwrap(), b"abc\n");
        assert!(line_file("n", "t", "").is_err());
        assert!(line_file("n", "t", "a\nb").is_err());
    }
}
