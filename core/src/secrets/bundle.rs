//! A node's secrets bundle sealed to the operators, and the digest that says
//! whether a node's secrets changed.

#[cfg(feature = "build")]
use crate::digest::{Hasher, Sha256Digest};
use zeroize::Zeroizing;

#[cfg(feature = "build")]
use super::age_io::seal;
use super::age_io::{open, Identities};
#[cfg(feature = "build")]
use super::source::{sealed_path, Source, CLUSTER};
use super::{Result, SecretsError};
use crate::artifact::SLOT_SIZE;
#[cfg(feature = "build")]
use crate::inventory::Inventory;
#[cfg(feature = "build")]
use crate::render;

#[cfg(feature = "build")]
const SOURCE_HINT: &str = "the CI identity must be the one whose recipient is builder.recipient in metis.yaml (or an operator's); after a recipient change run `metis-build secrets rekey`";

const BUNDLE_HINT: &str = "ask an operator who can flash it to add your age or SSH public key to operators.recipients in metis.yaml, so CI rebuilds the node for you";

/// Everyone a sealed source is encrypted to: the CI builder, then the operators.
#[cfg(feature = "build")]
pub fn source_recipients(inv: &Inventory) -> Result<Vec<String>> {
    let builder = inv
        .lab
        .builder_recipient
        .clone()
        .ok_or(SecretsError::NoBuilderRecipient)?;
    let mut out = vec![builder];
    out.extend(inv.lab.operator_recipients.iter().cloned());
    Ok(out)
}

/// Reads and decrypts a sealed source (`target` is a node or [`CLUSTER`]).
#[cfg(feature = "build")]
pub(crate) fn read_source(inv: &Inventory, target: &str, ci: &Identities) -> Result<Source> {
    let path = sealed_path(inv, target);
    let ciphertext = match std::fs::read(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretsError::MissingSource { path })
        }
        Err(e) => return Err(SecretsError::io(format!("reading {}", path.display()))(e)),
    };
    let what = format!("the sealed source {}", path.display());
    let plain = open(&ciphertext, ci, &what, SOURCE_HINT)?;
    Source::from_plaintext(&plain, &what)
}

/// Encrypts a source to [`source_recipients`] and writes it (armored)
/// atomically: a temp file beside it, then rename.
#[cfg(feature = "build")]
pub(crate) fn write_source(inv: &Inventory, target: &str, source: &Source) -> Result<()> {
    let recipients = source_recipients(inv)?;
    let plain = source.to_plaintext();
    let sealed = seal(&plain, &recipients, true)?;
    let path = sealed_path(inv, target);
    let dir = path.parent().expect("secrets/<name>.age has a parent");
    std::fs::create_dir_all(dir)
        .map_err(SecretsError::io(format!("creating {}", dir.display())))?;
    let io = SecretsError::io(format!("writing {}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(SecretsError::io(format!(
        "creating a temp file in {}",
        dir.display()
    )))?;
    std::io::Write::write_all(&mut tmp, &sealed)
        .map_err(SecretsError::io(format!("writing {}", path.display())))?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}

/// With the CI identity: decrypts the node's and the cluster's sealed
/// sources, builds the card's secrets slot ([`render::bundle`]) and encrypts
/// it (binary age) to the operator recipients only. The secrets layer of the
/// node's artifact.
#[cfg(feature = "build")]
pub fn seal_node_bundle(inv: &Inventory, node: &str, ci_identity: &Identities) -> Result<Vec<u8>> {
    if !inv.nodes.contains_key(node) {
        return Err(SecretsError::UnknownTarget { node: node.into() });
    }
    let node_source = read_source(inv, node, ci_identity)?;
    let cluster_source = read_source(inv, CLUSTER, ci_identity)?;
    let secrets = Source::merge_into_node_secrets(&node_source, &cluster_source);
    let slot = render::bundle(inv, node, &secrets)?;
    seal(&slot, &inv.lab.operator_recipients, false)
}

/// The flasher's side: decrypts a sealed bundle with an operator's identities.
/// Returns the [`SLOT_SIZE`] bytes of the card's secrets slot.
pub fn open_node_bundle(ciphertext: &[u8], identities: &Identities) -> Result<Zeroizing<Vec<u8>>> {
    let what = "this card's secrets";
    let slot = open(ciphertext, identities, what, BUNDLE_HINT)?;
    if slot.len() as u64 != SLOT_SIZE {
        return Err(SecretsError::Corrupt {
            what: what.into(),
            reason: format!("the bundle is {} bytes, not {SLOT_SIZE}", slot.len()),
        });
    }
    Ok(slot)
}

/// `sha256:<hex>` over the ciphertext of the node's and the cluster's sealed
/// sources (each hashed, then the two digests hashed with their names): what
/// a node's input digest uses for its secrets. Never a hash of plaintext.
#[cfg(feature = "build")]
pub fn sealed_digest(inv: &Inventory, node: &str) -> Result<String> {
    let mut outer = Hasher::new();
    for target in [node, CLUSTER] {
        let path = sealed_path(inv, target);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SecretsError::MissingSource { path: path.clone() }
            } else {
                SecretsError::io(format!("reading {}", path.display()))(e)
            }
        })?;
        let inner = Sha256Digest::of(&bytes);
        outer.update(if target == CLUSTER {
            b"cluster\0"
        } else {
            b"node\0\0\0\0"
        });
        outer.update(inner.as_bytes());
    }
    Ok(outer.finish().0.to_string())
}
