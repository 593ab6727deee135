//! The simple-signing payload cosign signs, and the Metis fields in its `optional` part.
//!
//! Cosign (sigstore/sigstore `pkg/signature/payload`) signs this JSON for a key-pair
//! signature, with struct fields in this order and map keys sorted:
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"<repo>"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":{"metis.built":"…","metis.class":"…","metis.kind":"node","metis.node":"…","metis.revision":"42"}}
//! ```
//!
//! Metis values are JSON strings, as `cosign sign -a key=value` writes them, so
//! `cosign verify -a metis.node=titan-db` can check them too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::VerifyError;

/// `critical.type` of every cosign container image signature.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// A cosign simple-signing payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigning {
    /// What the signature commits to.
    pub critical: Critical,
    /// Free annotations (`null` when there are none, as cosign writes it).
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// The signed claims cosign itself checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    /// The repository signed for.
    pub identity: Identity,
    /// The manifest signed for.
    pub image: Image,
    /// Always [`SIMPLE_SIGNING_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The repository, e.g. `harbor.lab/metis/nodes/titan-db`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the signed manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `manifest_digest` in `repository`, with `optional` annotations.
    pub fn new(
        repository: &str,
        manifest_digest: &str,
        optional: Option<BTreeMap<String, serde_json::Value>>,
    ) -> Self {
        Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_owned(),
                },
                image: Image {
                    docker_manifest_digest: manifest_digest.to_owned(),
                },
                kind: SIMPLE_SIGNING_TYPE.to_owned(),
            },
            optional,
        }
    }

    /// The exact bytes to sign: compact JSON, fields in cosign's order, keys sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a simple-signing payload always serialises")
    }

    /// Parses signed payload bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let payload: Self = serde_json::from_slice(bytes)
            .map_err(|e| VerifyError::PayloadMalformed(e.to_string()))?;
        if payload.critical.kind != SIMPLE_SIGNING_TYPE {
            return Err(VerifyError::PayloadMalformed(format!(
                "critical.type is `{}`, not `{SIMPLE_SIGNING_TYPE}`",
                payload.critical.kind
            )));
        }
        Ok(payload)
    }
}

/// What a Metis artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One node's card artifact (`<prefix>/nodes/<node>`).
    Node,
    /// The signed lab index (`<prefix>/index`).
    Index,
}

impl Kind {
    /// The `metis.kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Index => "index",
        }
    }
}

/// The Metis claims signed in the payload's `optional` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `metis.kind`.
    pub kind: Kind,
    /// `metis.node`: the node this artifact is for (node artifacts only).
    pub node: Option<String>,
    /// `metis.class`: the node's class (node artifacts only).
    pub class: Option<String>,
    /// `metis.revision`: only ever increases (build number, inventory commit time).
    pub revision: u64,
    /// `metis.built`: when it was built, RFC 3339.
    pub built: String,
}

/// `optional` keys.
const KIND: &str = "metis.kind";
const NODE: &str = "metis.node";
const CLASS: &str = "metis.class";
const REVISION: &str = "metis.revision";
const BUILT: &str = "metis.built";

impl Metadata {
    /// Claims for a node artifact.
    pub fn node(node: &str, class: &str, revision: u64, built: &str) -> Self {
        Self {
            kind: Kind::Node,
            node: Some(node.to_owned()),
            class: Some(class.to_owned()),
            revision,
            built: built.to_owned(),
        }
    }

    /// Claims for the lab index.
    pub fn index(revision: u64, built: &str) -> Self {
        Self {
            kind: Kind::Index,
            node: None,
            class: None,
            revision,
            built: built.to_owned(),
        }
    }

    /// The payload's `optional` map.
    pub fn to_optional(&self) -> BTreeMap<String, serde_json::Value> {
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        };
        put(KIND, self.kind.as_str());
        if let Some(node) = &self.node {
            put(NODE, node);
        }
        if let Some(class) = &self.class {
            put(CLASS, class);
        }
        put(REVISION, &self.revision.to_string());
        put(BUILT, &self.built);
        map
    }

    /// Reads the claims back from a signed payload's `optional` map.
    pub fn from_optional(
        optional: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> Result<Self, VerifyError> {
        let get = |field: &'static str| -> Option<&str> { optional?.get(field)?.as_str() };
        let need = |field: &'static str| get(field).ok_or(VerifyError::MetadataField { field });
        let kind = match need(KIND)? {
            "node" => Kind::Node,
            "index" => Kind::Index,
            _ => return Err(VerifyError::MetadataField { field: KIND }),
        };
        let revision = need(REVISION)?;
        // Canonical decimal only, so one revision has one spelling.
        let revision = revision
            .parse::<u64>()
            .ok()
            .filter(|r| r.to_string() == revision)
            .ok_or(VerifyError::MetadataField { field: REVISION })?;
        let (node, class) = match kind {
            Kind::Node => (Some(need(NODE)?.to_owned()), Some(need(CLASS)?.to_owned())),
            Kind::Index => (None, None),
        };
        Ok(Self {
            kind,
            node,
            class,
            revision,
            built: need(BUILT)?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_are_cosigns_shape() {
        let meta = Metadata::node("titan-db", "amd64-agents", 42, "2026-01-02T03:04:05Z");
        let p = SimpleSigning::new(
            "reg.lab/metis/nodes/titan-db",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            Some(meta.to_optional()),
        );
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"reg.lab/metis/nodes/titan-db"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"type":"cosign container image signature"},"optional":{"metis.built":"2026-01-02T03:04:05Z","metis.class":"amd64-agents","metis.kind":"node","metis.node":"titan-db","metis.revision":"42"}}"#
        );
        let back = SimpleSigning::parse(&p.to_bytes()).unwrap();
        assert_eq!(
            Metadata::from_optional(back.optional.as_ref()).unwrap(),
            meta
        );
        let none = SimpleSigning::new("r", "d", None);
        assert!(String::from_utf8(none.to_bytes())
            .unwrap()
            .ends_with(r#""optional":null}"#));
    }

    #[test]
    fn revision_must_be_canonical_decimal() {
        for bad in ["042", "-1", "1.0", "", "18446744073709551616"] {
            let mut m = Metadata::index(1, "t").to_optional();
            m.insert(REVISION.into(), serde_json::Value::String(bad.into()));
            assert!(
                matches!(
                    Metadata::from_optional(Some(&m)),
                    Err(VerifyError::MetadataField { field: REVISION })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
