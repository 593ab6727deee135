//! Lab profile (placeholder until the profile branch lands; the builder's
//! `operator-profile` writes it, `metis-flash setup` reads it).
use serde::{Deserialize, Serialize};

/// The format tag.
pub const PROFILE_FORMAT: &str = "metis-lab-profile/v1";

/// A lab profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabProfile {
    /// Format tag.
    pub format: String,
    /// Lab name.
    pub lab: String,
    /// Registry.
    pub registry: String,
    /// Prefix.
    pub prefix: String,
    /// CA PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// Keys PEM.
    pub public_keys: Vec<String>,
}

/// Profile errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Malformed.
    #[error("not a Metis lab profile: {0}")]
    Malformed(String),
}

impl LabProfile {
    /// Parses.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProfileError> {
        serde_json::from_slice(bytes).map_err(|e| ProfileError::Malformed(e.to_string()))
    }
    /// JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap() + "\n"
    }
    /// Keys.
    pub fn keys(&self) -> Result<Vec<crate::trust::PublicKey>, ProfileError> {
        self.public_keys
            .iter()
            .map(|k| {
                crate::trust::PublicKey::from_pem(k)
                    .map_err(|e| ProfileError::Malformed(e.to_string()))
            })
            .collect()
    }
}
