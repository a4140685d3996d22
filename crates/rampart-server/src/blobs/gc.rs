//! Deleting blobs nobody may read any more:
//!
//! - [`purge_expired`]: the message that shares the blob expired;
//! - [`collect_orphans`]: never sent within the grace period after its
//!   upload started (complete or not), or an unfinished upload of a revoked
//!   device; then stored objects that have no row at all, left by a crash
//!   between deleting a row and its object.
//!
//! Always the row first (in a transaction), then the object: a crash in
//! between leaves an object without a row, which the next collection
//! removes; never a row whose object is gone.
//!
//! The delivery [`Purger`](crate::Purger) runs the expiry purge every few
//! seconds and the collection hourly; `Purger::purge_now` runs both.

use super::Blobs;
use super::store::discard;
use futures_util::StreamExt as _;
use rampart_proto::BlobId;
use sqlx::{QueryBuilder, Row as _, Sqlite, SqlitePool};
use std::collections::HashSet;

/// Rows deleted per transaction, so a large purge never holds the write
/// lock (and the delivery actor) for long.
const CHUNK: i64 = 500;
/// Store deletions in flight at once.
const CONCURRENT_DELETES: usize = 8;
/// Listed objects looked up in the database per query.
const LOOKUP_BATCH: usize = 256;

/// Runs `delete` (`DELETE FROM blobs ... RETURNING id, upload, complete`,
/// binding a time as `?1` and a limit as `?2`) until it deletes fewer than
/// a chunk, one transaction per chunk, deleting each chunk's objects after
/// its commit. Returns how many.
async fn delete_rows(
    pool: &SqlitePool,
    blobs: &Blobs,
    delete: &'static str,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(delete)
            .bind(cutoff)
            .bind(CHUNK)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut doomed = Vec::with_capacity(rows.len());
        for row in &rows {
            let Ok(id) = BlobId::from_slice(row.try_get::<&[u8], _>("id")?) else {
                continue;
            };
            let upload: Option<String> = row.try_get("upload")?;
            doomed.push((id, upload, row.try_get::<i64, _>("complete")? != 0));
        }
        futures_util::stream::iter(doomed)
            .for_each_concurrent(CONCURRENT_DELETES, |(id, upload, complete)| async move {
                discard(blobs.store.as_ref(), id, upload, complete).await;
            })
            .await;
        total += rows.len() as u64;
        if (rows.len() as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// Deletes every blob whose message has expired by `now_ms`. Returns how many.
pub async fn purge_expired(
    pool: &SqlitePool,
    blobs: &Blobs,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let n = delete_rows(
        pool,
        blobs,
        "DELETE FROM blobs WHERE id IN \
         (SELECT id FROM blobs WHERE expires_at <= ?1 LIMIT ?2) \
         RETURNING id, upload, complete",
        now_ms,
    )
    .await?;
    if n > 0 {
        tracing::debug!(blobs = n, "purged blobs of expired messages");
    }
    Ok(n)
}

/// Deletes blobs never sent whose upload started before the grace period,
/// unfinished uploads of revoked devices, and objects without a row older
/// than the grace period. Returns how many of each.
pub async fn collect_orphans(
    pool: &SqlitePool,
    blobs: &Blobs,
    now_ms: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let cutoff = now_ms.saturating_sub(blobs.orphan_grace_ms);
    let rows = delete_rows(
        pool,
        blobs,
        "DELETE FROM blobs WHERE id IN \
         (SELECT id FROM blobs WHERE message_key IS NULL AND (created_at <= ?1 \
          OR (complete = 0 AND uploader_device IN (SELECT id FROM devices WHERE revoked = 1))) \
          LIMIT ?2) \
         RETURNING id, upload, complete",
        cutoff,
    )
    .await?;
    let objects = collect_unknown_objects(pool, blobs, cutoff).await?;
    if rows > 0 || objects > 0 {
        tracing::info!(
            unsent = rows,
            without_row = objects,
            "collected orphaned blobs"
        );
    }
    Ok((rows, objects))
}

/// Deletes stored objects last written before `cutoff` that have no row.
async fn collect_unknown_objects(
    pool: &SqlitePool,
    blobs: &Blobs,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let mut listing = blobs.store.list();
    let mut batch = Vec::with_capacity(LOOKUP_BATCH);
    let mut deleted = 0;
    while let Some(item) = listing.next().await {
        match item {
            Ok(object) if object.modified_ms <= cutoff => batch.push(object.id),
            Ok(_) => {}
            Err(e) => {
                // The next collection lists again.
                tracing::warn!(error = %e, "listing the blob store failed");
                break;
            }
        }
        if batch.len() == LOOKUP_BATCH {
            deleted += delete_unknown(pool, blobs, &mut batch).await?;
        }
    }
    deleted += delete_unknown(pool, blobs, &mut batch).await?;
    Ok(deleted)
}

/// Deletes the objects of `ids` that have no row, emptying `ids`.
async fn delete_unknown(
    pool: &SqlitePool,
    blobs: &Blobs,
    ids: &mut Vec<BlobId>,
) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut q = QueryBuilder::<Sqlite>::new("SELECT id FROM blobs WHERE id IN (");
    let mut list = q.separated(", ");
    for id in ids.iter() {
        list.push_bind(id.as_bytes().to_vec());
    }
    q.push(")");
    let known: HashSet<Vec<u8>> = q
        .build_query_scalar::<Vec<u8>>()
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let unknown: Vec<BlobId> = ids
        .drain(..)
        .filter(|id| !known.contains(id.as_bytes().as_slice()))
        .collect();
    let n = unknown.len() as u64;
    futures_util::stream::iter(unknown)
        .for_each_concurrent(CONCURRENT_DELETES, |id| async move {
            discard(blobs.store.as_ref(), id, None, false).await;
        })
        .await;
    Ok(n)
}
