//! The audit log: every security-relevant event, append-only, hash-chained
//! and signed, so that the organisation can prove later what happened —
//! without a single message in it.
//!
//! **Appending.** The action that is audited inserts its entry in its own
//! transaction ([`append`]), so an entry exists exactly when the action
//! committed. The entry is stored without its hashes: SQLite lets one
//! writer in at a time, so ids grow in commit order, and the [`Audit`]
//! sealer fills in `prev_hash` and `hash` in id order, within a second, in
//! one transaction per batch. Appending therefore costs one row and never
//! waits on a lock of its own.
//!
//! **Signing.** At intervals, on shutdown and before pruning, the server
//! signs the chain's head with its audit key (Ed25519, derived from
//! `server.key`; [`Audit::public_key`]). Operators should write the public
//! key down: [`verify`] trusts whichever key it is given.
//!
//! **Alerts.** Sealing sees every entry once, in order; it feeds them to
//! the configured alert rules ([`alerts`]), which append `alert_fired`
//! entries and call the webhook. The webhook also receives every
//! checkpoint: a copy of each signed head outside the server.
//!
//! **Retention.** Pruning deletes entries older than the retention period
//! after signing a checkpoint of the last one deleted: the first kept entry
//! links to that checkpoint, so the kept part still verifies.
//!
//! Never stored: message content, passwords, codes, tokens, secrets. An
//! entry names an actor, a device, an address, an action, a target, an
//! outcome and short named values (a role, a rule id, a count).

pub mod alerts;
pub mod cost;
pub(crate) mod routes;
pub mod verify;

use crate::clock::Clock;
use crate::db::{device_from_db, device_to_db, u64_from_db, u64_to_db};
use ed25519_dalek::{Signer as _, SigningKey};
use rampart_proto::audit::{
    ACTOR_OPERATOR, ACTOR_SERVER, AuditCheckpoint, AuditEntry, AuditPage, CheckpointReason,
    GENESIS, HASH_LEN, MAX_AUDIT_FIELD_LEN, MAX_AUDIT_PAGE, Outcome, rfc3339,
};
use rampart_proto::{DeviceId, GroupId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteExecutor, SqlitePool};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};

pub use alerts::{AlertRule, AlertsConfig, GroupBy};
pub use verify::{Broken, Report, Verifier};

/// How often new entries are sealed into the chain.
pub const SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// Entries sealed per transaction.
const SEAL_BATCH: i64 = 500;

/// Who did it.
#[derive(Clone, Debug)]
pub enum Actor {
    /// An account, by id; its name is looked up when the entry is stored.
    User(i64),
    /// An account by name (already known to the caller).
    Name(String),
    /// The server itself (alerts, removals, pruning).
    Server,
    /// `rampart admin … --data` on a stopped server.
    Operator,
    /// Nobody identified: a login for an unknown name, a bad token.
    Nobody,
}

/// What it was done to.
#[derive(Clone, Debug)]
pub enum Target {
    /// An account, by id: stored as `user:<name>`.
    User(i64),
    Group(GroupId),
    /// Already spelled `kind:name`.
    Text(String),
}

/// One entry to append.
#[derive(Clone, Debug)]
pub struct Entry {
    pub actor: Actor,
    pub device: Option<DeviceId>,
    pub ip: Option<String>,
    pub action: String,
    pub target: Option<Target>,
    pub outcome: Outcome,
    pub detail: BTreeMap<String, String>,
}

impl Entry {
    pub fn new(action: impl Into<String>, actor: Actor, outcome: Outcome) -> Self {
        Self {
            actor,
            device: None,
            ip: None,
            action: action.into(),
            target: None,
            outcome,
            detail: BTreeMap::new(),
        }
    }

    pub fn device(mut self, device: Option<DeviceId>) -> Self {
        self.device = device;
        self
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// A short named value: never content, secrets or anything a user wrote.
    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.detail.insert(key.to_owned(), value.to_string());
        self
    }
}

/// Cuts `s` to [`MAX_AUDIT_FIELD_LEN`] bytes on a character boundary.
fn capped(s: &str) -> &str {
    if s.len() <= MAX_AUDIT_FIELD_LEN {
        return s;
    }
    let mut end = MAX_AUDIT_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `entry` (inside the caller's transaction, or on the pool). It
/// joins the chain when the sealer next runs.
pub async fn append(
    db: impl SqliteExecutor<'_>,
    at: i64,
    entry: &Entry,
) -> Result<(), sqlx::Error> {
    let (actor_name, actor_id) = match &entry.actor {
        Actor::User(id) => (None, Some(*id)),
        Actor::Name(name) => (Some(capped(name)), None),
        Actor::Server => (Some(ACTOR_SERVER), None),
        Actor::Operator => (Some(ACTOR_OPERATOR), None),
        Actor::Nobody => (None, None),
    };
    let (target_text, target_user) = match &entry.target {
        None => (None, None),
        Some(Target::User(id)) => (None, Some(*id)),
        Some(Target::Group(g)) => (Some(format!("group:{}", hex::encode(g.as_bytes()))), None),
        Some(Target::Text(t)) => (Some(capped(t).to_owned()), None),
    };
    let detail: BTreeMap<&str, &str> = entry
        .detail
        .iter()
        .map(|(k, v)| (capped(k), capped(v)))
        .collect();
    let detail = serde_json::to_string(&detail).unwrap_or_else(|_| "{}".to_owned());
    sqlx::query(
        "INSERT INTO audit_log (at, actor, device_id, ip, action, target, outcome, detail) VALUES \
         (?, COALESCE(?, (SELECT username FROM users WHERE id = ?)), ?, ?, ?, \
          COALESCE(?, 'user:' || (SELECT username FROM users WHERE id = ?)), ?, ?)",
    )
    .bind(at)
    .bind(actor_name)
    .bind(actor_id)
    .bind(entry.device.map(device_to_db))
    .bind(entry.ip.as_deref().map(capped))
    .bind(capped(&entry.action))
    .bind(target_text)
    .bind(target_user)
    .bind(entry.outcome.as_str())
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

/// Appends where failing to audit must not change the answer (refusals,
/// failed logins): logs the database error instead.
pub async fn append_logged(pool: &SqlitePool, at: i64, entry: &Entry) {
    if let Err(e) = append(pool, at, entry).await {
        tracing::error!(error = %e, action = %entry.action, "appending an audit entry failed");
    }
}

/// Filters of a listing (the admin API's query).
pub use rampart_proto::audit::AuditQuery as Query;

/// Sealed entries matching a [`Query`]; the order and limit follow.
macro_rules! page_sql {
    () => {
        "SELECT id, at, actor, device_id, ip, action, target, outcome, detail, prev_hash, hash \
         FROM audit_log WHERE hash IS NOT NULL \
         AND (? IS NULL OR id > ?) AND (? IS NULL OR id < ?) AND (? IS NULL OR at >= ?) \
         AND (? IS NULL OR actor = ?) AND (? IS NULL OR action = ?)"
    };
}

/// The audit log of one data directory: sealing, signing, pruning, reading.
pub struct Audit {
    pool: SqlitePool,
    clock: Clock,
    signer: SigningKey,
    /// Held while sealing, signing or pruning: one chain, one writer of it.
    /// The alert state rides along, as only sealing feeds it.
    sealer: Mutex<alerts::Alerts>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// `seed`: [`crate::secrets::ServerKey::audit_seed`].
    pub fn new(pool: SqlitePool, clock: Clock, seed: &[u8; 32], alerts: alerts::Alerts) -> Self {
        Self {
            pool,
            clock,
            signer: SigningKey::from_bytes(seed),
            sealer: Mutex::new(alerts),
        }
    }

    /// The Ed25519 public key checkpoints are signed with.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.verifying_key().to_bytes()
    }

    /// Chains every entry not yet sealed, in id order, and runs the alert
    /// rules over them. Returns how many were sealed.
    pub async fn seal(&self) -> Result<usize, sqlx::Error> {
        let mut alerts = self.sealer.lock().await;
        self.seal_locked(&mut alerts).await
    }

    async fn seal_locked(&self, alerts: &mut alerts::Alerts) -> Result<usize, sqlx::Error> {
        let mut sealed = 0;
        // Read once, when there is something to seal; then carried along.
        let mut head = None;
        loop {
            let rows = sqlx::query(
                "SELECT id, at, actor, device_id, ip, action, target, outcome, detail \
                 FROM audit_log WHERE hash IS NULL ORDER BY id LIMIT ?",
            )
            .bind(SEAL_BATCH)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(sealed);
            }
            let mut prev = match head {
                Some(hash) => hash,
                None => self.head().await?,
            };
            let mut batch = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut entry = entry_from_row(row, false)?;
                entry.prev_hash = prev;
                entry.hash = entry.compute_hash();
                prev = entry.hash;
                batch.push(entry);
            }
            let mut tx = self.pool.begin().await?;
            for e in &batch {
                sqlx::query(
                    "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ? AND hash IS NULL",
                )
                .bind(e.prev_hash.as_slice())
                .bind(e.hash.as_slice())
                .bind(u64_to_db(e.id))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            head = Some(prev);
            sealed += batch.len();
            for fired in alerts.observe(&batch) {
                append(&self.pool, self.clock.now_db(), &fired.entry()).await?;
                alerts.notify(fired);
            }
        }
    }

    /// The hash the next entry links to: the newest sealed entry's, or the
    /// pruning anchor's when everything before was pruned, or [`GENESIS`].
    async fn head(&self) -> Result<[u8; HASH_LEN], sqlx::Error> {
        let last: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let last = match last {
            Some(h) => Some(h),
            None => {
                sqlx::query_scalar(
                    "SELECT head_hash FROM audit_checkpoints WHERE reason = 'prune' \
                     ORDER BY last_id DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?
            }
        };
        Ok(last.map_or(GENESIS, |h| hash_from_db(&h)))
    }

    /// Seals, then signs the chain's head; `None` when the log is empty or
    /// its head is signed already.
    pub async fn checkpoint(
        &self,
        reason: CheckpointReason,
    ) -> Result<Option<AuditCheckpoint>, sqlx::Error> {
        let mut alerts = self.sealer.lock().await;
        self.seal_locked(&mut alerts).await?;
        let Some(row) = sqlx::query(
            "SELECT id, hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let last_id = u64_from_db(row.try_get("id")?);
        if reason != CheckpointReason::Prune {
            let signed: Option<i64> =
                sqlx::query_scalar("SELECT MAX(last_id) FROM audit_checkpoints")
                    .fetch_one(&self.pool)
                    .await?;
            if signed.map(u64_from_db) == Some(last_id) {
                return Ok(None);
            }
        }
        let hash = hash_from_db(&row.try_get::<Vec<u8>, _>("hash")?);
        let checkpoint = self.sign(last_id, hash, reason);
        insert_checkpoint(&self.pool, &checkpoint).await?;
        alerts.anchor(&checkpoint);
        Ok(Some(checkpoint))
    }

    fn sign(
        &self,
        last_id: u64,
        head_hash: [u8; HASH_LEN],
        reason: CheckpointReason,
    ) -> AuditCheckpoint {
        let at = u64_from_db(self.clock.now_db());
        let message = AuditCheckpoint::signed_message(last_id, &head_hash, at, reason);
        AuditCheckpoint {
            last_id,
            head_hash,
            at,
            time: rfc3339(at),
            reason,
            key: hex::encode(self.public_key()),
            signature: hex::encode(self.signer.sign(&message).to_bytes()),
        }
    }

    /// Deletes the entries older than `cutoff` (ms), with the per-account
    /// security and DLP events of that age. First signs a checkpoint of the
    /// last entry deleted: the kept part links to it. Records an
    /// `audit_pruned` entry. Returns how many entries went.
    pub async fn prune_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        let mut alerts = self.sealer.lock().await;
        self.seal_locked(&mut alerts).await?;
        // Everything before the first entry of the kept period (ids follow
        // commit order; a clock stepping back must not punch holes).
        let through: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE((SELECT MIN(id) FROM audit_log WHERE at >= ?) - 1, \
                             (SELECT MAX(id) FROM audit_log))",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        let Some(through) = through else {
            return Ok(0);
        };
        let Some(hash) = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT hash FROM audit_log WHERE id = ? AND hash IS NOT NULL",
        )
        .bind(through)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(0);
        };
        let anchor = self.sign(
            u64_from_db(through),
            hash_from_db(&hash),
            CheckpointReason::Prune,
        );
        let mut tx = self.pool.begin().await?;
        insert_checkpoint(&mut *tx, &anchor).await?;
        let pruned = sqlx::query("DELETE FROM audit_log WHERE id <= ?")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE last_id < ?")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM security_events WHERE at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dlp_events WHERE received_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let entry = Entry::new("audit_pruned", Actor::Server, Outcome::Success)
            .detail("entries", pruned)
            .detail("through", through);
        append(&mut *tx, self.clock.now_db(), &entry).await?;
        tx.commit().await?;
        alerts.anchor(&anchor);
        self.seal_locked(&mut alerts).await?;
        Ok(pruned)
    }

    /// Sealed entries matching `query`, at most [`MAX_AUDIT_PAGE`]. Seals
    /// first, so that everything committed so far is listed.
    pub async fn page(&self, query: &Query) -> Result<AuditPage, sqlx::Error> {
        self.seal().await?;
        self.read_page(query).await
    }

    /// [`Audit::page`] of what is sealed now.
    async fn read_page(&self, query: &Query) -> Result<AuditPage, sqlx::Error> {
        let limit = query
            .limit
            .unwrap_or(MAX_AUDIT_PAGE)
            .clamp(1, MAX_AUDIT_PAGE);
        let after = query.after.map(u64_to_db);
        let before = query.before.map(u64_to_db);
        let sql = if query.newest_first {
            concat!(page_sql!(), " ORDER BY id DESC LIMIT ?")
        } else {
            concat!(page_sql!(), " ORDER BY id ASC LIMIT ?")
        };
        let rows = sqlx::query(sql)
            .bind(after)
            .bind(after)
            .bind(before)
            .bind(before)
            .bind(query.since.map(u64_to_db))
            .bind(query.since.map(u64_to_db))
            .bind(query.actor.as_deref())
            .bind(query.actor.as_deref())
            .bind(query.action.as_deref())
            .bind(query.action.as_deref())
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > limit;
        let entries = rows
            .iter()
            .take(limit)
            .map(|r| entry_from_row(r, true))
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT last_id, head_hash, at, reason, public_key, signature \
             FROM audit_checkpoints ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Seals and walks the whole chain in the database against this
    /// server's own key (an operator on the server's machine trusts it).
    pub async fn verify(&self) -> Result<Result<Report, Broken>, sqlx::Error> {
        self.seal().await?;
        let mut verifier = match Verifier::new(&self.public_key(), self.checkpoints().await?) {
            Ok(v) => v,
            Err(broken) => return Ok(Err(broken)),
        };
        let mut after = None;
        loop {
            let page = self
                .read_page(&Query {
                    after,
                    ..Query::default()
                })
                .await?;
            for e in &page.entries {
                if let Err(broken) = verifier.entry(e) {
                    return Ok(Err(broken));
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(verifier.finish()),
            }
        }
    }

    /// Seals every second and checkpoints every `checkpoint_every` until
    /// `shutdown` flips; the final checkpoint is the caller's (after the
    /// last writes).
    pub(crate) async fn run(
        self: Arc<Self>,
        checkpoint_every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut seal = tokio::time::interval(SEAL_INTERVAL);
        seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checkpoint = tokio::time::interval(checkpoint_every);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint.tick().await;
        loop {
            tokio::select! {
                _ = seal.tick() => {
                    if let Err(e) = self.seal().await {
                        tracing::error!(error = %e, "sealing audit entries failed");
                    }
                }
                _ = checkpoint.tick() => {
                    if let Err(e) = self.checkpoint(CheckpointReason::Interval).await {
                        tracing::error!(error = %e, "signing an audit checkpoint failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn insert_checkpoint(
    db: impl SqliteExecutor<'_>,
    c: &AuditCheckpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (last_id, head_hash, at, reason, public_key, signature) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(u64_to_db(c.last_id))
    .bind(c.head_hash.as_slice())
    .bind(u64_to_db(c.at))
    .bind(c.reason.as_str())
    .bind(hex::decode(&c.key).unwrap_or_default())
    .bind(hex::decode(&c.signature).unwrap_or_default())
    .execute(db)
    .await?;
    Ok(())
}

/// A stored hash; a value of the wrong length (a tampered row) becomes one
/// that verifies against nothing.
fn hash_from_db(bytes: &[u8]) -> [u8; HASH_LEN] {
    <[u8; HASH_LEN]>::try_from(bytes).unwrap_or([0xff; HASH_LEN])
}

/// A row as an entry. Nothing in it is trusted: whatever a tampered row
/// holds comes out as something that fails verification, never a panic.
fn entry_from_row(row: &SqliteRow, sealed: bool) -> Result<AuditEntry, sqlx::Error> {
    let at = u64_from_db(row.try_get("at")?);
    let detail_text: String = row.try_get("detail")?;
    let detail = serde_json::from_str::<BTreeMap<String, String>>(&detail_text)
        .unwrap_or_else(|_| BTreeMap::from([("unreadable".to_owned(), detail_text)]));
    let outcome_text: String = row.try_get("outcome")?;
    let outcome = Outcome::parse(&outcome_text);
    let (prev_hash, mut hash) = if sealed {
        (
            hash_from_db(&row.try_get::<Vec<u8>, _>("prev_hash")?),
            hash_from_db(&row.try_get::<Vec<u8>, _>("hash")?),
        )
    } else {
        (GENESIS, GENESIS)
    };
    if outcome.is_none() {
        // Not a value the server writes: the row was edited.
        hash = [0xff; HASH_LEN];
    }
    Ok(AuditEntry {
        id: u64_from_db(row.try_get("id")?),
        at,
        time: rfc3339(at),
        actor: row.try_get("actor")?,
        device: row
            .try_get::<Option<i64>, _>("device_id")?
            .and_then(device_from_db),
        ip: row.try_get("ip")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: outcome.unwrap_or(Outcome::Failure),
        detail,
        prev_hash,
        hash,
    })
}

fn checkpoint_from_row(row: &SqliteRow) -> Result<AuditCheckpoint, sqlx::Error> {
    let at = u64_from_db(row.try_get("at")?);
    let reason: String = row.try_get("reason")?;
    Ok(AuditCheckpoint {
        last_id: u64_from_db(row.try_get("last_id")?),
        head_hash: hash_from_db(&row.try_get::<Vec<u8>, _>("head_hash")?),
        at,
        time: rfc3339(at),
        // A tampered reason fails the signature check.
        reason: CheckpointReason::parse(&reason).unwrap_or(CheckpointReason::Requested),
        key: hex::encode(row.try_get::<Vec<u8>, _>("public_key")?),
        signature: hex::encode(row.try_get::<Vec<u8>, _>("signature")?),
    })
}
