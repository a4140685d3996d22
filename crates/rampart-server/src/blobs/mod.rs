//! Blobs: the encrypted files that messages share. The server stores them
//! as opaque bytes; names, types, keys and hashes travel inside the MLS
//! messages it cannot read.
//!
//! - [`store`]: the storage trait; [`files`] (under the data directory, the
//!   default) and [`s3`] (an S3-compatible object store) implement it.
//! - [`routes`]: create an upload, send it part by part (resumable at the
//!   offset the server confirmed), read its status, download (with
//!   `Range: bytes=N-` to resume), delete, and the file policy.
//! - [`gc`]: deletion when the message expires, and collection of blobs
//!   never sent and of stored objects without a row.
//!
//! Binding a blob to the message that shares it, and deleting it with a
//! recall, happen in the delivery actor (`delivery::actor`), in the same
//! transaction as the message.

pub mod files;
pub mod gc;
mod range;
pub mod routes;
pub mod s3;
pub mod store;

use crate::config::{FilesConfig, StoreKind};
use crate::error::ServerError;
use rampart_proto::BlobId;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::BlobStore;
use tokio::sync::Semaphore;

/// Parts written at once, server-wide: each holds up to `BLOB_PART_BYTES`
/// in memory, so this bounds upload memory whatever clients do.
const PART_WRITES: usize = 16;
/// Parts one account may be sending at once, so that one account cannot
/// take every slot of [`PART_WRITES`].
pub const PARTS_PER_ACCOUNT: usize = 4;
/// A part must arrive within this (about 28 KB/s for a full part), so a
/// stalled client does not keep its slot.
pub const PART_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Uploads one account may have unfinished at once.
pub const MAX_UNFINISHED_UPLOADS: i64 = 16;

/// What the blob routes, the actor and the collectors share.
pub struct Blobs {
    pub store: Arc<dyn BlobStore>,
    pub max_file_bytes: u64,
    pub quota_bytes: u64,
    pub orphan_grace_ms: i64,
    /// Bounds the parts held in memory (see [`PART_WRITES`]).
    pub writes: Semaphore,
    /// Blobs with a part being written or an upload being completed: a
    /// second request for the same blob waits for none of it and is told
    /// to retry, so two writers never race on one upload.
    busy: Mutex<HashSet<BlobId>>,
    /// Parts being sent per account (see [`PARTS_PER_ACCOUNT`]).
    senders: Mutex<HashMap<i64, usize>>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("store", &self.store.kind())
            .field("max_file_bytes", &self.max_file_bytes)
            .field("quota_bytes", &self.quota_bytes)
            .finish_non_exhaustive()
    }
}

/// Marks a blob busy until dropped.
pub struct BusyGuard<'a> {
    blobs: &'a Blobs,
    id: BlobId,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.blobs.busy_set().remove(&self.id);
    }
}

/// Counts one part being sent by an account until dropped.
pub struct SenderGuard<'a> {
    blobs: &'a Blobs,
    user: i64,
}

impl Drop for SenderGuard<'_> {
    fn drop(&mut self) {
        let mut senders = self.blobs.sender_counts();
        if let Some(n) = senders.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                senders.remove(&self.user);
            }
        }
    }
}

impl Blobs {
    /// Opens the configured store: creates `data_dir/blobs/...` for files,
    /// or builds the S3 client and checks it can list the bucket.
    pub async fn open(config: &FilesConfig, data_dir: &Path) -> Result<Self, ServerError> {
        let store: Arc<dyn BlobStore> = match (config.store, &config.s3) {
            (StoreKind::S3, Some(s3)) => {
                let store =
                    s3::S3Store::new(s3).map_err(|e| ServerError::BlobStore(format!("S3: {e}")))?;
                store.check().await.map_err(|e| {
                    ServerError::BlobStore(format!(
                        "S3: {e}. Check [files.s3] (bucket, endpoint, region, credentials)"
                    ))
                })?;
                Arc::new(store)
            }
            _ => {
                let root = data_dir.join("blobs");
                let store =
                    files::FileStore::open(&root).map_err(|source| ServerError::DataDir {
                        path: root.clone(),
                        source,
                    })?;
                Arc::new(store)
            }
        };
        Ok(Self::with_store(store, config))
    }

    /// The limits of `config` over this store.
    pub fn with_store(store: Arc<dyn BlobStore>, config: &FilesConfig) -> Self {
        Self {
            store,
            max_file_bytes: config.max_file_bytes,
            quota_bytes: config.quota_bytes,
            orphan_grace_ms: i64::try_from(config.orphan_grace_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            writes: Semaphore::new(PART_WRITES),
            busy: Mutex::new(HashSet::new()),
            senders: Mutex::new(HashMap::new()),
        }
    }

    fn busy_set(&self) -> std::sync::MutexGuard<'_, HashSet<BlobId>> {
        // Nothing panics while holding it; a poisoned set is still valid.
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sender_counts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a part the account is sending, or `None` if it already sends
    /// [`PARTS_PER_ACCOUNT`].
    pub fn try_sender(&self, user: i64) -> Option<SenderGuard<'_>> {
        let admitted = {
            let mut senders = self.sender_counts();
            let n = senders.entry(user).or_insert(0);
            let free = *n < PARTS_PER_ACCOUNT;
            if free {
                *n += 1;
            }
            free
        };
        admitted.then(|| SenderGuard { blobs: self, user })
    }

    /// Marks `id` busy, or `None` if another request already does.
    pub fn try_busy(&self, id: BlobId) -> Option<BusyGuard<'_>> {
        // The lock is released before a guard exists (its drop takes the
        // lock), and a guard is made only when the id was free: `then_some`
        // would build one either way and drop it under the lock.
        let inserted = self.busy_set().insert(id);
        inserted.then(|| BusyGuard { blobs: self, id })
    }
}

/// Sizes as people read them: "1 GiB", "1.5 GiB", "640 KiB", "12 bytes".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            // Tenths, rounded down, so a limit is never overstated.
            let tenths = u128::from(n) * 10 / u128::from(size);
            return if tenths % 10 == 0 {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1), "1 byte");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(640 * 1024), "640 KiB");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes((1 << 30) - 1), "1023.9 MiB");
        assert_eq!(human_bytes(5 << 40), "5 TiB");
        assert_eq!(human_bytes(u64::MAX), "16777215.9 TiB");
    }

    #[test]
    fn busy_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(files::FileStore::open(dir.path()).unwrap());
        let blobs = Blobs::with_store(store, &FilesConfig::default());
        let id = BlobId::from_random([1; 32]);
        let guard = blobs.try_busy(id);
        assert!(guard.is_some());
        assert!(blobs.try_busy(id).is_none());
        assert!(blobs.try_busy(BlobId::from_random([2; 32])).is_some());
        drop(guard);
        assert!(blobs.try_busy(id).is_some());

        let senders: Vec<_> = (0..PARTS_PER_ACCOUNT)
            .map(|_| blobs.try_sender(7))
            .collect();
        assert!(senders.iter().all(Option::is_some));
        assert!(blobs.try_sender(7).is_none());
        assert!(blobs.try_sender(8).is_some());
        drop(senders);
        assert!(blobs.try_sender(7).is_some());
        assert!(blobs.sender_counts().is_empty());
    }
}
