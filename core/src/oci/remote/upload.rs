//! Uploads: blob mounts across repositories, the streaming monolithic blob
//! upload (a multi-GiB class base is never held in memory), small blobs and
//! manifests through oci-client, and manifest deletes.

use std::path::Path;
use std::sync::atomic::Ordering;

use tokio::io::AsyncReadExt as _;

use super::Remote;
use crate::oci::registry::Progress;
use crate::oci::OciError;

impl Remote {
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
}
