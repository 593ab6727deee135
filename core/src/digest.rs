//! SHA-256 content digests, `sha256:<64 lowercase hex>`, and the one reader
//! that hashes what passes through it. A leaf: OCI blobs and manifests, the
//! signed lab index, golden images and the publish all hash through here.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, parsed once; shown (and written) as `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The lowercase hex, without `sha256:` (golden image names, `sha256sum`).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// What is wrong with a digest's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a sha256:<64 lowercase hex> digest")]
pub struct NotADigest(pub String);

/// Written and read as its text, `sha256:<hex>`: the wire form of every
/// descriptor, index entry and signature payload that carries one.
impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for Sha256Digest {
    fn eq(&self, text: &str) -> bool {
        sha256_hex(text).is_some_and(|hex| hex == self.hex())
    }
}

impl PartialEq<String> for Sha256Digest {
    fn eq(&self, text: &String) -> bool {
        *self == **text
    }
}

impl PartialEq<Sha256Digest> for String {
    fn eq(&self, digest: &Sha256Digest) -> bool {
        *digest == **self
    }
}

impl FromStr for Sha256Digest {
    type Err = NotADigest;

    fn from_str(text: &str) -> Result<Self, NotADigest> {
        let hex = sha256_hex(text).ok_or_else(|| NotADigest(text.to_owned()))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| NotADigest(text.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// The OCI digest of `bytes`: `sha256:` and the lowercase hex SHA-256.
pub fn sha256_digest(bytes: &[u8]) -> String {
    Sha256Digest::of(bytes).to_string()
}

/// The hex part of a well-formed `sha256:` digest (64 lowercase hex digits), or
/// `None` — which also keeps a digest from naming a path outside a layout
/// directory.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// SHA-256 over bytes that arrive in pieces where no [`Read`] is at hand (an
/// async download); [`HashingReader`] is the same over a reader.
#[derive(Clone, Default)]
pub struct Hasher {
    hasher: Sha256,
    len: u64,
}

impl Hasher {
    /// Nothing hashed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `bytes`, the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes were hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and length of what was hashed.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.len)
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Reads `inner` to its end, hashing it.
    pub fn drain(mut self) -> io::Result<(Sha256Digest, u64)> {
        let mut buf = vec![0u8; 1 << 20];
        while self.read(&mut buf)? != 0 {}
        Ok(self.finish())
    }

    /// The digest and length of what was read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams a file through SHA-256; returns its digest and length.
pub fn hash_file(path: &Path) -> io::Result<(Sha256Digest, u64)> {
    HashingReader::new(std::fs::File::open(path)?).drain()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn one_digest_three_ways() {
        assert_eq!(sha256_digest(b""), EMPTY);
        let (d, len) = HashingReader::new(&b""[..]).drain().unwrap();
        assert_eq!((d.to_string(), len), (EMPTY.to_owned(), 0));
        assert_eq!(EMPTY.parse::<Sha256Digest>().unwrap(), d);
        let data = vec![7u8; 3 << 20];
        let (d, len) = HashingReader::new(&data[..]).drain().unwrap();
        assert_eq!((d, len), (Sha256Digest::of(&data), data.len() as u64));
    }

    #[test]
    fn serde_keeps_the_text_form() {
        let d = Sha256Digest::of(b"");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Sha256Digest>("\"sha256:abc\"").is_err());
        let text = EMPTY.to_owned();
        assert_eq!(d, text);
        assert_eq!(text, d);
        assert_ne!(d, *"sha256:abc");
        let mut pieces = Hasher::new();
        pieces.update(b"ab");
        pieces.update(b"c");
        assert_eq!(pieces.finish(), (Sha256Digest::of(b"abc"), 3));
    }

    #[test]
    fn only_lowercase_sha256_parses() {
        assert!(sha256_hex(EMPTY).is_some());
        for bad in [
            "sha256:abc",
            &EMPTY.to_uppercase(),
            &EMPTY.replace("sha256", "sha512"),
            &EMPTY.replace("sha256:", "sha256:../"),
        ] {
            assert!(sha256_hex(bad).is_none(), "{bad}");
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad}");
        }
    }
}
