//! The `Authorization` header: negotiated by oci-client per repository and
//! operation, kept a minute, and Bearer tokens for more than one repository
//! (a cross-repository mount, a delete) fetched here.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::Remote;
use crate::oci::auth::Auth;
use crate::oci::OciError;

/// The parameters of a `WWW-Authenticate: Bearer k="v",k2="v2"` challenge.
pub(super) fn parse_challenge(params: &str) -> Vec<(String, String)> {
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

impl Remote {
    /// The `Authorization` header for `repository` (negotiated once per
    /// repository and operation; oci-client does the token dance).
    pub(super) async fn authorization(
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
    pub(super) fn client_auth(&self) -> RegistryAuth {
        match &self.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }

    pub(super) fn with_auth(
        builder: reqwest::RequestBuilder,
        header: Option<String>,
    ) -> reqwest::RequestBuilder {
        match header {
            Some(h) => builder.header(reqwest::header::AUTHORIZATION, h),
            None => builder,
        }
    }

    /// A Bearer token for push on `repository` and pull on `from`, when the
    /// registry uses Bearer tokens; `None` when it does not.
    pub(super) async fn two_repository_token(
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
    pub(super) async fn scoped_token(
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
}
