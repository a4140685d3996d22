//! Blobs as files under the data directory (the default store).
//!
//! ```text
//! data_dir/blobs/uploads/<id>         uploads in progress, parts written in place
//! data_dir/blobs/complete/<ab>/<id>   complete blobs, by the id's first byte
//! ```
//!
//! Uploads in progress live in their own directory, so a half-written blob
//! is never where reads look. A part is written at its offset and fsync'd
//! before the row records it. Completion checks the length, fsyncs the
//! file, renames it into `complete/` and fsyncs both directories: after a
//! crash the blob is either still an upload (and completing again works) or
//! complete, never partly visible.
//!
//! Deletion unlinks the file; the file system may keep the freed blocks
//! until reused. They hold ciphertext whose key lives only in messages,
//! which are deleted securely (see `delivery::lifetime`).

use super::store::{
    BlobStore, BoxFuture, ByteStream, PartTag, StoreError, StoredObject, UploadHandle,
};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt as _};
use rampart_proto::BlobId;
use rampart_proto::limits::BLOB_PART_BYTES;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Bytes per piece when streaming a blob out: memory per download stays
/// constant whatever the blob's size.
pub const READ_CHUNK: usize = 64 * 1024;
/// Objects the listing may run ahead of the collector.
const LIST_BUFFER: usize = 256;

/// The files store. Cheap to share: paths only.
#[derive(Debug, Clone)]
pub struct FileStore {
    uploads: PathBuf,
    complete: PathBuf,
}

impl FileStore {
    /// Uses (creating if needed) `root/uploads` and `root/complete`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let store = Self {
            uploads: root.join("uploads"),
            complete: root.join("complete"),
        };
        std::fs::create_dir_all(&store.uploads)?;
        std::fs::create_dir_all(&store.complete)?;
        Ok(store)
    }

    fn upload_path(&self, id: BlobId) -> PathBuf {
        self.uploads.join(id.to_string())
    }

    fn shard(&self, id: BlobId) -> PathBuf {
        self.complete.join(hex::encode(&id.as_bytes()[..1]))
    }

    fn complete_path(&self, id: BlobId) -> PathBuf {
        self.shard(id).join(id.to_string())
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Other(format!("file task failed: {e}")))?
}

/// Makes a directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// The blob id a file is named after; anything else in the directories
/// (an operator's file, an editor's backup) is left alone.
fn id_of(path: &Path) -> Option<BlobId> {
    BlobId::parse(path.file_name()?.to_str()?).ok()
}

impl BlobStore for FileStore {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn begin(&self, id: BlobId) -> BoxFuture<'_, Result<UploadHandle, StoreError>> {
        let path = self.upload_path(id);
        let dir = self.uploads.clone();
        Box::pin(blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            sync_dir(&dir)?;
            Ok(None)
        }))
    }

    fn put_part(
        &self,
        id: BlobId,
        _upload: UploadHandle,
        index: u32,
        data: Bytes,
    ) -> BoxFuture<'_, Result<PartTag, StoreError>> {
        let path = self.upload_path(id);
        let dir = self.uploads.clone();
        Box::pin(blocking(move || {
            // Never create a missing file for a later part: that would fill
            // the earlier parts with zeros. The first part may recreate it
            // (an entry lost before `begin` synced its directory).
            let file = match OpenOptions::new().write(true).open(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound && index == 0 => {
                    let file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)?;
                    sync_dir(&dir)?;
                    file
                }
                other => other?,
            };
            let offset = u64::from(index) * BLOB_PART_BYTES as u64;
            file.write_all_at(&data, offset)?;
            file.sync_data()?;
            Ok(PartTag::new())
        }))
    }

    fn complete(
        &self,
        id: BlobId,
        _upload: UploadHandle,
        size: u64,
        _parts: Vec<PartTag>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let from = self.upload_path(id);
        let shard = self.shard(id);
        let to = self.complete_path(id);
        let (uploads, complete) = (self.uploads.clone(), self.complete.clone());
        Box::pin(blocking(move || {
            let len = match std::fs::metadata(&from) {
                Ok(meta) => meta.len(),
                // Completed before (a retry after a crash or a failed
                // database update).
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return match std::fs::metadata(&to) {
                        Ok(meta) if meta.len() == size => Ok(()),
                        Ok(meta) => Err(StoreError::Other(format!(
                            "complete blob {id:?} has {} bytes, its row says {size}",
                            meta.len()
                        ))),
                        Err(e) => Err(e.into()),
                    };
                }
                Err(e) => return Err(e.into()),
            };
            if len != size {
                return Err(StoreError::Other(format!(
                    "upload {id:?} has {len} bytes, its row says {size}"
                )));
            }
            File::open(&from)?.sync_all()?;
            if !shard.is_dir() {
                std::fs::create_dir_all(&shard)?;
                sync_dir(&complete)?;
            }
            std::fs::rename(&from, &to)?;
            sync_dir(&shard)?;
            sync_dir(&uploads)?;
            Ok(())
        }))
    }

    fn abort(&self, id: BlobId, _upload: UploadHandle) -> BoxFuture<'_, Result<(), StoreError>> {
        let path = self.upload_path(id);
        Box::pin(blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }))
    }

    fn read(&self, id: BlobId, range: Range<u64>) -> BoxFuture<'_, Result<ByteStream, StoreError>> {
        let path = self.complete_path(id);
        Box::pin(async move {
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(std::io::SeekFrom::Start(range.start)).await?;
            let left = range.end.saturating_sub(range.start);
            let pieces = stream::try_unfold((file, left), |(mut file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let want = usize::try_from(left).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
                let mut buf = BytesMut::zeroed(want);
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the blob file is shorter than its row says",
                    ));
                }
                buf.truncate(n);
                Ok(Some((buf.freeze(), (file, left - n as u64))))
            });
            Ok(pieces.boxed())
        })
    }

    fn delete(&self, id: BlobId) -> BoxFuture<'_, Result<(), StoreError>> {
        let path = self.complete_path(id);
        Box::pin(blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }))
    }

    fn list(&self) -> BoxStream<'static, Result<StoredObject, StoreError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(LIST_BUFFER);
        let (uploads, complete) = (self.uploads.clone(), self.complete.clone());
        tokio::task::spawn_blocking(move || {
            let send = |item: Result<StoredObject, StoreError>| tx.blocking_send(item).is_ok();
            let mut dirs = vec![uploads];
            match std::fs::read_dir(&complete) {
                Ok(shards) => dirs.extend(shards.flatten().map(|e| e.path())),
                Err(e) => {
                    send(Err(e.into()));
                    return;
                }
            }
            for dir in dirs.into_iter().filter(|d| d.is_dir()) {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) => {
                        if !send(Err(e.into())) {
                            return;
                        }
                        continue;
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let (Some(id), Ok(meta)) = (id_of(&path), entry.metadata()) else {
                        continue;
                    };
                    let object = StoredObject {
                        id,
                        modified_ms: modified_ms(&meta),
                    };
                    if !send(Ok(object)) {
                        return;
                    }
                }
            }
        });
        stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt as _;

    fn id(n: u8) -> BlobId {
        BlobId::from_random([n; 32])
    }

    async fn read_all(store: &FileStore, id: BlobId, range: Range<u64>) -> Vec<u8> {
        let pieces: Vec<Bytes> = store
            .read(id, range)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(pieces.iter().all(|p| p.len() <= READ_CHUNK));
        pieces.concat()
    }

    #[tokio::test]
    async fn an_upload_becomes_visible_only_when_complete() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = FileStore::open(dir.path()).unwrap_or_else(|e| unreachable!("{e}"));
        let blob = id(1);
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        assert!(store.begin(blob).await.is_ok());
        assert!(matches!(
            store.read(blob, 0..1).await.err(),
            Some(StoreError::NotFound)
        ));
        assert!(
            store
                .put_part(blob, None, 0, Bytes::from(body.clone()))
                .await
                .is_ok()
        );
        // A wrong size is refused and changes nothing.
        assert!(store.complete(blob, None, 5, vec![]).await.is_err());
        assert!(store.complete(blob, None, 200_000, vec![]).await.is_ok());
        // Completing again (a retry) succeeds.
        assert!(store.complete(blob, None, 200_000, vec![]).await.is_ok());
        assert_eq!(read_all(&store, blob, 0..200_000).await, body);
        assert_eq!(
            read_all(&store, blob, 70_000..200_000).await,
            body[70_000..]
        );
        let listed: Vec<StoredObject> = store.list().try_collect().await.unwrap_or_default();
        assert_eq!(listed.iter().map(|o| o.id).collect::<Vec<_>>(), vec![blob]);
        assert!(store.delete(blob).await.is_ok());
        assert!(store.delete(blob).await.is_ok());
        assert!(store.abort(blob, None).await.is_ok());
        let listed: Vec<StoredObject> = store.list().try_collect().await.unwrap_or_default();
        assert!(listed.is_empty());
    }

    #[tokio::test]
    async fn a_later_part_never_recreates_a_missing_upload() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = FileStore::open(dir.path()).unwrap_or_else(|e| unreachable!("{e}"));
        let part = store
            .put_part(id(2), None, 1, Bytes::from_static(b"x"))
            .await;
        assert!(matches!(part, Err(StoreError::NotFound)));
        assert!(!store.upload_path(id(2)).exists());
    }
}
