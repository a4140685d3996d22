//! Organisation administration: roles, the user lifecycle (invite, role,
//! disable, enable, delete, 2FA reset), the access policy, sessions, and a
//! view of groups by size and admins. The contract (routes, bodies, who may
//! do what) is [`rampart_proto::admin`].
//!
//! Every operation is one plain async function over the database taking
//! the `Caller`: an owner's or admin's session (the HTTP routes in
//! `routes`, under `/v1/admin/`) or the server's operator, someone with the
//! data directory of a stopped server ([`Console`], what `rampart admin`
//! uses without a session), who is treated like an owner. Both paths run the
//! same code, so they enforce the same rules:
//!
//! - owners do everything; admins manage members, guests and bots only and
//!   never grant `admin` or `owner`;
//! - the last active owner is never demoted, disabled or deleted;
//! - nobody changes their own role, or disables, deletes or resets the
//!   second factor of their own account here;
//! - every refusal is a `403` with the reason, recorded as an
//!   `access_denied` security event of the caller; every action is recorded
//!   in both the administrator's and the account's log.
//!
//! What it does **not** do: show content. There is no route that returns
//! a message, a file, a group's name or a key; groups are listed by id,
//! kind, epoch, sizes and the admins their settings name.
//!
//! Disabling an account marks it, revokes every device (as `devices` does:
//! KeyPackages deleted, WebSocket closed, queue emptied) and refuses its
//! login and old tokens with `account_disabled`. Its session rows are kept
//! until it is re-enabled, so that an old token is answered with that
//! clear reason (and recorded) rather than a bare `401`; they authorise
//! nothing. Removing the revoked devices from their MLS groups is the
//! delivery service's job. Enabling clears the mark only: the devices stay
//! revoked and the user signs in again as a new device.
//!
//! Deleting an account revokes its devices the same way, then purges its
//! data: sessions, KeyPackages, 2FA secret and recovery codes, link
//! requests, queue, uploaded blobs (rows at once, objects right after, or
//! by the orphan collector at the next start when the server is stopped),
//! DLP events and its security log; other logs stop naming it. The name
//! goes into `deleted_usernames` (as a hash) and can never be registered
//! again, because other clients pinned the identity key that went with it.
//! Devices that are still leaves of MLS groups keep their rows — and the
//! account a husk row with a random `deleted-…` name and no password or
//! identity key — so that the delivery service can still remove them from
//! those groups; the hourly cleanup (`collect_deleted`) drops them once
//! no group holds them.
//!
//! The access policy ([`rampart_proto::admin::AccessPolicy`]) lives in the `org_access` table;
//! the running server caches it (`AppState::access`) and reads it again at
//! start. It is enforced here at registration (the username pattern), in
//! the session extractor (two-factor enrolment) and by the delivery
//! service (groups).

mod access;
pub(crate) mod console;
mod groups;
pub(crate) mod routes;
mod sessions;
mod users;

#[allow(unused_imports, reason = "load_access is for the delivery actor")]
pub(crate) use access::{AccessCache, check_username, load_access, try_load_access};
pub use console::Console;
pub(crate) use users::{collect_deleted, is_tombstoned};

use crate::audit;
use crate::blobs::Blobs;
use crate::client_ip::ClientIp;
use crate::clock::Clock;
use crate::delivery::DeliveryHandle;
use crate::error::ApiError;
use crate::security_events::{self, Event};
use rampart_proto::api::{Role, SecurityEventKind};
use rampart_proto::audit::Outcome;
use rampart_proto::{DeviceId, Username};
use sqlx::{SqliteConnection, SqlitePool};
use std::sync::Arc;

/// Who asks for an administrative operation.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    /// An owner's or admin's session (its role as the session saw it).
    Admin {
        user_id: i64,
        username: Username,
        role: Role,
        /// The device whose session made the request.
        device: DeviceId,
    },
    /// Someone with the data directory of a stopped server: like an owner.
    Operator,
}

impl Caller {
    fn role(&self) -> Role {
        match self {
            Self::Admin { role, .. } => *role,
            Self::Operator => Role::Owner,
        }
    }

    fn user_id(&self) -> Option<i64> {
        match self {
            Self::Admin { user_id, .. } => Some(*user_id),
            Self::Operator => None,
        }
    }
}

/// What an operation needs: the database and clock, and in a running
/// server the delivery actor, blob store and policy cache.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub pool: SqlitePool,
    pub clock: Clock,
    pub ip: ClientIp,
    pub access: AccessCache,
    /// `None` for the [`Console`] (the server is stopped).
    pub live: Option<Live>,
}

/// The parts of a running server an operation tells about its changes.
#[derive(Clone)]
pub(crate) struct Live {
    pub delivery: DeliveryHandle,
    pub blobs: Arc<Blobs>,
}

impl Ctx {
    fn now(&self) -> i64 {
        self.clock.now_db()
    }

    /// Closes the devices' connections, empties their queues and stops
    /// queueing for them: through the delivery actor when the server runs,
    /// in the database when it is stopped (the actor reads the revocation
    /// at start). The devices must already be marked revoked.
    async fn revoke_devices(&self, devices: &[DeviceId]) -> Result<(), ApiError> {
        match &self.live {
            Some(live) => {
                for device in devices {
                    if !live.delivery.revoke(*device).await {
                        return Err(ApiError::internal(
                            "the delivery service did not confirm a revocation",
                        ));
                    }
                }
            }
            None => {
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                for device in devices {
                    sqlx::query("DELETE FROM queue WHERE device_id = ?")
                        .bind(crate::db::device_to_db(*device))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Closes these devices' WebSockets (their sessions were revoked); a
    /// stopped server has none open.
    async fn kick(&self, devices: Vec<DeviceId>, reason: &'static str) {
        if let Some(live) = &self.live {
            live.delivery.kick(devices, reason).await;
        }
    }
}

/// An account an operation acts on.
#[derive(Clone, Debug)]
struct Target {
    id: i64,
    username: Username,
    role: Role,
    disabled: bool,
}

/// The account named `username`; deleted accounts do not exist.
async fn target(conn: &mut SqliteConnection, username: &Username) -> Result<Target, ApiError> {
    let row: Option<(i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, role, disabled_at FROM users WHERE username = ? AND deleted_at IS NULL",
    )
    .bind(username.as_str())
    .fetch_optional(conn)
    .await?;
    let (id, role, disabled_at) = row.ok_or_else(|| no_such_account(username))?;
    Ok(Target {
        id,
        username: username.clone(),
        role: crate::auth::role_from_db(&role),
        disabled: disabled_at.is_some(),
    })
}

fn no_such_account(username: &Username) -> ApiError {
    ApiError::not_found(format!("there is no account named {username}"))
}

/// What a caller wants to do to an account.
#[derive(Clone, Copy, Debug)]
enum Act {
    SetRole(Role),
    Disable,
    Enable,
    Delete,
    ResetTwoFactor,
    RevokeSession,
}

impl Act {
    fn describe(self) -> &'static str {
        match self {
            Self::SetRole(_) => "change the role of",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Delete => "delete",
            Self::ResetTwoFactor => "reset the second factor of",
            Self::RevokeSession => "revoke a session of",
        }
    }
}

/// Roles an admin (not an owner) may manage and grant.
fn admin_manages(role: Role) -> bool {
    matches!(role, Role::Member | Role::Guest | Role::Bot)
}

/// Whether the caller may use the administration at all.
fn ensure_administers(caller: &Caller) -> Result<(), String> {
    if caller.role().administers() {
        Ok(())
    } else {
        Err("only owners and admins may administer the organisation".into())
    }
}

/// The rules of [`rampart_proto::admin`] for acting on an account (the
/// last-owner rule needs the database and is checked by the operations).
fn may_act(caller: &Caller, target: &Target, act: Act) -> Result<(), String> {
    ensure_administers(caller)?;
    if caller.user_id() == Some(target.id) && !matches!(act, Act::RevokeSession) {
        return Err(format!(
            "you cannot {} your own account here; ask another owner",
            act.describe()
        ));
    }
    if caller.role() == Role::Owner {
        return Ok(());
    }
    if !admin_manages(target.role) {
        return Err(format!(
            "admins cannot {} an {}; only owners can",
            act.describe(),
            target.role.as_str()
        ));
    }
    if let Act::SetRole(role) = act
        && !admin_manages(role)
    {
        return Err(format!(
            "admins cannot grant the {} role; only owners can",
            role.as_str()
        ));
    }
    Ok(())
}

/// Whether `role` may be put on a new invite by the caller.
fn may_invite(caller: &Caller, role: Role) -> Result<(), String> {
    ensure_administers(caller)?;
    if caller.role() == Role::Owner || admin_manages(role) {
        Ok(())
    } else {
        Err(format!(
            "admins cannot invite with the {} role; only owners can",
            role.as_str()
        ))
    }
}

/// Records the refusal as an `access_denied` event of the caller (naming
/// the account it aimed at) and answers `403` with the reason.
async fn deny(ctx: &Ctx, caller: &Caller, subject: Option<i64>, reason: String) -> ApiError {
    if let Caller::Admin {
        user_id,
        username,
        device,
        ..
    } = caller
    {
        tracing::warn!(user = %username, %reason, "administrative request refused");
        let event = Event::new(SecurityEventKind::AccessDenied, Some(*user_id), ctx.ip)
            .device(*device)
            .subject(subject)
            .detail("reason", &reason);
        if let Err(e) = security_events::record(&ctx.pool, ctx.now(), &event).await {
            tracing::error!(error = %e, "recording a security event failed");
        }
    }
    ApiError::forbidden(reason)
}

/// An open write transaction of an operation.
type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Checks [`may_act`]. A refusal rolls the transaction back first (the
/// event is recorded outside it, and must not wait for its own lock).
async fn check_act(
    ctx: &Ctx,
    caller: &Caller,
    tx: Tx,
    target: &Target,
    act: Act,
) -> Result<Tx, ApiError> {
    match may_act(caller, target, act) {
        Ok(()) => Ok(tx),
        Err(reason) => {
            drop(tx);
            Err(deny(ctx, caller, Some(target.id), reason).await)
        }
    }
}

/// Checks that the caller administers at all; a refusal is recorded.
async fn check_administers(ctx: &Ctx, caller: &Caller) -> Result<(), ApiError> {
    match ensure_administers(caller) {
        Ok(()) => Ok(()),
        Err(reason) => Err(deny(ctx, caller, None, reason).await),
    }
}

/// Refuses to leave the organisation without an active owner: `target` is
/// about to stop being one. Rolls back and records a refusal as
/// [`check_act`] does.
async fn keep_an_owner(
    ctx: &Ctx,
    caller: &Caller,
    mut tx: Tx,
    target: &Target,
) -> Result<Tx, ApiError> {
    if target.role != Role::Owner || target.disabled {
        return Ok(tx);
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'owner' AND id != ? \
         AND disabled_at IS NULL AND deleted_at IS NULL",
    )
    .bind(target.id)
    .fetch_one(&mut *tx)
    .await?;
    if others > 0 {
        return Ok(tx);
    }
    drop(tx);
    Err(deny(
        ctx,
        caller,
        Some(target.id),
        format!(
            "{} is the last active owner; make another account owner first",
            target.username
        ),
    )
    .await)
}

/// Records `kind` in the account's log (naming the administrator) and in
/// the administrator's (naming the account), and audits it once: the
/// caller acted on the account.
async fn record_both(
    conn: &mut SqliteConnection,
    ctx: &Ctx,
    caller: &Caller,
    target: i64,
    kind: SecurityEventKind,
) -> Result<(), sqlx::Error> {
    record_both_with(conn, ctx, caller, target, kind, &[]).await
}

/// [`record_both`], with named values for the audit entry.
async fn record_both_with(
    conn: &mut SqliteConnection,
    ctx: &Ctx,
    caller: &Caller,
    target: i64,
    kind: SecurityEventKind,
    detail: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    let now = ctx.now();
    let event = Event::new(kind, Some(target), ctx.ip)
        .subject(caller.user_id())
        .mirror();
    security_events::record(&mut *conn, now, &event).await?;
    if let Some(admin) = caller.user_id()
        && admin != target
    {
        let event = Event::new(kind, Some(admin), ctx.ip)
            .subject(Some(target))
            .mirror();
        security_events::record(&mut *conn, now, &event).await?;
    }
    let mut entry = admin_entry(ctx, caller, kind).target(audit::Target::User(target));
    for (key, value) in detail {
        entry = entry.detail(key, value);
    }
    audit::append(&mut *conn, now, &entry).await
}

/// Records `kind` in the administrator's own log (an action on no account,
/// or on one that is gone) and appends `entry`, its audit entry.
async fn record_own(
    conn: &mut SqliteConnection,
    ctx: &Ctx,
    caller: &Caller,
    kind: SecurityEventKind,
    entry: audit::Entry,
) -> Result<(), sqlx::Error> {
    let now = ctx.now();
    if let Some(admin) = caller.user_id() {
        let event = Event::new(kind, Some(admin), ctx.ip).mirror();
        security_events::record(&mut *conn, now, &event).await?;
    }
    audit::append(&mut *conn, now, &entry).await
}

/// The audit entry of an administrative action by `caller`.
fn admin_entry(ctx: &Ctx, caller: &Caller, kind: SecurityEventKind) -> audit::Entry {
    let (actor, device) = match caller {
        Caller::Admin {
            user_id, device, ..
        } => (audit::Actor::User(*user_id), Some(*device)),
        Caller::Operator => (audit::Actor::Operator, None),
    };
    audit::Entry::new(security_events::kind_name(kind), actor, Outcome::Success)
        .device(device)
        .ip(ctx.ip.display())
}

/// Who acted, for the operator's log lines.
fn by(caller: &Caller) -> String {
    match caller {
        Caller::Admin { username, .. } => username.to_string(),
        Caller::Operator => "the operator".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(role: Role) -> Caller {
        Caller::Admin {
            user_id: 1,
            username: Username::parse("boss").unwrap(),
            role,
            device: DeviceId::new(1).unwrap(),
        }
    }

    fn account(id: i64, role: Role) -> Target {
        Target {
            id,
            username: Username::parse("someone").unwrap(),
            role,
            disabled: false,
        }
    }

    #[test]
    fn who_may_do_what() {
        let member = account(2, Role::Member);
        let other_admin = account(2, Role::Admin);
        let owner = account(2, Role::Owner);
        // Admins: members, guests and bots only, and never grant admin.
        let a = admin(Role::Admin);
        assert!(may_act(&a, &member, Act::Disable).is_ok());
        assert!(may_act(&a, &member, Act::SetRole(Role::Guest)).is_ok());
        assert!(may_act(&a, &member, Act::SetRole(Role::Admin)).is_err());
        assert!(may_act(&a, &member, Act::SetRole(Role::Owner)).is_err());
        assert!(may_act(&a, &other_admin, Act::Disable).is_err());
        assert!(may_act(&a, &owner, Act::RevokeSession).is_err());
        assert!(may_invite(&a, Role::Bot).is_ok());
        assert!(may_invite(&a, Role::Admin).is_err());
        // Owners and the operator: everything, to anyone else.
        for o in [admin(Role::Owner), Caller::Operator] {
            assert!(may_act(&o, &owner, Act::SetRole(Role::Member)).is_ok());
            assert!(may_act(&o, &other_admin, Act::Delete).is_ok());
            assert!(may_invite(&o, Role::Owner).is_ok());
        }
        // Nobody acts on themselves, but revoking one's own session is fine.
        let me = account(1, Role::Owner);
        for act in [
            Act::SetRole(Role::Member),
            Act::Disable,
            Act::Delete,
            Act::ResetTwoFactor,
        ] {
            assert!(may_act(&admin(Role::Owner), &me, act).is_err());
        }
        assert!(may_act(&admin(Role::Owner), &me, Act::RevokeSession).is_ok());
        // Members, guests and bots administer nothing.
        for role in [Role::Member, Role::Guest, Role::Bot] {
            assert!(may_act(&admin(role), &member, Act::Enable).is_err());
            assert!(may_invite(&admin(role), Role::Member).is_err());
        }
    }
}
