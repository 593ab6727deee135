//! The plaintext of a sealed source and its conversion into
//! [`NodeSecrets`](crate::render::NodeSecrets). Format: docs/secrets.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::{Result, SecretsError};
use crate::inventory::Inventory;
use crate::render::{NodeSecrets, RegistryAuth, SshHostKey, SshKeyType};

/// The name of the lab-wide sealed source (`secrets/cluster.age`).
pub const CLUSTER: &str = "cluster";

/// Version of the plaintext format, its `metis_secrets` field.
const FORMAT: u32 = 1;

/// `inventory/secrets/<target>.age`, where target is a node name or [`CLUSTER`].
pub fn sealed_path(inv: &Inventory, target: &str) -> PathBuf {
    inv.dir.join("secrets").join(format!("{target}.age"))
}

/// A secret string: zeroized on drop, `Debug` redacted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// One SSH host key pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostKey {
    /// OpenSSH private key (PEM).
    pub private: Secret,
    /// Public key line.
    pub public: String,
}

/// Registry credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or robot token.
    pub password: Secret,
}

/// The plaintext of a sealed source (node or cluster). Every field is
/// optional; a node's values win over the cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Format version, 1.
    pub metis_secrets: u32,
    /// SSH host keys by type (`ed25519`, `ecdsa`, `rsa`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ssh_host_keys: BTreeMap<String, HostKey>,
    /// k3s node password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_password: Option<Secret>,
    /// k3s join token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_token: Option<Secret>,
    /// Registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryCredentials>,
    /// Values of secret hook files, by the key a hook's `secret:` names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Secret>,
}

impl Source {
    /// An empty source of the current format.
    pub fn new() -> Self {
        Self {
            metis_secrets: FORMAT,
            ..Self::default()
        }
    }

    /// Parses decrypted plaintext. Errors give line and column, never content.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<Self> {
        let s: Self = serde_json::from_slice(plain).map_err(|e| SecretsError::InvalidSource {
            what: what.to_string(),
            reason: format!(
                "{} at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "not JSON",
                    serde_json::error::Category::Data =>
                        "unknown key or wrong type (see docs/secrets.md)",
                    serde_json::error::Category::Io => "unreadable",
                },
                e.line(),
                e.column()
            ),
        })?;
        if s.metis_secrets != FORMAT {
            return Err(SecretsError::InvalidSource {
                what: what.to_string(),
                reason: format!("metis_secrets is {}, expected {FORMAT}", s.metis_secrets),
            });
        }
        for t in s.ssh_host_keys.keys() {
            if SshKeyType::parse(t).is_none() {
                return Err(SecretsError::InvalidSource {
                    what: what.to_string(),
                    reason: format!("ssh_host_keys.{t}: the types are ed25519, ecdsa and rsa"),
                });
            }
        }
        Ok(s)
    }

    /// Pretty JSON, in a buffer wiped on drop.
    pub fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(32 * 1024));
        serde_json::to_writer_pretty(&mut *out, self).expect("a Source always serializes");
        out.push(b'\n');
        out
    }

    /// The node's secrets from its own source and the cluster's (the node's
    /// values win).
    pub fn merge_into_node_secrets(node: &Source, cluster: &Source) -> NodeSecrets {
        let pick = |n: &Option<Secret>, c: &Option<Secret>| {
            n.as_ref()
                .or(c.as_ref())
                .map(|s| Zeroizing::new(s.expose().to_string()))
        };
        let mut ssh_host_keys = Vec::new();
        let keys = if node.ssh_host_keys.is_empty() {
            &cluster.ssh_host_keys
        } else {
            &node.ssh_host_keys
        };
        for (t, k) in keys {
            if let Some(key_type) = SshKeyType::parse(t) {
                ssh_host_keys.push(SshHostKey {
                    key_type,
                    private_pem: Zeroizing::new(k.private.expose().to_string()),
                    public: k.public.clone(),
                });
            }
        }
        let registry = node.registry.as_ref().or(cluster.registry.as_ref());
        let mut extra = BTreeMap::new();
        for (k, v) in cluster.files.iter().chain(node.files.iter()) {
            extra.insert(k.clone(), Zeroizing::new(v.expose().as_bytes().to_vec()));
        }
        NodeSecrets {
            ssh_host_keys,
            node_password: pick(&node.node_password, &cluster.node_password),
            k3s_token: pick(&node.k3s_token, &cluster.k3s_token),
            registry_auth: registry.map(|r| RegistryAuth {
                username: r.username.clone(),
                password: Zeroizing::new(r.password.expose().to_string()),
            }),
            extra,
        }
    }
}
