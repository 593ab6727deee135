//! The node artifact's wire format: the config blob ([`NodeConfig`]) that
//! `metis-build` writes and `metis-flash` reads, and the size of the secrets
//! slot the secrets layer decrypts to. Both sides import it from here: the
//! writer (`publish`) is behind the `build` feature, this module is not. The
//! layers' media types are in [`oci`](crate::oci); the whole artifact is
//! described in `docs/registry.md` and `docs/formats.md`.

use serde::{Deserialize, Serialize};

use crate::image::chunks::ChunkTable;

/// Version of the node config blob format (`application/vnd.metis.node.config.v1+json`).
pub const NODE_CONFIG_VERSION: u32 = 1;

/// Size in bytes of the card's secrets slot, so of every decrypted secrets
/// layer: the builder pads the bundle to it, the flasher refuses anything else.
pub const SLOT_SIZE: u64 = 64 * 1024;

/// The node config blob: everything the flasher needs besides the blobs, signed
/// through the manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// [`NODE_CONFIG_VERSION`].
    pub version: u32,
    /// Node name.
    pub node: String,
    /// Class name.
    pub class: String,
    /// k3s role (`server`, `agent`, `none`).
    pub role: String,
    /// For a k3s server: the commands to run on the live cluster before its card boots.
    pub rejoin_commands: Vec<String>,
    /// Card image size in bytes.
    pub image_size: u64,
    /// Per-chunk SHA-256 of the class base (the golden image).
    pub base_table: ChunkTable,
    /// Per-chunk SHA-256 of the composed card image, secrets slot zeroed.
    pub composed_table: ChunkTable,
    /// The secrets slot on the card.
    pub slot: SlotLocation,
    /// The build revision (also the signed `metis.revision`).
    pub revision: u64,
    /// What the input digest was made of.
    pub inputs: Inputs,
    /// Builder that made it.
    pub builder: String,
}

/// Where the flasher writes the decrypted secrets bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLocation {
    /// First byte on the card.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The parts of a node's input digest, recorded in its config blob so a plan
/// can say *what* changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// `metis-build x.y.z` and the format versions.
    pub builder: String,
    /// The class and its golden image's sha256.
    pub golden: String,
    /// sha256 over the rendered seed, root files and edits.
    pub seed: String,
    /// Digest of the sealed secrets' ciphertext.
    pub secrets: String,
    /// sha256 over the operators' age recipients (`metis.yaml`), sorted: the
    /// secrets layer is encrypted to them, so a new operator rebuilds every node.
    #[serde(default)]
    pub recipients: String,
    /// Digests of the inventory files behind the seed, kept only to explain a
    /// change; not part of the input digest (a comment edit rebuilds nothing).
    #[serde(default)]
    pub sources: Sources,
}

/// sha256 of the inventory files a node's seed is rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// `nodes/<node>.yaml`.
    pub node: String,
    /// `classes/<class>.yaml`.
    pub class: String,
    /// `metis.yaml`.
    pub lab: String,
}

impl Inputs {
    /// The input digest: sha256 over every part except [`Inputs::sources`].
    pub fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Digested<'a> {
            builder: &'a str,
            golden: &'a str,
            seed: &'a str,
            secrets: &'a str,
            recipients: &'a str,
        }
        let json = serde_json::to_vec(&Digested {
            builder: &self.builder,
            golden: &self.golden,
            seed: &self.seed,
            secrets: &self.secrets,
            recipients: &self.recipients,
        })
        .expect("inputs serialise");
        crate::digest::sha256_digest(&json)
    }
}
