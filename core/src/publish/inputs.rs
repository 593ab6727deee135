//! A node's input digest: everything its artifact is built from, computed
//! without building it, and where its sealed secrets come from.

use std::path::Path;
use std::sync::Mutex;

use crate::digest::{sha256_digest, Hasher};

use super::{PublishError, BUILDER_VERSION};
use crate::artifact::{Inputs, Sources, NODE_CONFIG_VERSION};
use crate::image::chunks::{CHUNK_TABLE_VERSION, DEFAULT_CHUNK_SIZE};
use crate::image::patch::PATCH_VERSION;
use crate::inventory::Inventory;
use crate::render;

/// Version of what the input digest covers (2: operator recipients added).
const INPUTS_VERSION: u32 = 2;

/// Why a [`SecretsSource`] could not give a node's secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsSourceError {
    /// No CI identity was given, so the sealed sources cannot be opened.
    #[error("no CI identity to decrypt the sealed secrets: pass --identity FILE or set METIS_AGE_IDENTITY")]
    NoCiIdentity,
    /// A build thread panicked while it held the CI identity.
    #[error("secrets lock poisoned")]
    LockPoisoned,
    /// Reading, opening, checking or sealing the secrets failed.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
}

/// Where a node's secrets layer comes from: the age ciphertext for the
/// operators, and the digest of the *sealed* sources (never of clear values)
/// for the input digest.
pub trait SecretsSource: Sync {
    /// The secrets layer (age-encrypted bundle) of `node`.
    fn sealed_bundle(&self, inv: &Inventory, node: &str) -> Result<Vec<u8>, SecretsSourceError>;
    /// Digest of the sealed source files of `node` (ciphertext), for the input digest.
    fn sealed_digest(&self, inv: &Inventory, node: &str) -> Result<String, SecretsSourceError>;
}

/// Secrets from the inventory's age-sealed sources, decrypted with the CI
/// identity and re-sealed to the operators only.
pub struct SealedSecrets {
    ci: Option<Mutex<crate::secrets::Identities>>,
}

impl SealedSecrets {
    /// Uses the CI builder's identity; without one, only digests (plans) work.
    pub fn new(ci: Option<crate::secrets::Identities>) -> Self {
        Self {
            ci: ci.map(Mutex::new),
        }
    }
}

impl SecretsSource for SealedSecrets {
    fn sealed_bundle(&self, inv: &Inventory, node: &str) -> Result<Vec<u8>, SecretsSourceError> {
        let ci = self
            .ci
            .as_ref()
            .ok_or(SecretsSourceError::NoCiIdentity)?
            .lock()
            .map_err(|_| SecretsSourceError::LockPoisoned)?;
        Ok(crate::secrets::seal_node_bundle(inv, node, &ci)?)
    }

    fn sealed_digest(&self, inv: &Inventory, node: &str) -> Result<String, SecretsSourceError> {
        Ok(crate::secrets::sealed_digest(inv, node)?)
    }
}

/// Digest of the sorted operator recipients.
fn recipients_digest(inv: &Inventory) -> String {
    let mut recipients: Vec<&str> = inv
        .lab
        .operator_recipients
        .iter()
        .map(|r| r.trim())
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    sha256_digest(recipients.join("\n").as_bytes())
}

/// sha256 of an inventory file; empty when it cannot be read (the digest only
/// explains a change, it decides nothing).
fn source_digest(inv: &Inventory, file: &Path) -> String {
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        inv.dir.join(file)
    };
    std::fs::read(path)
        .map(|b| sha256_digest(&b))
        .unwrap_or_default()
}

/// Computes a node's inputs without building its image.
pub fn node_inputs(
    inv: &Inventory,
    node: &str,
    secrets: &dyn SecretsSource,
) -> Result<Inputs, PublishError> {
    let n = inv
        .nodes
        .get(node)
        .ok_or_else(|| PublishError::UnknownNode(node.to_string()))?;
    let class = inv.class_of(n);
    let rendered = render::render(inv, node).map_err(|e| PublishError::Node {
        node: node.to_string(),
        message: e.to_string(),
    })?;
    let mut h = Hasher::new();
    let mut field = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (path, bytes) in &rendered.seed {
        field(&format!("seed:{path}"), bytes);
    }
    for f in &rendered.root_files {
        field(&format!("root:{}:{:o}", f.path, f.mode), &f.content);
    }
    for e in rendered.root_edits.iter().chain(&rendered.seed_edits) {
        field(&format!("edit:{}:{}", e.path, e.key), e.value.as_bytes());
    }
    let golden_sha = match &class.golden {
        crate::inventory::Golden::Path { sha256, .. }
        | crate::inventory::Golden::Url { sha256, .. } => sha256.clone(),
        crate::inventory::Golden::Oci { reference } => reference.clone(),
    };
    let secrets = secrets
        .sealed_digest(inv, node)
        .map_err(|e| PublishError::Node {
            node: node.to_string(),
            message: e.to_string(),
        })?;
    Ok(Inputs {
        builder: format!(
            "{BUILDER_VERSION} config/{NODE_CONFIG_VERSION} chunks/{CHUNK_TABLE_VERSION} patch/{PATCH_VERSION} bundle/{} chunk-size/{DEFAULT_CHUNK_SIZE} inputs/{INPUTS_VERSION}",
            render::BUNDLE_FORMAT
        ),
        golden: format!("{}@{golden_sha}", class.name),
        seed: h.finish().0.to_string(),
        secrets,
        recipients: recipients_digest(inv),
        sources: Sources {
            node: source_digest(inv, &n.file),
            class: source_digest(inv, &class.file),
            lab: source_digest(inv, Path::new("metis.yaml")),
        },
    })
}
