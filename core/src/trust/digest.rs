//! The digests trust names: cosign's signature tag; the digest itself is
//! [`crate::digest`].

pub use crate::digest::sha256_digest;
use crate::digest::sha256_hex;

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
