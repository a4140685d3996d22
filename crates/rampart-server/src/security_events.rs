//! The security log: who logged in, failed, was locked, changed a factor or
//! a device, and from which address. One row per event in
//! `security_events`, which each account reads about itself; every event
//! is also appended to the organisation's audit log ([`crate::audit`]) in
//! the same transaction.
//!
//! Never stored: passwords, codes, tokens, secrets, or the username typed
//! for an account that does not exist (such events have no user).
//! Administrative actions are recorded in both logs, the administrator's
//! and the account's, each naming the other as `subject`.

use crate::audit;
use crate::auth::AuthDevice;
use crate::client_ip::ClientIp;
use crate::db::{device_from_db, device_to_db, u64_from_db};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::State;
use rampart_proto::api::{SecurityEvent, SecurityEventKind, SecurityEventList};
use rampart_proto::audit::Outcome;
use rampart_proto::limits::MAX_SECURITY_EVENTS;
use rampart_proto::{DeviceId, Username};
use sqlx::{Acquire, Row as _, Sqlite};
use std::collections::BTreeMap;

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: SecurityEventKind,
    pub user_id: Option<i64>,
    pub device: Option<DeviceId>,
    pub ip: Option<String>,
    /// The other account an administrative event concerns.
    pub subject: Option<i64>,
    /// Short named values for the audit log (a new role).
    pub detail: BTreeMap<String, String>,
    /// The account's copy of an administrator's action, audited once
    /// already from the administrator's side.
    pub mirror: bool,
}

impl Event {
    pub fn new(kind: SecurityEventKind, user_id: Option<i64>, ip: ClientIp) -> Self {
        Self {
            kind,
            user_id,
            device: None,
            ip: ip.display(),
            subject: None,
            detail: BTreeMap::new(),
            mirror: false,
        }
    }

    /// Adds a named value to the audit entry (never content or secrets).
    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.detail.insert(key.to_owned(), value.to_string());
        self
    }

    /// Marks the account's copy of an administrator's action: not audited
    /// again.
    pub fn mirror(mut self) -> Self {
        self.mirror = true;
        self
    }

    /// The audit entry this event makes: the account acted (or tried to),
    /// on the subject if any.
    pub fn audit_entry(&self) -> audit::Entry {
        let actor = self
            .user_id
            .map_or(audit::Actor::Nobody, audit::Actor::User);
        let mut entry = audit::Entry::new(kind_name(self.kind), actor, outcome(self.kind))
            .device(self.device)
            .ip(self.ip.clone());
        if let Some(subject) = self.subject {
            entry = entry.target(audit::Target::User(subject));
        }
        entry.detail = self.detail.clone();
        entry
    }

    pub fn subject(mut self, user_id: Option<i64>) -> Self {
        self.subject = user_id;
        self
    }

    pub fn device(mut self, device: DeviceId) -> Self {
        self.device = Some(device);
        self
    }
}

/// The stored spelling: the serde name of the kind (`login_failed`, ...).
pub(crate) fn kind_name(kind: SecurityEventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn kind_from_db(s: &str) -> Option<SecurityEventKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// How an event of this kind ended, for the audit log.
fn outcome(kind: SecurityEventKind) -> Outcome {
    use SecurityEventKind::*;
    match kind {
        LoginFailed | TwoFactorFailed | Locked => Outcome::Failure,
        AccessDenied => Outcome::Denied,
        _ => Outcome::Success,
    }
}

/// Records an event, and its audit entry, atomically (inside the caller's
/// transaction as a savepoint, or in a transaction of its own on the pool).
pub async fn record<'c>(
    db: impl Acquire<'c, Database = Sqlite>,
    at: i64,
    event: &Event,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO security_events (at, user_id, device_id, kind, ip, subject_user) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(event.user_id)
    .bind(event.device.map(device_to_db))
    .bind(kind_name(event.kind))
    .bind(event.ip.as_deref())
    .bind(event.subject)
    .execute(&mut *tx)
    .await?;
    if !event.mirror {
        audit::append(&mut *tx, at, &event.audit_entry()).await?;
    }
    tx.commit().await
}

/// Records an event where failing to record must not change the answer
/// (the failure paths of login): logs the database error instead.
pub async fn record_logged(state: &AppState, event: &Event) {
    if let Err(e) = record(&state.pool, state.now(), event).await {
        tracing::error!(error = %e, kind = ?event.kind, "recording a security event failed");
    }
}

/// `GET /v1/security-events`: the caller's account, newest first.
pub async fn list(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<SecurityEventList>, ApiError> {
    let rows = sqlx::query(
        "SELECT e.at, e.kind, e.device_id, e.ip, s.username AS subject FROM security_events e \
         LEFT JOIN users s ON s.id = e.subject_user AND s.deleted_at IS NULL \
         WHERE e.user_id = ? ORDER BY e.id DESC LIMIT ?",
    )
    .bind(auth.user_id)
    .bind(MAX_SECURITY_EVENTS as i64)
    .fetch_all(&state.pool)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(kind) = kind_from_db(row.try_get::<&str, _>("kind")?) else {
            continue;
        };
        events.push(SecurityEvent {
            at: u64_from_db(row.try_get("at")?),
            kind,
            device_id: row
                .try_get::<Option<i64>, _>("device_id")?
                .and_then(device_from_db),
            ip: row.try_get("ip")?,
            subject: row
                .try_get::<Option<&str>, _>("subject")?
                .and_then(|name| Username::parse(name).ok()),
        });
    }
    Ok(ApiJson(SecurityEventList { events }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        use SecurityEventKind::*;
        for kind in [
            Registered,
            LoginSucceeded,
            LoginFailed,
            TwoFactorFailed,
            Locked,
            TwoFactorEnabled,
            TwoFactorDisabled,
            RecoveryCodesRegenerated,
            RecoveryCodeUsed,
            PasswordChanged,
            DeviceAdded,
            DeviceRevoked,
            SessionExpired,
            AccessDenied,
            RoleChanged,
            AccountDisabled,
            AccountEnabled,
            AccountDeleted,
            TwoFactorReset,
            SessionRevoked,
            InviteCreated,
            AccessPolicyChanged,
        ] {
            let name = kind_name(kind);
            assert_ne!(name, "unknown");
            assert_eq!(kind_from_db(&name), Some(kind));
        }
        assert_eq!(kind_name(SessionExpired), "session_expired");
    }
}
