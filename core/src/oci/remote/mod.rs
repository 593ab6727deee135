//! A registry speaking the OCI distribution API, through `oci-client`.
//!
//! `oci-client` does the authentication (Basic, and the Bearer-token dance
//! on a `WWW-Authenticate: Bearer` challenge), manifests and cross-repository
//! mounts. Its blob push takes one in-memory slice, which a multi-GiB class
//! base must never be, so blob `HEAD`, the streaming monolithic upload
//! (`POST` then `PUT` with the file as the body, 1 MiB at a time) and ranged
//! blob downloads go through the same `reqwest` stack here, with the
//! `Authorization` header oci-client negotiated.
//!
//! One file a concern: the client and its setup here, the `Authorization`
//! header and Bearer tokens in `token`, errors in plain words in `errors`,
//! uploads (blobs, mounts, manifests, deletes) in `upload`, and reads
//! (manifests, ranged blobs, tags) in `download`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::Reference;

use super::auth::{Auth, CredentialSource, Credentials};
use super::registry::RegistryOptions;
use super::OciError;
use crate::location::is_loopback;
use errors::chain;

mod download;
mod errors;
#[cfg(test)]
mod tests;
mod token;
mod upload;

/// Counts of what a [`Remote`] moved, for reports and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Blob bytes uploaded.
    pub uploaded_bytes: AtomicU64,
    /// Blobs uploaded.
    pub uploaded_blobs: AtomicU64,
    /// Blobs made available by a cross-repository mount.
    pub mounted_blobs: AtomicU64,
    /// Blobs already present (HEAD said so), not uploaded.
    pub present_blobs: AtomicU64,
    /// Body bytes read from the registry: manifests and blobs.
    pub downloaded_bytes: AtomicU64,
    /// Manifest `GET`s sent.
    pub manifest_requests: AtomicU64,
    /// Blob `GET`s sent.
    pub blob_requests: AtomicU64,
}

/// Repository and whether for push: what an `Authorization` header is good for.
type AuthKey = (String, bool);

/// A registry reached over HTTPS (or loopback HTTP when asked).
pub struct Remote {
    host: String,
    scheme: &'static str,
    client: oci_client::Client,
    http: reqwest::Client,
    auth: Auth,
    source: CredentialSource,
    headers: tokio::sync::Mutex<HashMap<AuthKey, (Option<String>, std::time::Instant)>>,
    /// What this client moved.
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("host", &self.host)
            .field("scheme", &self.scheme)
            .field("credentials", &self.source)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A client for `host` (`host[:port]`).
    pub fn new(host: &str, options: &RegistryOptions) -> Result<Self, OciError> {
        let transport = |reason: String| OciError::Transport {
            registry: host.to_owned(),
            reason,
        };
        if host.is_empty() || host.contains('/') {
            return Err(OciError::InvalidReference {
                reference: host.to_owned(),
                reason: "expected host[:port]".into(),
            });
        }
        if options.insecure_http && !is_loopback(host) {
            return Err(transport(
                "plain HTTP is only allowed to a loopback registry (127.0.0.1, ::1, localhost); \
                 drop --insecure-http and use TLS (--ca-file for a lab CA)"
                    .into(),
            ));
        }
        let credentials = match &options.credentials {
            Some(c) => c.clone(),
            None => Credentials::for_registry(host)?,
        };
        let mut http = super::http_client();
        let mut extra = Vec::new();
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| OciError::io("reading CA file", ca, e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| transport(format!("{} is not a PEM certificate: {e}", ca.display())))?
            {
                http = http.add_root_certificate(cert);
            }
            extra.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            });
        }
        let http = http
            .build()
            .map_err(|e| transport(format!("setting up TLS: {}", chain(&e))))?;
        let config = ClientConfig {
            protocol: if options.insecure_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: extra,
            connect_timeout: Some(super::CONNECT_TIMEOUT),
            read_timeout: Some(super::READ_TIMEOUT),
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config)
            .map_err(|e| transport(format!("setting up the client: {}", chain(&e))))?;
        Ok(Remote {
            host: host.to_owned(),
            scheme: if options.insecure_http {
                "http"
            } else {
                "https"
            },
            client,
            http,
            auth: credentials.auth,
            source: credentials.source,
            headers: Default::default(),
            counters: Arc::default(),
        })
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(self.host.clone(), repository.into(), tag_or_digest.into())
        } else {
            Reference::with_tag(self.host.clone(), repository.into(), tag_or_digest.into())
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}/v2/{path}", self.scheme, self.host)
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}://{}{location}", self.scheme, self.host)
        } else {
            location.to_owned()
        }
    }
}
