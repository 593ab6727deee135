//! Signatures over a plain file (a release's `SHA256SUMS`), the way
//! `cosign sign-blob --key` writes them and `cosign verify-blob --key` reads them:
//! ECDSA P-256 over SHA-256 of the file's bytes, DER-encoded, in standard base64.
//! The same signature checks with `openssl dgst -sha256 -verify KEY.pub
//! -signature SIG.der FILE` after `base64 -d`, so an operator needs no Metis
//! binary they have not checked yet.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use p256::ecdsa::Signature;

use super::{PublicKey, TrustedKeys, VerifyError};

/// Signs `blob`; returns the base64 DER signature (no newline), as cosign's
/// `--output-signature` file holds it.
#[cfg(feature = "signing")]
pub fn sign_blob(key: &super::PrivateKey, blob: &[u8]) -> String {
    BASE64.encode(key.sign(blob))
}

/// Checks the base64 DER `signature` (surrounding whitespace ignored) of `blob`
/// against the `keys`; returns the key that verified it.
pub fn verify_blob<'k>(
    keys: &'k TrustedKeys,
    blob: &[u8],
    signature: &str,
) -> Result<&'k PublicKey, VerifyError> {
    let der = BASE64
        .decode(signature.trim())
        .map_err(|e| VerifyError::SignatureMalformed(e.to_string()))?;
    let sig =
        Signature::from_der(&der).map_err(|e| VerifyError::SignatureMalformed(e.to_string()))?;
    keys.keys()
        .iter()
        .find(|k| k.verifies(blob, &sig))
        .ok_or(VerifyError::SignatureInvalid {
            keys: keys.keys().len(),
        })
}

#[cfg(all(test, feature = "signing"))]
mod tests {
    use super::*;
    use crate::trust::PrivateKey;

    #[test]
    fn a_signed_blob_verifies_and_any_change_does_not() {
        let key = PrivateKey::generate();
        let other = PrivateKey::generate();
        let keys = TrustedKeys::new(vec![other.public_key(), key.public_key()]);
        let sums = b"0123  metis-flash-0.1.0-x86_64-linux-musl.tar.gz\n".to_vec();
        let sig = sign_blob(&key, &sums);
        let found = verify_blob(&keys, &sums, &format!("{sig}\n")).unwrap();
        assert_eq!(found.fingerprint(), key.public_key().fingerprint());

        for i in [0, sums.len() / 2, sums.len() - 1] {
            let mut flipped = sums.clone();
            flipped[i] ^= 1;
            assert!(matches!(
                verify_blob(&keys, &flipped, &sig),
                Err(VerifyError::SignatureInvalid { keys: 2 })
            ));
        }
        let only_other = TrustedKeys::new(vec![other.public_key()]);
        assert!(verify_blob(&only_other, &sums, &sig).is_err());
        assert!(matches!(
            verify_blob(&keys, &sums, "not base64!"),
            Err(VerifyError::SignatureMalformed(_))
        ));
    }
}
