//! Blobs in an S3-compatible object store (`object_store`'s `AmazonS3`).
//!
//! An upload is an S3 multipart upload: its id and the ETag of every part
//! are kept in the database, so an upload continues across server restarts
//! and is completed from the recorded parts. S3 shows an object only once
//! the multipart upload is completed, so a half-written blob is never
//! readable. Objects are named `blobs/<id>`.
//!
//! Multipart uploads are not listed by `object_store`: one the server
//! started but crashed before recording stays in the bucket until a
//! lifecycle rule ("abort incomplete multipart uploads after N days")
//! removes it. Operators should set one.

use super::store::{
    BlobStore, BoxFuture, ByteStream, PartTag, StoreError, StoredObject, UploadHandle,
};
use crate::config::S3Config;
use futures_util::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _,
    PutPayload, RetryConfig,
};
use rampart_proto::BlobId;
use std::ops::Range;
use std::time::Duration;

/// The folder (key prefix) of blobs in the bucket.
const PREFIX: &str = "blobs";
/// One request to the store, an 8 MiB part included, takes at most this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A failing request is retried for at most this long, so a client's
/// request fails within a bounded time instead of hanging for minutes.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// The S3 store.
#[derive(Debug)]
pub struct S3Store {
    store: AmazonS3,
    bucket: String,
}

impl S3Store {
    /// Builds the client (no request yet). Credentials missing from the
    /// config come from the standard `AWS_*` environment, web identity or
    /// instance metadata.
    pub fn new(config: &S3Config) -> Result<Self, StoreError> {
        // Client settings one by one: `with_client_options` would replace
        // those set before (allow_http among them) and from the environment.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", REQUEST_TIMEOUT.as_secs()),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 4,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(Self {
            store,
            bucket: config.bucket.clone(),
        })
    }

    /// One listing request, so that a wrong endpoint, bucket or credential
    /// stops the server at startup rather than at the first upload.
    pub async fn check(&self) -> Result<(), StoreError> {
        let prefix = Path::from(PREFIX);
        match self.store.list(Some(&prefix)).next().await {
            Some(Err(e)) => Err(StoreError::Other(format!(
                "cannot list bucket {:?}: {e}",
                self.bucket
            ))),
            _ => Ok(()),
        }
    }
}

fn path(id: BlobId) -> Path {
    Path::from(format!("{PREFIX}/{id}"))
}

/// An `object_store` error as ours: "not found" kept apart, lack of space
/// recognised (HTTP 507 or an S3-style `...StorageFull` code), and the full
/// blob id, which appears in object paths, replaced by its short form.
fn store_error(id: Option<BlobId>, e: object_store::Error) -> StoreError {
    if let object_store::Error::NotFound { .. } = e {
        return StoreError::NotFound;
    }
    // The whole chain: the innermost cause (a TLS or URL error under
    // "builder error", the store's error code) is what an operator needs.
    let mut text = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    if let Some(id) = id {
        text = text.replace(&id.to_string(), &format!("{id:?}"));
    }
    if text.contains("507 Insufficient Storage") || text.contains("StorageFull") {
        StoreError::Full(text)
    } else {
        StoreError::Other(text)
    }
}

fn io_error(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(store_error(None, e).to_string())
}

/// The upload handle a row must have for an S3 upload.
fn handle(upload: UploadHandle) -> Result<String, StoreError> {
    upload.ok_or_else(|| StoreError::Other("the S3 upload has no multipart id".into()))
}

impl BlobStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn begin(&self, id: BlobId) -> BoxFuture<'_, Result<UploadHandle, StoreError>> {
        Box::pin(async move {
            let upload = self
                .store
                .create_multipart(&path(id))
                .await
                .map_err(|e| store_error(Some(id), e))?;
            Ok(Some(upload))
        })
    }

    fn put_part(
        &self,
        id: BlobId,
        upload: UploadHandle,
        index: u32,
        data: bytes::Bytes,
    ) -> BoxFuture<'_, Result<PartTag, StoreError>> {
        Box::pin(async move {
            let upload = handle(upload)?;
            let index = usize::try_from(index).map_err(|e| StoreError::Other(e.to_string()))?;
            let part = self
                .store
                .put_part(&path(id), &upload, index, PutPayload::from(data))
                .await
                .map_err(|e| store_error(Some(id), e))?;
            Ok(part.content_id)
        })
    }

    fn complete(
        &self,
        id: BlobId,
        upload: UploadHandle,
        size: u64,
        parts: Vec<PartTag>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let location = path(id);
            let parts = parts
                .into_iter()
                .map(|content_id| PartId { content_id })
                .collect();
            let done = match upload {
                Some(upload) => self
                    .store
                    .complete_multipart(&location, &upload, parts)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            };
            match done {
                Ok(()) => Ok(()),
                // Completed before (a retry after a crash or a failed
                // database update): the object is there with the right size.
                Err(e) => match self.store.head(&location).await {
                    Ok(meta) if meta.size == size => Ok(()),
                    _ => Err(store_error(Some(id), e)),
                },
            }
        })
    }

    fn abort(&self, id: BlobId, upload: UploadHandle) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(upload) = upload else {
                return Ok(());
            };
            match self.store.abort_multipart(&path(id), &upload).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store_error(Some(id), e)),
            }
        })
    }

    fn read(&self, id: BlobId, range: Range<u64>) -> BoxFuture<'_, Result<ByteStream, StoreError>> {
        Box::pin(async move {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..GetOptions::default()
            };
            let got = self
                .store
                .get_opts(&path(id), options)
                .await
                .map_err(|e| store_error(Some(id), e))?;
            Ok(got.into_stream().map_err(io_error).boxed())
        })
    }

    fn delete(&self, id: BlobId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            match self.store.delete(&path(id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store_error(Some(id), e)),
            }
        })
    }

    fn list(&self) -> BoxStream<'static, Result<StoredObject, StoreError>> {
        let prefix = Path::from(PREFIX);
        self.store
            .list(Some(&prefix))
            .filter_map(|item| async move {
                match item {
                    Err(e) => Some(Err(store_error(None, e))),
                    Ok(meta) => {
                        // Objects under the prefix not named by a blob id
                        // are someone else's: left alone.
                        let id = BlobId::parse(meta.location.filename()?).ok()?;
                        Some(Ok(StoredObject {
                            id,
                            modified_ms: meta.last_modified.timestamp_millis(),
                        }))
                    }
                }
            })
            .boxed()
    }
}
