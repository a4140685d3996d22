//! The storage behind blobs, as a trait so the routes, the delivery actor
//! and the collectors do not care whether bytes go to local files or to an
//! S3-compatible object store.
//!
//! The contract every store keeps:
//!
//! - an upload in progress is never visible to [`BlobStore::read`]; only
//!   [`BlobStore::complete`] makes the object readable, all at once;
//! - a part reported written is durable (fsync'd, or acknowledged by the
//!   object store), so the row may then record it as received;
//! - every operation may be retried after a failure or a restart with the
//!   same arguments: completing a completed upload, aborting an aborted one
//!   and deleting a deleted object all succeed.
//!
//! Object-safe (boxed futures, no `async fn` in the trait), so the server
//! holds one `Arc<dyn BlobStore>` chosen by configuration.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use rampart_proto::BlobId;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

/// A boxed, sendable future (what the trait's methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A blob's bytes as they are read, in pieces of bounded size.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// The store's name for an upload in progress (the S3 multipart upload id),
/// kept in the blob's row so the upload survives a restart. The files store
/// needs none.
pub type UploadHandle = Option<String>;

/// What the store answered for a part (an S3 ETag; empty for files), needed
/// to complete the upload.
pub type PartTag = String;

/// An object found by [`BlobStore::list`], for the collector of objects
/// that have no row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub id: BlobId,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// Why the store failed. Never carries blob contents or full blob ids (see
/// `BlobId`'s `Debug`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No room left: the disk is full (ENOSPC), a disk quota is reached, or
    /// the object store refused for lack of space. Retrying later may work.
    #[error("no space left: {0}")]
    Full(String),
    /// The object or upload does not exist.
    #[error("not found")]
    NotFound,
    /// Anything else (I/O, network, the object store's answer, a stored
    /// object that does not match its row).
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Self::Full(e.to_string()),
            ErrorKind::NotFound => Self::NotFound,
            _ => Self::Other(e.to_string()),
        }
    }
}

/// Blob storage. Part `index` covers bytes
/// `index * BLOB_PART_BYTES ..` of the blob; every part but the last is
/// exactly `BLOB_PART_BYTES` long (the routes check that before calling).
pub trait BlobStore: Send + Sync + 'static {
    /// For logs: "files" or "s3".
    fn kind(&self) -> &'static str;

    /// Starts an upload of `id`; the handle goes into the blob's row.
    fn begin(&self, id: BlobId) -> BoxFuture<'_, Result<UploadHandle, StoreError>>;

    /// Stores part `index` durably. Writing the same part again replaces it.
    fn put_part(
        &self,
        id: BlobId,
        upload: UploadHandle,
        index: u32,
        data: Bytes,
    ) -> BoxFuture<'_, Result<PartTag, StoreError>>;

    /// Makes the upload a readable object of `size` bytes from its parts
    /// (the tags in part order). Succeeds if it already was completed.
    fn complete(
        &self,
        id: BlobId,
        upload: UploadHandle,
        size: u64,
        parts: Vec<PartTag>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Drops an upload in progress and its parts. Succeeds if there is none.
    fn abort(&self, id: BlobId, upload: UploadHandle) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Streams `range` of a complete object (`range.end` at most its size).
    fn read(&self, id: BlobId, range: Range<u64>) -> BoxFuture<'_, Result<ByteStream, StoreError>>;

    /// Deletes a complete object. Succeeds if there is none.
    fn delete(&self, id: BlobId) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every object the store holds (complete, and for stores that can
    /// list them, uploads in progress), for garbage collection.
    fn list(&self) -> BoxStream<'static, Result<StoredObject, StoreError>>;
}

/// Removes whatever the store holds of a blob: its upload in progress, if
/// any, and the complete object. Failures are logged, not returned: the
/// row is already gone. The collector of objects without rows retries what
/// the store can list (files; complete S3 objects); an S3 multipart upload
/// that failed to abort is left to the bucket's lifecycle rule.
pub async fn discard(store: &dyn BlobStore, id: BlobId, upload: UploadHandle, complete: bool) {
    if !complete && let Err(e) = store.abort(id, upload).await {
        tracing::warn!(blob = ?id, error = %e, "aborting an upload failed; the collector retries");
    }
    if let Err(e) = store.delete(id).await {
        tracing::warn!(blob = ?id, error = %e, "deleting a blob failed; the collector retries");
    }
}
