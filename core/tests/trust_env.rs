//! Loading the signing key the CI way: `COSIGN_PRIVATE_KEY` + `COSIGN_PASSWORD`.
//! Its own test binary (own process), because it sets environment variables.

use metis_core::trust::{KeyError, PrivateKey, PublicKey, TrustedKeys};
use std::path::{Path, PathBuf};

#[test]
fn signing_key_from_file_or_environment() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/demo-keys");
    let pem = std::fs::read_to_string(demo.join("cosign.key")).unwrap();
    let public = PublicKey::read(&demo.join("cosign.pub")).unwrap();

    std::env::remove_var("COSIGN_PRIVATE_KEY");
    std::env::remove_var("COSIGN_PASSWORD");
    assert!(matches!(
        PrivateKey::from_file_or_env(None),
        Err(KeyError::PrivateKeyMissing)
    ));
    assert!(matches!(
        PrivateKey::from_file_or_env(Some(&demo.join("cosign.key"))),
        Err(KeyError::PasswordMissing)
    ));

    std::env::set_var("COSIGN_PASSWORD", "demo");
    let from_file = PrivateKey::from_file_or_env(Some(&demo.join("cosign.key"))).unwrap();
    assert_eq!(from_file.public_key(), public);
    std::env::set_var("COSIGN_PRIVATE_KEY", &pem);
    assert_eq!(
        PrivateKey::from_file_or_env(None).unwrap().public_key(),
        public
    );

    std::env::set_var("COSIGN_PASSWORD", "not demo");
    assert!(matches!(
        PrivateKey::from_file_or_env(None),
        Err(KeyError::WrongPassword)
    ));

    // The example inventory's `signing.public_keys` is this pair's public half.
    let inventory = demo.parent().unwrap();
    let keys =
        TrustedKeys::read_files(inventory, &[PathBuf::from("demo-keys/cosign.pub")]).unwrap();
    assert_eq!(keys.keys(), [public]);
}
