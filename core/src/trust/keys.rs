//! Public keys: PEM SubjectPublicKeyInfo (`cosign.pub`), fingerprints, and the
//! operator's pinned keys.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest as _, Sha256};

use super::KeyError;

/// An ECDSA P-256 public key, as `cosign generate-key-pair` writes it to `cosign.pub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM block (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, _) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| KeyError::Pem {
                expected: "public key",
                reason: e.to_string(),
            })?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::PemLabel {
                found: label.to_string(),
                expected: "`PUBLIC KEY`",
            });
        }
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| KeyError::PublicKey(e.to_string()))?;
        Ok(Self { key })
    }

    /// Reads a PEM public key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    #[cfg(feature = "signing")]
    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn to_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .expect("a P-256 point always encodes")
            .into_vec()
    }

    /// The PEM form, as in `cosign.pub` (64-column lines, LF, trailing newline).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 point always encodes")
    }

    /// The key's fingerprint: lowercase hex SHA-256 of its SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.to_der()))
    }

    /// Whether `signature` (DER) is a valid ECDSA P-256/SHA-256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify(message, signature).is_ok()
    }
}

/// The public keys an operator trusts, pinned as PEM files in one directory.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Trusts exactly these keys (the inventory's `signing.public_keys`, tests).
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// The operator's pinned-keys directory: `<config dir>/metis/trusted-keys`
    /// (`~/.config` on Linux, `%APPDATA%` on Windows, `~/Library/Application Support` on macOS).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("metis").join("trusted-keys"))
    }

    /// Loads every `*.pub` in `dir`; a missing directory is an empty set.
    pub fn load_dir(dir: &Path) -> Result<Self, KeyError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(KeyError::Io {
                    action: "listing",
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::Io {
                action: "listing",
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        let keys = paths
            .iter()
            .map(|p| PublicKey::read(p))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Reads the inventory's signing keys (`Lab::signing_public_keys`, relative to
    /// the inventory directory `base`).
    pub fn read_files(base: &Path, paths: &[PathBuf]) -> Result<Self, KeyError> {
        let keys = paths
            .iter()
            .map(|p| PublicKey::read(&base.join(p)))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Pins the public key in `pem_file` into `dir` as `<fingerprint>.pub`.
    /// Pinning a key twice is harmless. Returns the key.
    pub fn pin(dir: &Path, pem_file: &Path) -> Result<PublicKey, KeyError> {
        let key = PublicKey::read(pem_file)?;
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(format!("{}.pub", key.fingerprint()));
        std::fs::write(&path, key.to_pem()).map_err(|source| KeyError::Io {
            action: "writing",
            path,
            source,
        })?;
        Ok(key)
    }

    /// The pinned keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
