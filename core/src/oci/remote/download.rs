//! Reads: blob `HEAD`, tags, manifests (capped: a manifest is small) and
//! ranged blob streams.

use std::sync::atomic::Ordering;

use futures_util::{StreamExt as _, TryStreamExt as _};

use super::{chain, Remote};
use crate::oci::registry::BlobStream;
use crate::oci::{OciError, MAX_SMALL_BYTES};

impl Remote {
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
                .header(
                    reqwest::header::ACCEPT,
                    crate::oci::MEDIA_TYPE_IMAGE_MANIFEST,
                ),
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
            announced.unwrap_or_else(|| crate::oci::sha256_digest(&bytes))
        };
        Ok((bytes, digest))
    }

    /// The body of `res`, at most `cap` bytes: refused before reading when
    /// the announced length is larger, and as soon as more than `cap` arrived.
    pub(super) async fn read_capped(
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
