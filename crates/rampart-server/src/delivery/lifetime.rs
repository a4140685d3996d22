//! Message lifetime on the server: the organisation's retention rules for
//! sends, the purge of expired ciphertext, and the WAL checkpoint that makes
//! deletion real on disk.
//!
//! Every connection runs with `PRAGMA secure_delete = ON` (see `db::open`),
//! so SQLite overwrites deleted rows with zeros. In WAL mode the older page
//! images still sit in the `-wal` file until a checkpoint copies the new
//! pages back and the log is truncated; so every purge or recall that
//! deleted rows is followed by `PRAGMA wal_checkpoint(TRUNCATE)`.
//!
//! What this cannot reach: copies already delivered to devices (the official
//! clients delete those; a modified client may keep them), database backups
//! and filesystem snapshots taken before the purge, and the free blocks of a
//! file system or SSD that remap writes.
//!
//! The [`Purger`] also deletes the blobs of expired messages, and collects
//! blobs that were never sent (see `blobs::gc`).

use crate::blobs::{Blobs, gc};
use crate::clock::Clock;
use crate::config::MessagesConfig;
use crate::error::ServerError;
use rampart_proto::ErrorCode;
use rampart_proto::IdempotencyKey;
use rampart_proto::frame::DeliveryKind;
use rampart_proto::limits::{MAX_TIMER_SECS, MIN_TIMER_SECS};
use sqlx::SqlitePool;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Expired messages deleted per transaction, so a large purge never holds
/// the write lock (and the delivery actor) for long.
const PURGE_CHUNK: i64 = 5000;

/// A send refused by the lifetime rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeRefusal {
    pub code: ErrorCode,
    pub message: String,
}

/// The lifetime rules a send must meet, checked without touching the
/// database. Returns the expiry in seconds the message is stored with.
///
/// - Proposals carry neither an expiry nor a recall.
/// - An expiry is at least [`MIN_TIMER_SECS`], and at most the
///   organisation's maximum retention when it sets one, else at most
///   [`MAX_TIMER_SECS`].
/// - With a maximum retention, application messages must carry an expiry.
pub fn check_send(
    config: &MessagesConfig,
    kind: DeliveryKind,
    expires_in: Option<u32>,
    recalls: Option<IdempotencyKey>,
) -> Result<Option<u32>, LifetimeRefusal> {
    let refuse = |code, message: String| Err(LifetimeRefusal { code, message });
    if kind != DeliveryKind::Application {
        if expires_in.is_some() || recalls.is_some() {
            return refuse(
                ErrorCode::BadRequest,
                "proposals carry neither an expiry nor a recall".into(),
            );
        }
        return Ok(None);
    }
    if let Some(secs) = expires_in
        && secs < MIN_TIMER_SECS
    {
        return refuse(
            ErrorCode::BadRequest,
            format!(
                "a message expires at the earliest {} after sending",
                human_duration(MIN_TIMER_SECS)
            ),
        );
    }
    match (config.max_retention_secs, expires_in) {
        (Some(max), None) => refuse(ErrorCode::RetentionExceeded, retention_message(max)),
        (Some(max), Some(secs)) if secs > max => {
            refuse(ErrorCode::RetentionExceeded, retention_message(max))
        }
        (None, Some(secs)) if secs > MAX_TIMER_SECS => refuse(
            ErrorCode::BadRequest,
            format!(
                "a disappearing-messages timer is at most {}",
                human_duration(MAX_TIMER_SECS)
            ),
        ),
        _ => Ok(expires_in),
    }
}

fn retention_message(max: u32) -> String {
    format!(
        "this organisation keeps messages at most {}: set a disappearing-messages timer of at most {}",
        human_duration(max),
        short_duration(max)
    )
}

/// Why a recall is refused once the window has passed.
pub fn window_closed_message(window_secs: u32) -> String {
    format!(
        "messages can be recalled for {} after sending",
        human_duration(window_secs)
    )
}

/// `expires_in` seconds after `now_ms`, never overflowing.
pub fn expires_at(now_ms: i64, expires_in: u32) -> i64 {
    now_ms.saturating_add(i64::from(expires_in).saturating_mul(1000))
}

/// The largest whole unit: "7 days", "24 hours", "1 minute", "90 seconds".
pub fn human_duration(secs: u32) -> String {
    let (n, unit) = unit_of(secs);
    let name = match unit {
        'd' => "day",
        'h' => "hour",
        'm' => "minute",
        _ => "second",
    };
    if n == 1 {
        format!("1 {name}")
    } else {
        format!("{n} {name}s")
    }
}

/// As a timer is typed: "7d", "24h", "30m", "90s".
pub fn short_duration(secs: u32) -> String {
    let (n, unit) = unit_of(secs);
    format!("{n}{unit}")
}

fn unit_of(secs: u32) -> (u32, char) {
    // One day is said as 24 hours, the way recall windows are quoted; two
    // or more whole days in days.
    if secs >= 2 * 86_400 && secs.is_multiple_of(86_400) {
        (secs / 86_400, 'd')
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, 'h')
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, 'm')
    } else {
        (secs, 's')
    }
}

/// Deletes every message whose `expires_at <= now_ms`, with its queue rows,
/// then checkpoints the WAL if anything was deleted. Returns the number of
/// messages deleted. Each chunk is one transaction, so a message and its
/// queue rows go together.
///
/// Queue sequence numbers never go backwards: each affected device's
/// `acked_seq` (the floor its counter restarts from) is raised past the
/// rows deleted, so a restart never hands a number out twice.
pub async fn purge_expired(pool: &SqlitePool, now_ms: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE devices SET acked_seq = MAX(acked_seq, x.s) FROM \
             (SELECT q.device_id AS d, MAX(q.seq) AS s FROM queue q WHERE q.message_id IN \
              (SELECT id FROM messages WHERE expires_at <= ?1 ORDER BY id LIMIT ?2) \
              GROUP BY q.device_id) AS x \
             WHERE devices.id = x.d",
        )
        .bind(now_ms)
        .bind(PURGE_CHUNK)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM queue WHERE message_id IN \
             (SELECT id FROM messages WHERE expires_at <= ?1 ORDER BY id LIMIT ?2)",
        )
        .bind(now_ms)
        .bind(PURGE_CHUNK)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM messages WHERE id IN \
             (SELECT id FROM messages WHERE expires_at <= ?1 ORDER BY id LIMIT ?2)",
        )
        .bind(now_ms)
        .bind(PURGE_CHUNK)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        total += deleted;
        if deleted < PURGE_CHUNK as u64 {
            break;
        }
    }
    if total > 0 {
        tracing::debug!(messages = total, "purged expired messages");
        checkpoint(pool).await;
    }
    Ok(total)
}

/// Copies the WAL into the database file and truncates it, so page images
/// of deleted rows do not linger in `-wal`. A checkpoint that cannot finish
/// because readers are busy is only logged: the next one catches up.
pub async fn checkpoint(pool: &SqlitePool) {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await
    {
        Ok((0, _, _)) => tracing::debug!("WAL checkpointed and truncated"),
        Ok((_, log, done)) => {
            tracing::debug!(log, done, "WAL checkpoint busy; the next one catches up");
        }
        Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed"),
    }
}

/// Purges expired messages and their blobs on demand (tests, operators) and
/// on the server's own schedule. Cheap to clone; clones share one lock, so
/// two purges (or a purge and a checkpoint after a recall) never overlap
/// and a purge returns only once its checkpoint is done.
///
/// Get one from `Server::purger` before serving.
#[derive(Clone)]
pub struct Purger {
    pool: SqlitePool,
    clock: Clock,
    blobs: Arc<Blobs>,
    lock: Arc<Mutex<()>>,
    /// Orphan collections never overlap either (they list the whole store),
    /// but they do not hold up purges.
    collecting: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Purger {
    pub(crate) fn new(pool: SqlitePool, clock: Clock, blobs: Arc<Blobs>) -> Self {
        Self {
            pool,
            clock,
            blobs,
            lock: Arc::new(Mutex::new(())),
            collecting: Arc::new(Mutex::new(())),
        }
    }

    /// Deletes every message and blob that has expired by the server's
    /// clock now, and checkpoints the WAL if any message was; then collects
    /// orphaned blobs (never sent within the grace period, or stored without
    /// a row), which the server otherwise does hourly. Returns how many
    /// messages were deleted.
    pub async fn purge_now(&self) -> Result<u64, ServerError> {
        let messages = self.purge_scheduled().await?;
        self.collect_orphans().await?;
        Ok(messages)
    }

    /// What runs every few seconds: expired messages, then expired blobs.
    pub(crate) async fn purge_scheduled(&self) -> Result<u64, ServerError> {
        let _one_at_a_time = self.lock.lock().await;
        let now = self.clock.now_db();
        let messages = purge_expired(&self.pool, now).await?;
        gc::purge_expired(&self.pool, &self.blobs, now).await?;
        Ok(messages)
    }

    /// What runs hourly: blobs never sent, and stored objects without a row.
    pub(crate) async fn collect_orphans(&self) -> Result<(), ServerError> {
        let _one_at_a_time = self.collecting.lock().await;
        gc::collect_orphans(&self.pool, &self.blobs, self.clock.now_db()).await?;
        Ok(())
    }

    /// A checkpoint after rows were deleted some other way (a recall).
    pub(crate) async fn checkpoint(&self) {
        let _one_at_a_time = self.lock.lock().await;
        checkpoint(&self.pool).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: Option<u32>) -> MessagesConfig {
        MessagesConfig {
            max_retention_secs: max,
            ..MessagesConfig::default()
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(7 * 86_400), "7 days");
        assert_eq!(short_duration(7 * 86_400), "7d");
        assert_eq!(human_duration(86_400), "24 hours");
        assert_eq!(short_duration(86_400), "24h");
        assert_eq!(human_duration(3600), "1 hour");
        assert_eq!(human_duration(60), "1 minute");
        assert_eq!(human_duration(90), "90 seconds");
        assert_eq!(short_duration(30), "30s");
        assert_eq!(
            window_closed_message(86_400),
            "messages can be recalled for 24 hours after sending"
        );
    }

    #[test]
    fn retention_rules() {
        let app = DeliveryKind::Application;
        let week = 7 * 86_400;
        assert_eq!(check_send(&config(None), app, None, None), Ok(None));
        assert_eq!(check_send(&config(None), app, Some(30), None), Ok(Some(30)));
        let short = check_send(&config(None), app, Some(29), None);
        assert_eq!(short.map_err(|r| r.code), Err(ErrorCode::BadRequest));
        let long = check_send(&config(None), app, Some(MAX_TIMER_SECS + 1), None);
        assert_eq!(long.map_err(|r| r.code), Err(ErrorCode::BadRequest));

        let org = config(Some(week));
        let missing = check_send(&org, app, None, None).err();
        assert_eq!(
            missing,
            Some(LifetimeRefusal {
                code: ErrorCode::RetentionExceeded,
                message: "this organisation keeps messages at most 7 days: \
                          set a disappearing-messages timer of at most 7d"
                    .into()
            })
        );
        let over = check_send(&org, app, Some(week + 1), None);
        assert_eq!(over.map_err(|r| r.code), Err(ErrorCode::RetentionExceeded));
        assert_eq!(check_send(&org, app, Some(week), None), Ok(Some(week)));
        // An organisation may keep longer than a user's longest timer.
        let long_org = config(Some(90 * 86_400));
        let ninety = Some(90 * 86_400);
        assert_eq!(check_send(&long_org, app, ninety, None), Ok(ninety));

        let proposal = DeliveryKind::Proposal;
        assert_eq!(check_send(&org, proposal, None, None), Ok(None));
        let timed = check_send(&org, proposal, Some(60), None);
        assert_eq!(timed.map_err(|r| r.code), Err(ErrorCode::BadRequest));
        let recall = check_send(&org, proposal, None, Some(IdempotencyKey([1; 16])));
        assert_eq!(recall.map_err(|r| r.code), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expires_at(1_000, 30), 31_000);
        assert_eq!(expires_at(i64::MAX - 5, u32::MAX), i64::MAX);
    }
}
