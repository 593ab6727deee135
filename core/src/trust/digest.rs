//! OCI content digests: `sha256:<64 lowercase hex>`.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The OCI digest of `bytes`: `sha256:` and the lowercase hex SHA-256.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Streams a file through SHA-256; returns its OCI digest and length.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), len))
}

/// The hex part of a well-formed `sha256:` digest, or `None`.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// The tag cosign publishes a manifest's signature under: `sha256-<hex>.sig`.
///
/// Returns `None` when `manifest_digest` is not a well-formed `sha256:` digest.
pub fn signature_tag(manifest_digest: &str) -> Option<String> {
    sha256_hex(manifest_digest).map(|hex| format!("sha256-{hex}.sig"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_tag() {
        let d = sha256_digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signature_tag(&d).unwrap(),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.sig"
        );
        assert!(signature_tag("sha256:abc").is_none());
        assert!(signature_tag(&d.to_uppercase()).is_none());
        assert!(signature_tag(&d.replace("sha256", "sha512")).is_none());
    }
}
