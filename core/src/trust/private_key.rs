//! Cosign's encrypted private key (`cosign.key`).
//!
//! The format is go-securesystemslib's `encrypted` envelope as cosign writes it
//! (`pkg/cosign/keys.go`): a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY`
//! (`ENCRYPTED COSIGN PRIVATE KEY` before cosign 2.0) whose body is the JSON
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<base64, 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64, 24 bytes>"},
//!  "ciphertext":"<base64 secretbox(PKCS#8 DER), Poly1305 tag first>"}
//! ```
//!
//! The secretbox key is scrypt(password, salt, N, r, p, 32 bytes).

use base64::engine::general_purpose::STANDARD as BASE64;

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

use super::{KeyError, PublicKey};

/// PEM label cosign ≥ 2.0 writes.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign wrote; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// Environment variable holding the private key's password.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";
/// Environment variable holding the private key's PEM contents (CI secrets).
pub const PRIVATE_KEY_ENV: &str = "COSIGN_PRIVATE_KEY";

/// scrypt cost cosign uses today (N=2^16); 2^15 is what older cosign used.
const SCRYPT_LOG_N: u8 = 16;
const SCRYPT_N_ACCEPTED: [u64; 2] = [32768, 65536];
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Go's `encoding/json` writes `[]byte` as standard base64.
mod b64 {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A cosign ECDSA P-256 signing key.
pub struct PrivateKey {
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("fingerprint", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::random(&mut OsRng),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(*self.key.verifying_key())
    }

    /// ECDSA P-256 over SHA-256 of `message`; DER-encoded, as cosign writes it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    /// Decrypts a cosign encrypted private key PEM with `password`.
    pub fn from_encrypted_pem(pem: &str, password: &[u8]) -> Result<Self, KeyError> {
        let (label, body) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| KeyError::Pem {
                expected: "cosign private key",
                reason: e.to_string(),
            })?;
        if label != SIGSTORE_PRIVATE_KEY_LABEL && label != COSIGN_PRIVATE_KEY_LABEL {
            return Err(KeyError::PemLabel {
                found: label.to_string(),
                expected: "`ENCRYPTED SIGSTORE PRIVATE KEY` or `ENCRYPTED COSIGN PRIVATE KEY`",
            });
        }
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|e| KeyError::Envelope(e.to_string()))?;
        if envelope.kdf.name != "scrypt" {
            return Err(KeyError::UnsupportedKdf(envelope.kdf.name));
        }
        let ScryptParams { n, r, p } = envelope.kdf.params;
        if !SCRYPT_N_ACCEPTED.contains(&n) || r != SCRYPT_R || p != SCRYPT_P {
            return Err(KeyError::KdfParams { n, r, p });
        }
        if envelope.cipher.name != "nacl/secretbox" {
            return Err(KeyError::UnsupportedCipher(envelope.cipher.name));
        }
        if envelope.cipher.nonce.len() != 24 {
            return Err(KeyError::Envelope(format!(
                "secretbox nonce is {} bytes, not 24",
                envelope.cipher.nonce.len()
            )));
        }
        let box_key = derive(password, &envelope.kdf.salt, n.trailing_zeros() as u8)?;
        let cipher = XSalsa20Poly1305::new(box_key.as_slice().into());
        let der = Zeroizing::new(
            cipher
                .decrypt(
                    envelope.cipher.nonce.as_slice().into(),
                    envelope.ciphertext.as_slice(),
                )
                .map_err(|_| KeyError::WrongPassword)?,
        );
        let key =
            SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Ok(Self { key })
    }

    /// Encrypts the key as cosign does (`ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N=2^16).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let mut salt = vec![0u8; 32];
        let mut nonce = vec![0u8; 24];
        OsRng
            .try_fill_bytes(&mut salt)
            .and_then(|()| OsRng.try_fill_bytes(&mut nonce))
            .map_err(|e| KeyError::Random(e.to_string()))?;
        let box_key = derive(password, &salt, SCRYPT_LOG_N)?;
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        let cipher = XSalsa20Poly1305::new(box_key.as_slice().into());
        let ciphertext = cipher
            .encrypt(nonce.as_slice().into(), der.as_bytes())
            .map_err(|_| KeyError::Random("secretbox encryption failed".into()))?;
        let envelope = Envelope {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt,
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce,
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&envelope).expect("the envelope always serialises");
        pem_rfc7468::encode_string(
            SIGSTORE_PRIVATE_KEY_LABEL,
            pem_rfc7468::LineEnding::LF,
            &json,
        )
        .map_err(|e| KeyError::Envelope(e.to_string()))
    }

    /// Loads the signing key the way cosign does in CI: the PEM from `file` if given,
    /// else from `COSIGN_PRIVATE_KEY`; the password from `COSIGN_PASSWORD` (required,
    /// may be empty).
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Self, KeyError> {
        let pem = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                action: "reading",
                path: path.to_owned(),
                source,
            })?,
            None => std::env::var(PRIVATE_KEY_ENV).map_err(|_| KeyError::PrivateKeyMissing)?,
        };
        let password = Zeroizing::new(password_from_env()?);
        Self::from_encrypted_pem(&pem, password.as_bytes())
    }
}

/// The password from `COSIGN_PASSWORD`; Metis never prompts.
pub fn password_from_env() -> Result<String, KeyError> {
    std::env::var(PASSWORD_ENV).map_err(|_| KeyError::PasswordMissing)
}

fn derive(password: &[u8], salt: &[u8], log_n: u8) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P, 32)
        .map_err(|e| KeyError::Envelope(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut_slice())
        .map_err(|e| KeyError::Envelope(format!("scrypt: {e}")))?;
    Ok(key)
}

/// Writes a new key pair into `dir` as `cosign.key` (encrypted with `password`) and
/// `cosign.pub`. Refuses to overwrite either file. Returns the public key.
pub fn generate_key_pair(dir: &Path, password: &[u8]) -> Result<PublicKey, KeyError> {
    let key_path = dir.join("cosign.key");
    let pub_path = dir.join("cosign.pub");
    for path in [&key_path, &pub_path] {
        if path.exists() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        action: "creating",
        path: dir.to_owned(),
        source,
    })?;
    let key = PrivateKey::generate();
    let encrypted = key.to_encrypted_pem(password)?;
    write_new(&key_path, encrypted.as_bytes(), true)?;
    let public = key.public_key();
    write_new(&pub_path, public.to_pem().as_bytes(), false)?;
    Ok(public)
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let io = |source| KeyError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_decrypt_round_trip_and_wrong_password() {
        let key = PrivateKey::generate();
        let pem = key.to_encrypted_pem(b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_encrypted_pem(&pem, b"pw").unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&pem, b"other"),
            Err(KeyError::WrongPassword)
        ));
    }

    /// A crafted key must not make us run scrypt with a huge cost, nor another cipher.
    #[test]
    fn refuses_foreign_kdf_and_cipher() {
        let pem = PrivateKey::generate().to_encrypted_pem(b"").unwrap();
        let (_, body) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
        let json = String::from_utf8(body).unwrap();
        let reseal = |json: String| {
            pem_rfc7468::encode_string(
                SIGSTORE_PRIVATE_KEY_LABEL,
                pem_rfc7468::LineEnding::LF,
                json.as_bytes(),
            )
            .unwrap()
        };
        let huge = reseal(json.replace(r#""N":65536"#, r#""N":1048576"#));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&huge, b""),
            Err(KeyError::KdfParams { n: 1048576, .. })
        ));
        let argon = reseal(json.replace(r#""name":"scrypt""#, r#""name":"argon2""#));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&argon, b""),
            Err(KeyError::UnsupportedKdf(_))
        ));
        let aes = reseal(json.replace("nacl/secretbox", "aes-gcm"));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&aes, b""),
            Err(KeyError::UnsupportedCipher(_))
        ));
        assert!(PrivateKey::from_encrypted_pem(&reseal(json), b"").is_ok());
    }
}
