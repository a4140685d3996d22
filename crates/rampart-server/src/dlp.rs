//! Data-loss prevention, the server's part: it keeps the organisation's
//! policy, hands it to clients, tells connected devices when it changes, and
//! records the events clients report.
//!
//! The scanning itself happens in the sending client, before encryption; the
//! server never sees the text it is about. The policy document is opaque
//! here: the server checks only that it is a JSON object within
//! [`MAX_POLICY_DOCUMENT_BYTES`], and `rampart admin policy set` validates
//! it (with `rampart-policy`) before storing it, so the server does not
//! depend on the detectors.
//!
//! The admin command writes to the database of a possibly running server
//! from another process. A running server therefore polls the stored
//! revision (one one-row query per [`POLICY_POLL_INTERVAL`]) and publishes
//! it on a `watch` channel; every WebSocket task selects on that channel and
//! sends [`ServerFrame::PolicyChanged`]. A `watch` keeps only the latest
//! revision and never makes the publisher wait, so a slow or dead socket
//! holds up nothing but its own task, and a client that was slow to read
//! gets one frame, not one per change. A policy set through a
//! [`PolicyHandle`] of the running server is published at once.
//!
//! An event carries a rule id, an action, a conversation id and the client's
//! time; the server stores those four (with who reported it and when) and
//! drops anything else a client puts in the body. It logs the rule id and
//! action only.
//!
//! [`ServerFrame::PolicyChanged`]: rampart_proto::frame::ServerFrame::PolicyChanged

use crate::audit;
use crate::auth::AuthDevice;
use crate::clock::Clock;
use crate::db::{self, device_from_db, device_to_db, u64_from_db, u64_to_db};
use crate::error::{ApiError, ApiJson, ServerError};
use crate::ratelimit::Action;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_proto::api::{DlpEventBatch, OrgPolicy};
use rampart_proto::audit::Outcome;
use rampart_proto::limits::{MAX_DLP_EVENTS_PER_BATCH, MAX_POLICY_DOCUMENT_BYTES};
use rampart_proto::{DeviceId, GroupId, Millis, Username};
use serde::Serialize;
use sqlx::{Row as _, SqlitePool};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// How often a running server reads the stored policy revision, to notice a
/// policy set by `rampart admin policy set` from another process.
pub const POLICY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a policy document was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyDocumentError {
    /// Larger than [`MAX_POLICY_DOCUMENT_BYTES`].
    #[error("the policy document is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    /// Not JSON, or JSON but not an object (the admin command stores
    /// `Policy::to_json`, which always is one).
    #[error("the policy document is not a JSON object")]
    NotAnObject,
    /// The data directory or database failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<sqlx::Error> for PolicyDocumentError {
    fn from(e: sqlx::Error) -> Self {
        Self::Server(ServerError::Database(e))
    }
}

/// One reported event, as `rampart admin dlp-events` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DlpEventRecord {
    /// Increases with every stored event.
    pub id: i64,
    /// When the server stored it (server clock).
    pub received_at: Millis,
    pub username: Username,
    pub device_id: DeviceId,
    pub group_id: GroupId,
    pub rule: String,
    pub action: String,
    /// When the rule fired, by the reporting device's clock.
    pub client_at: Millis,
}

/// The cheap checks the server can make on an opaque document.
fn check_document(document: &str) -> Result<(), PolicyDocumentError> {
    if document.len() > MAX_POLICY_DOCUMENT_BYTES {
        return Err(PolicyDocumentError::TooLarge {
            size: document.len(),
            max: MAX_POLICY_DOCUMENT_BYTES,
        });
    }
    // Parsed only to check its shape: clients parse it for real, and must
    // never be handed something that is not even JSON.
    match serde_json::from_str::<serde_json::Value>(document) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(PolicyDocumentError::NotAnObject),
    }
}

/// Stores `document` as the next revision and returns it. One statement,
/// so concurrent writers (two admin commands, or one and the server) each
/// get their own revision and the last one written wins.
async fn store(pool: &SqlitePool, document: &str, now: i64) -> Result<u64, PolicyDocumentError> {
    check_document(document)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let revision: i64 = sqlx::query_scalar(
        "INSERT INTO org_policy (id, revision, document, updated_at) VALUES (1, 1, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET revision = revision + 1, \
         document = excluded.document, updated_at = excluded.updated_at \
         RETURNING revision",
    )
    .bind(document)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    // Whoever holds the data directory sets the policy: the operator. The
    // document's hash identifies which one, without copying it.
    let entry = audit::Entry::new(
        "dlp_policy_changed",
        audit::Actor::Operator,
        Outcome::Success,
    )
    .target(audit::Target::Text("policy:dlp".into()))
    .detail("revision", revision)
    .detail(
        "document_sha256",
        hex::encode(db::sha256(document.as_bytes())),
    );
    audit::append(&mut *tx, now, &entry).await?;
    tx.commit().await?;
    Ok(u64_from_db(revision))
}

async fn load(pool: &SqlitePool) -> Result<OrgPolicy, sqlx::Error> {
    let row = sqlx::query("SELECT revision, document, updated_at FROM org_policy WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        None => OrgPolicy {
            revision: 0,
            document: None,
            updated_at: None,
        },
        Some(row) => OrgPolicy {
            revision: u64_from_db(row.try_get("revision")?),
            document: Some(row.try_get("document")?),
            updated_at: Some(u64_from_db(row.try_get("updated_at")?)),
        },
    })
}

/// The stored revision (0: none), without reading the document.
pub(crate) async fn current_revision(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let revision: Option<i64> = sqlx::query_scalar("SELECT revision FROM org_policy WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    Ok(revision.map_or(0, u64_from_db))
}

/// Opens the data dir's database (the server may be running or stopped) and
/// stores `document` as the organisation's DLP policy; returns its revision
/// (the previous one plus one). A running server tells its connected
/// devices within [`POLICY_POLL_INTERVAL`].
///
/// The document must already be valid: this checks only its size and that
/// it is a JSON object (`rampart admin policy set` validates it first).
pub async fn set_policy(data_dir: &Path, document: &str) -> Result<u64, PolicyDocumentError> {
    check_document(document)?;
    let pool = db::open(data_dir).await?;
    let stored = store(&pool, document, db::now_ms()).await;
    pool.close().await;
    stored
}

/// Opens the data dir's database and reads the stored policy (revision 0
/// and no document if none was ever set).
pub async fn policy(data_dir: &Path) -> Result<OrgPolicy, ServerError> {
    let pool = db::open(data_dir).await?;
    let policy = load(&pool).await;
    pool.close().await;
    Ok(policy?)
}

/// Opens the data dir's database and lists the `limit` most recently
/// reported events, newest first.
pub async fn events(data_dir: &Path, limit: u32) -> Result<Vec<DlpEventRecord>, ServerError> {
    let pool = db::open(data_dir).await?;
    let events = list_events(&pool, limit).await;
    pool.close().await;
    Ok(events?)
}

async fn list_events(pool: &SqlitePool, limit: u32) -> Result<Vec<DlpEventRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.received_at, u.username, e.device_id, e.group_id, e.rule, e.action, \
         e.client_at FROM dlp_events e JOIN users u ON u.id = e.user_id \
         ORDER BY e.id DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let decoded = (
            Username::parse(row.try_get::<&str, _>("username")?).ok(),
            device_from_db(row.try_get("device_id")?),
            GroupId::from_slice(row.try_get::<&[u8], _>("group_id")?).ok(),
        );
        let (Some(username), Some(device_id), Some(group_id)) = decoded else {
            tracing::warn!(id, "skipping a corrupt DLP event row");
            continue;
        };
        events.push(DlpEventRecord {
            id,
            received_at: u64_from_db(row.try_get("received_at")?),
            username,
            device_id,
            group_id,
            rule: row.try_get("rule")?,
            action: row.try_get("action")?,
            client_at: u64_from_db(row.try_get("client_at")?),
        });
    }
    Ok(events)
}

/// Sets the DLP policy of a running server and tells its connected devices
/// at once (without waiting for the next poll). Cheap to clone; take it
/// with [`crate::Server::policy_handle`] before serving.
#[derive(Clone)]
pub struct PolicyHandle {
    pool: SqlitePool,
    clock: Clock,
    revision: watch::Sender<u64>,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("revision", &*self.revision.borrow())
            .finish_non_exhaustive()
    }
}

impl PolicyHandle {
    /// Starts at the revision stored now.
    pub(crate) async fn new(pool: SqlitePool, clock: Clock) -> Result<Self, sqlx::Error> {
        let (revision, _) = watch::channel(current_revision(&pool).await?);
        Ok(Self {
            pool,
            clock,
            revision,
        })
    }

    /// What WebSocket tasks watch: the latest published revision.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Stores `document` as the next revision (see [`set_policy`]) and
    /// publishes it; returns the revision.
    pub async fn set(&self, document: &str) -> Result<u64, PolicyDocumentError> {
        let revision = store(&self.pool, document, self.clock.now_db()).await?;
        self.publish(revision);
        Ok(revision)
    }

    /// The stored policy.
    pub async fn get(&self) -> Result<OrgPolicy, ServerError> {
        Ok(load(&self.pool).await?)
    }

    /// Wakes the WebSocket tasks if `revision` is newer than the last one
    /// published; never waits for them.
    fn publish(&self, revision: u64) {
        self.revision.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// Publishes the stored revision every `every` until `shutdown` flips.
    /// A failed read is logged once until reads succeed again.
    pub(crate) async fn poll(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => match current_revision(&self.pool).await {
                    Ok(revision) => {
                        failing = false;
                        self.publish(revision);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "reading the DLP policy revision failed");
                        }
                        failing = true;
                    }
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// `GET /v1/policy/dlp`: any signed-in device (401 without a session).
pub async fn get_policy(
    State(state): State<AppState>,
    _auth: AuthDevice,
) -> Result<ApiJson<OrgPolicy>, ApiError> {
    Ok(ApiJson(load(&state.pool).await?))
}

/// `POST /v1/dlp/events`: stores a batch of events from the calling device,
/// all or none, after checking every field. Throttled per device.
pub async fn report(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(batch): ApiJson<DlpEventBatch>,
) -> Result<StatusCode, ApiError> {
    state
        .limiter
        .admit(
            Action::DlpReport,
            &auth.device_id.to_string(),
            state.clock.now_ms(),
        )
        .map_err(|secs| {
            ApiError::slow_down(
                secs,
                format!("too many DLP reports from this device; retry in {secs} s"),
            )
        })?;
    if batch.events.len() > MAX_DLP_EVENTS_PER_BATCH {
        return Err(ApiError::bad_request(format!(
            "{} events in one batch; at most {MAX_DLP_EVENTS_PER_BATCH} are allowed",
            batch.events.len()
        )));
    }
    for (i, event) in batch.events.iter().enumerate() {
        // The message names the position, never the refused value: a
        // broken client might have put content there.
        event
            .validate()
            .map_err(|e| ApiError::bad_request(format!("event {i}: {e}")))?;
    }
    if batch.events.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let now = state.now();
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    for event in &batch.events {
        sqlx::query(
            "INSERT INTO dlp_events \
             (received_at, user_id, device_id, group_id, rule, action, client_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now)
        .bind(auth.user_id)
        .bind(device_to_db(auth.device_id))
        .bind(event.group_id.as_bytes().as_slice())
        .bind(&event.rule)
        .bind(&event.action)
        .bind(u64_to_db(event.at))
        .execute(&mut *tx)
        .await?;
        let entry = audit::Entry::new(
            format!("dlp_{}", event.action),
            audit::Actor::User(auth.user_id),
            Outcome::Success,
        )
        .device(Some(auth.device_id))
        .target(audit::Target::Group(event.group_id))
        .detail("rule", &event.rule);
        audit::append(&mut *tx, now, &entry).await?;
    }
    tx.commit().await?;
    for event in &batch.events {
        // Both were checked against their fixed alphabets above.
        tracing::info!(rule = %event.rule, action = %event.action, "DLP event reported");
        state.metrics.dlp_event(&event.action);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_must_be_json_objects_within_the_limit() {
        assert!(check_document(r#"{"version":1}"#).is_ok());
        for bad in ["", "[]", "1", "\"x\"", "{", "version = 1"] {
            assert!(
                matches!(check_document(bad), Err(PolicyDocumentError::NotAnObject)),
                "{bad:?}"
            );
        }
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_POLICY_DOCUMENT_BYTES));
        assert!(matches!(
            check_document(&big),
            Err(PolicyDocumentError::TooLarge { .. })
        ));
    }
}
