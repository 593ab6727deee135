//! A registry speaking the OCI distribution API, through `oci-client`.
//!
//! `oci-client` does the authentication (Basic, and the Bearer-token dance
//! on a `WWW-Authenticate: Bearer` challenge), manifests and cross-repository
//! mounts. Its blob push takes one in-memory slice, which a multi-GiB class
//! base must never be, so blob `HEAD`, the streaming monolithic upload
//! (`POST` then `PUT` with the file as the body, 1 MiB at a time) and ranged
//! blob downloads go through the same `reqwest` stack here, with the
//! `Authorization` header oci-client negotiated.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use tokio::io::AsyncReadExt as _;

use super::auth::{Auth, CredentialSource, Credentials};
use super::registry::{BlobStream, Progress, RegistryOptions};
use super::{OciError, MAX_SMALL_BYTES};

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

use crate::location::is_loopback;

/// The parameters of a `WWW-Authenticate: Bearer k="v",k2="v2"` challenge.
fn parse_challenge(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, t)) => (v.to_owned(), t),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, t)) => (v.trim().to_owned(), t),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((key, value));
        rest = tail.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    out
}

/// What is wrong with the registry's certificate, in plain words with what
/// to do, when `chain` (an error chain's text) is a TLS certificate failure.
///
/// rustls's error sits deep in reqwest's source chain (reqwest → hyper-util →
/// `io::Error` → `rustls::Error`). Naming its types would make rustls a direct
/// dependency of core whose version must track reqwest's; its `Display` text is
/// stable within rustls 0.23 (`invalid peer certificate: …`, the
/// `CertificateError` variant or its context text), so the text is matched.
/// An unknown TLS failure still says it is one, with rustls's words beside it.
pub(crate) fn tls_problem(chain: &str, host: &str) -> Option<String> {
    // The name a certificate carries has no port.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if host.matches(':').count() == 1 => host.split(':').next().unwrap_or(host),
        None => host,
    };
    let cert = "the registry's certificate";
    let pass_ca = "pass the lab CA certificate (PEM) with --ca-file or `registry.ca_file` in \
                   metis.yaml, or add it to this machine's trust store";
    let problem = if chain.contains("CaUsedAsEndEntity") {
        format!(
            "{cert} is a CA certificate used as a server certificate: issue a server \
             certificate from your CA (basicConstraints CA:FALSE, subjectAltName {host}) \
             and serve that instead"
        )
    } else if chain.contains("UnknownIssuer") {
        format!("{cert} is not signed by a CA this machine trusts: {pass_ca}")
    } else if chain.contains("certificate expired") || chain.contains("Expired") {
        format!(
            "{cert} has expired (or this machine's clock is wrong): renew the registry's \
             certificate, or set the clock"
        )
    } else if chain.contains("certificate not valid yet") || chain.contains("NotValidYet") {
        format!("{cert} is not valid yet: check this machine's clock")
    } else if chain.contains("certificate not valid for name") || chain.contains("NotValidForName")
    {
        format!(
            "{cert} is not issued for {host}: reach the registry by a name its certificate \
             lists, or issue one whose subjectAltName includes {host}"
        )
    } else if chain.contains("extended key usage") || chain.contains("InvalidPurpose") {
        format!("{cert} is not meant for a server (extendedKeyUsage lacks serverAuth): reissue it")
    } else if chain.contains("BadSignature") {
        format!("{cert} chain has a signature that does not verify: check the CA file")
    } else if chain.contains("invalid peer certificate") {
        format!("{cert} was refused: {pass_ca}, or fix the certificate")
    } else if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
        "the registry did not answer in TLS (plain HTTP on that port?): check the port".into()
    } else if chain.contains("received fatal alert") {
        "the registry ended the TLS handshake: check that it serves TLS for this name".into()
    } else {
        return None;
    };
    Some(problem)
}

/// The full error chain of `e`, for messages.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
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

    fn unauthorized(&self, repository: &str, status: u16) -> OciError {
        OciError::Unauthorized {
            registry: self.host.clone(),
            repository: repository.to_owned(),
            status,
            credentials: self.source.to_string(),
        }
    }

    /// A failed request: a refused certificate ([`OciError::Tls`], in plain
    /// words), else the registry is unreachable.
    pub(crate) fn map_reqwest(&self, e: &reqwest::Error) -> OciError {
        let reason = chain(e);
        match tls_problem(&reason, &self.host) {
            Some(problem) => OciError::Tls {
                registry: self.host.clone(),
                problem,
                reason,
            },
            None => OciError::Unreachable {
                registry: self.host.clone(),
                reason,
            },
        }
    }

    fn status_error(
        &self,
        repository: &str,
        action: &str,
        status: u16,
        message: String,
    ) -> OciError {
        match status {
            401 | 403 => self.unauthorized(repository, status),
            404 => OciError::NotFound {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                what: action.to_owned(),
            },
            _ => OciError::Registry {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                action: action.to_owned(),
                status,
                message: message.chars().take(300).collect(),
            },
        }
    }

    fn map_oci(&self, e: OciDistributionError, repository: &str, action: &str) -> OciError {
        match e {
            OciDistributionError::RequestError(r) => self.map_reqwest(&r),
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => self.unauthorized(repository, 401),
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_error(repository, action, code, message)
            }
            OciDistributionError::ImageManifestNotFoundError(_) => {
                self.status_error(repository, action, 404, String::new())
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let code = envelope.errors.first().map(|e| &e.code);
                let status = match code {
                    Some(OciErrorCode::Unauthorized) => 401,
                    Some(OciErrorCode::Denied) => 403,
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound,
                    ) => 404,
                    Some(OciErrorCode::Toomanyrequests) => 429,
                    _ => 400,
                };
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.status_error(repository, action, status, message)
            }
            other => OciError::Registry {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                action: action.to_owned(),
                status: 0,
                message: chain(&other),
            },
        }
    }

    /// The `Authorization` header for `repository` (negotiated once per
    /// repository and operation; oci-client does the token dance).
    async fn authorization(
        &self,
        repository: &str,
        push: bool,
    ) -> Result<Option<String>, OciError> {
        let key = (repository.to_owned(), push);
        let mut cache = self.headers.lock().await;
        // Bearer tokens expire (distribution: 5 min, Harbor: 30 min); a
        // registry checks them when a request starts, so renewing them after
        // a minute keeps every request, however long, authorised.
        if let Some((h, when)) = cache.get(&key) {
            let bearer = h.as_deref().is_some_and(|h| h.starts_with("Bearer "));
            if !bearer || when.elapsed() < std::time::Duration::from_secs(60) {
                return Ok(h.clone());
            }
        }
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = self
            .client
            .auth(
                &self.reference(repository, "latest"),
                &self.client_auth(),
                op,
            )
            .await
            .map_err(|e| self.map_oci(e, repository, "authenticating"))?;
        let header = match (token, &self.auth) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Auth::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            (None, Auth::Anonymous) => None,
        };
        cache.insert(key, (header.clone(), std::time::Instant::now()));
        Ok(header)
    }

    /// [`Auth`] as oci-client takes it.
    fn client_auth(&self) -> RegistryAuth {
        match &self.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }

    fn with_auth(
        builder: reqwest::RequestBuilder,
        header: Option<String>,
    ) -> reqwest::RequestBuilder {
        match header {
            Some(h) => builder.header(reqwest::header::AUTHORIZATION, h),
            None => builder,
        }
    }

    /// `HEAD` of a blob: whether `repository` has `digest`.
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, OciError> {
        let header = self.authorization(repository, false).await?;
        let res = Self::with_auth(
            self.http
                .head(self.url(&format!("{repository}/blobs/{digest}"))),
            header,
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        match res.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(self.status_error(repository, &format!("blob {digest}"), s, String::new())),
        }
    }

    /// Mounts `digest` from `from` into `repository`; `false` when the
    /// registry declined (then the blob must be uploaded).
    ///
    /// Under Bearer-token auth (Harbor) a mount needs one token with push on
    /// the target and pull on the source; oci-client asks for one repository
    /// per token, so that token is fetched here.
    pub async fn mount_blob(
        &self,
        repository: &str,
        from: &str,
        digest: &str,
    ) -> Result<bool, OciError> {
        let header = match self.two_repository_token(repository, from).await? {
            Some(token) => Some(format!("Bearer {token}")),
            None => self.authorization(repository, true).await?,
        };
        let res = Self::with_auth(
            self.http
                .post(self.url(&format!("{repository}/blobs/uploads/")))
                .query(&[("mount", digest), ("from", from)])
                .header(reqwest::header::CONTENT_LENGTH, 0),
            header,
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        match res.status().as_u16() {
            201 => {
                self.counters.mounted_blobs.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            // 202: an upload session instead of a mount; 401/403/404: no
            // access to the source. Either way the caller uploads.
            202 | 401 | 403 | 404 => Ok(false),
            s => {
                let text = self.error_text(res).await;
                Err(self.status_error(repository, &format!("mounting blob {digest}"), s, text))
            }
        }
    }

    /// A Bearer token for push on `repository` and pull on `from`, when the
    /// registry uses Bearer tokens; `None` when it does not.
    async fn two_repository_token(
        &self,
        repository: &str,
        from: &str,
    ) -> Result<Option<String>, OciError> {
        self.scoped_token(
            repository,
            &[
                format!("repository:{repository}:pull,push"),
                format!("repository:{from}:pull"),
            ],
        )
        .await
    }

    /// A Bearer token for `scopes` (`repository:NAME:ACTIONS`), when the
    /// registry uses Bearer tokens; `None` when it does not.
    async fn scoped_token(
        &self,
        repository: &str,
        scopes: &[String],
    ) -> Result<Option<String>, OciError> {
        let res = self
            .http
            .get(self.url(""))
            .send()
            .await
            .map_err(|e| self.map_reqwest(&e))?;
        let Some(challenge) = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(parse_challenge)
        else {
            return Ok(None);
        };
        let Some(realm) = challenge
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
        else {
            return Ok(None);
        };
        let mut query: Vec<(String, String)> = scopes
            .iter()
            .map(|s| ("scope".to_owned(), s.clone()))
            .collect();
        if let Some((_, service)) = challenge.iter().find(|(k, _)| k == "service") {
            query.push(("service".to_owned(), service.clone()));
        }
        let mut req = self.http.get(&realm).query(&query);
        match &self.auth {
            Auth::Basic { username, password } => req = req.basic_auth(username, Some(password)),
            Auth::Anonymous => {}
        }
        let res = req.send().await.map_err(|e| self.map_reqwest(&e))?;
        if !res.status().is_success() {
            return Err(self.unauthorized(repository, res.status().as_u16()));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body: TokenResponse = res.json().await.map_err(|e| self.map_reqwest(&e))?;
        Ok(body.token.or(body.access_token))
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}://{}{location}", self.scheme, self.host)
        } else {
            location.to_owned()
        }
    }

    /// Uploads `path` as blob `digest` (`size` bytes), streaming.
    pub async fn push_blob_file(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        path: &Path,
        progress: &Progress,
    ) -> Result<(), OciError> {
        let header = self.authorization(repository, true).await?;
        let action = format!("uploading blob {digest}");
        let res = Self::with_auth(
            self.http
                .post(self.url(&format!("{repository}/blobs/uploads/")))
                .header(reqwest::header::CONTENT_LENGTH, 0),
            header.clone(),
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        if res.status().as_u16() != 202 {
            let status = res.status().as_u16();
            let text = self.error_text(res).await;
            return Err(self.status_error(repository, &action, status, text));
        }
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| OciError::Registry {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                action: action.clone(),
                status: 202,
                message: "no Location header in the upload session".into(),
            })?;
        let mut url =
            reqwest::Url::parse(&self.absolute(location)).map_err(|e| OciError::Registry {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                action: action.clone(),
                status: 202,
                message: format!("bad upload Location {location:?}: {e}"),
            })?;
        url.query_pairs_mut().append_pair("digest", digest);

        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| OciError::io("opening", path, e))?;
        let counters = self.counters.clone();
        let progress = progress.clone();
        let body = futures_util::stream::try_unfold(file, move |mut file| {
            let counters = counters.clone();
            let progress = progress.clone();
            async move {
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                buf.truncate(n);
                counters
                    .uploaded_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                progress.advance(n as u64);
                Ok(Some((bytes::Bytes::from(buf), file)))
            }
        });
        let res = Self::with_auth(
            self.http
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(body)),
            header,
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        let status = res.status().as_u16();
        if status != 201 {
            let text = self.error_text(res).await;
            return Err(self.status_error(repository, &action, status, text));
        }
        self.counters.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads a small in-memory blob (config) through oci-client.
    pub async fn push_blob_bytes(
        &self,
        repository: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(), OciError> {
        self.authorization(repository, true).await?;
        self.client
            .push_blob(&self.reference(repository, "latest"), bytes, digest)
            .await
            .map_err(|e| self.map_oci(e, repository, "uploading the config blob"))?;
        self.counters
            .uploaded_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.counters.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Puts manifest `bytes` under `reference` (a tag or its digest), unchanged.
    pub async fn push_manifest_raw(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), OciError> {
        self.authorization(repository, true).await?;
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
            OciError::InvalidReference {
                reference: media_type.to_owned(),
                reason: "not a valid media type".into(),
            }
        })?;
        self.client
            .push_manifest_raw(
                &self.reference(repository, reference),
                bytes.to_vec(),
                content_type,
            )
            .await
            .map_err(|e| self.map_oci(e, repository, &format!("pushing manifest {reference}")))?;
        Ok(())
    }

    /// Every tag of `repository` (none when the repository does not exist).
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, OciError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let header = self.authorization(repository, false).await?;
        let mut tags = Vec::new();
        let mut next = Some(self.url(&format!("{repository}/tags/list?n=1000")));
        while let Some(url) = next.take() {
            let res = Self::with_auth(self.http.get(&url), header.clone())
                .send()
                .await
                .map_err(|e| self.map_reqwest(&e))?;
            match res.status().as_u16() {
                200 => {}
                404 => return Ok(tags),
                s => {
                    let text = self.error_text(res).await;
                    return Err(self.status_error(repository, "listing tags", s, text));
                }
            }
            // RFC 5988 paging: `Link: </v2/…/tags/list?last=…&n=…>; rel="next"`.
            next = res
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split_once('<')?.1.split_once('>'))
                .map(|(link, _)| self.absolute(link));
            let page: TagList = res.json().await.map_err(|e| self.map_reqwest(&e))?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// Deletes manifest `digest` of `repository`, and with it every tag
    /// naming it. A docker-registry needs `storage: delete: enabled: true`;
    /// Harbor a robot with the delete permission.
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), OciError> {
        let header = match self
            .scoped_token(repository, &[format!("repository:{repository}:delete")])
            .await?
        {
            Some(token) => Some(format!("Bearer {token}")),
            None => self.authorization(repository, true).await?,
        };
        let res = Self::with_auth(
            self.http
                .delete(self.url(&format!("{repository}/manifests/{digest}"))),
            header,
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        match res.status().as_u16() {
            200 | 202 | 404 => Ok(()),
            405 => Err(OciError::Registry {
                registry: self.host.clone(),
                repository: repository.to_owned(),
                action: format!("deleting manifest {digest}"),
                status: 405,
                message: "the registry does not allow deletes; a docker-registry needs \
                          `storage: delete: enabled: true` in its config"
                    .into(),
            }),
            s => {
                let text = self.error_text(res).await;
                Err(self.status_error(repository, &format!("deleting manifest {digest}"), s, text))
            }
        }
    }

    /// Fetches the manifest `reference` (tag or digest): its bytes and digest.
    ///
    /// A manifest is small: one announced (`Content-Length`) over
    /// [`MAX_SMALL_BYTES`] is refused before its body is read, and reading
    /// stops as soon as more than that arrives. The digest is the one asked
    /// for, else the registry's `Docker-Content-Digest`, else the bytes' own;
    /// the caller checks the bytes against it.
    pub async fn pull_manifest_raw(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), OciError> {
        let header = self.authorization(repository, false).await?;
        self.counters
            .manifest_requests
            .fetch_add(1, Ordering::Relaxed);
        let res = Self::with_auth(
            self.http
                .get(self.url(&format!("{repository}/manifests/{reference}")))
                .header(reqwest::header::ACCEPT, super::MEDIA_TYPE_IMAGE_MANIFEST),
            header,
        )
        .send()
        .await
        .map_err(|e| self.map_reqwest(&e))?;
        let status = res.status().as_u16();
        if status != 200 {
            let text = self.error_text(res).await;
            return Err(self.status_error(repository, &format!("tag {reference}"), status, text));
        }
        let announced = res
            .headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .map(str::to_owned);
        let bytes = self
            .read_capped(
                res,
                repository,
                &format!("manifest {reference}"),
                MAX_SMALL_BYTES,
            )
            .await?;
        let digest = if reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            announced.unwrap_or_else(|| super::sha256_digest(&bytes))
        };
        Ok((bytes, digest))
    }

    /// The body of `res`, at most `cap` bytes: refused before reading when
    /// the announced length is larger, and as soon as more than `cap` arrived.
    async fn read_capped(
        &self,
        mut res: reqwest::Response,
        repository: &str,
        what: &str,
        cap: u64,
    ) -> Result<Vec<u8>, OciError> {
        let too_large = |size: u64, at_least: bool| OciError::TooLarge {
            registry: self.host.clone(),
            repository: repository.to_owned(),
            what: what.to_owned(),
            size,
            at_least,
            cap,
        };
        let announced = res.content_length();
        if let Some(len) = announced.filter(|&len| len > cap) {
            return Err(too_large(len, false));
        }
        let mut body = Vec::with_capacity(announced.unwrap_or(0) as usize);
        while let Some(chunk) = res.chunk().await.map_err(|e| self.map_reqwest(&e))? {
            self.counters
                .downloaded_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let have = (body.len() + chunk.len()) as u64;
            if have > cap {
                // Dropping the response closes the connection unread.
                return Err(too_large(have, true));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The start of an error response's body, for the message: a registry
    /// that answers an error with an endless body is not read to its end.
    async fn error_text(&self, res: reqwest::Response) -> String {
        const ERROR_TEXT_CAP: u64 = 16 << 10;
        match self.read_capped(res, "", "", ERROR_TEXT_CAP).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Streams blob `digest` from byte `offset` on.
    pub async fn open_blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        let header = self.authorization(repository, false).await?;
        let mut offset = offset;
        loop {
            let mut req = self
                .http
                .get(self.url(&format!("{repository}/blobs/{digest}")));
            if offset > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            }
            self.counters.blob_requests.fetch_add(1, Ordering::Relaxed);
            let res = Self::with_auth(req, header.clone())
                .send()
                .await
                .map_err(|e| self.map_reqwest(&e))?;
            let from_start = match res.status().as_u16() {
                200 => true,
                206 => false,
                // The partial file is as long as the blob, or longer: start over.
                416 if offset > 0 => {
                    offset = 0;
                    continue;
                }
                s => {
                    let text = self.error_text(res).await;
                    return Err(self.status_error(repository, &format!("blob {digest}"), s, text));
                }
            };
            let host = self.host.clone();
            let counters = self.counters.clone();
            return Ok(BlobStream {
                from_start,
                length: res.content_length(),
                stream: res
                    .bytes_stream()
                    .map_ok(move |chunk| {
                        counters
                            .downloaded_bytes
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        chunk
                    })
                    .map_err(move |e| OciError::Unreachable {
                        registry: host.clone(),
                        reason: chain(&e),
                    })
                    .boxed(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_challenge, tls_problem};

    #[test]
    fn tls_failures_in_plain_words() {
        let host = "harbor.lab:443";
        let sending = "error sending request for url (https://harbor.lab/v2/): client error \
                       (Connect): ";
        for (rustls, words) in [
            (
                "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "is a CA certificate used as a server certificate: issue a server certificate \
                 from your CA",
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                "is not signed by a CA this machine trusts: pass the lab CA",
            ),
            (
                "invalid peer certificate: certificate expired: verification time 1796000000 \
                 (UNIX), but certificate is not valid after 1795000000 (1000000 seconds ago)",
                "has expired (or this machine's clock is wrong)",
            ),
            (
                "invalid peer certificate: certificate not valid for name \"harbor.lab\"; \
                 certificate is only valid for IpAddress(10.0.0.5)",
                "is not issued for harbor.lab: reach the registry by a name its certificate lists, \
                 or issue one whose subjectAltName includes harbor.lab",
            ),
            (
                "invalid peer certificate: certificate not valid yet: verification time 1",
                "is not valid yet",
            ),
            ("invalid peer certificate: Revoked", "was refused"),
            (
                "received corrupt message of type InvalidContentType",
                "did not answer in TLS",
            ),
        ] {
            let problem = tls_problem(&format!("{sending}{rustls}"), host)
                .unwrap_or_else(|| panic!("{rustls}: not seen as TLS"));
            assert!(problem.contains(words), "{rustls}: {problem}");
        }
        for other in [
            "error sending request for url (https://harbor.lab/v2/): client error (Connect): \
             tcp connect error: Connection refused (os error 111)",
            "error sending request: dns error: failed to lookup address information: Name or \
             service not known",
            "error sending request: operation timed out",
        ] {
            assert_eq!(tls_problem(other, host), None, "{other}");
        }
    }

    #[test]
    fn bearer_challenge_parameters() {
        let p = parse_challenge(
            r#"realm="https://harbor.lab/service/token",service="harbor-registry",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p[0],
            ("realm".into(), "https://harbor.lab/service/token".into())
        );
        assert_eq!(p[1], ("service".into(), "harbor-registry".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull,push".into()));
    }
}
