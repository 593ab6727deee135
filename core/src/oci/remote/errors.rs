//! A failed request as an [`OciError`] that says what is wrong: a refused
//! certificate in plain words, an HTTP status, oci-client's errors.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::Remote;
use crate::oci::OciError;

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
    pub(super) fn unauthorized(&self, repository: &str, status: u16) -> OciError {
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

    pub(super) fn status_error(
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

    pub(super) fn map_oci(
        &self,
        e: OciDistributionError,
        repository: &str,
        action: &str,
    ) -> OciError {
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

    /// The start of an error response's body, for the message: a registry
    /// that answers an error with an endless body is not read to its end.
    pub(super) async fn error_text(&self, res: reqwest::Response) -> String {
        const ERROR_TEXT_CAP: u64 = 16 << 10;
        match self.read_capped(res, "", "", ERROR_TEXT_CAP).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(_) => String::new(),
        }
    }
}
