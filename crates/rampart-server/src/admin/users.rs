//! The user lifecycle: list, invite, role, disable, enable, delete, and
//! resetting a second factor.

use super::{
    Act, Caller, Ctx, Target, admin_entry, by, check_act, check_administers, deny, keep_an_owner,
    may_invite, record_both, record_both_with, record_own, target,
};
use crate::audit;
use crate::auth::role_from_db;
use crate::db::{self, device_from_db, sha256, u64_from_db};
use crate::error::ApiError;
use crate::security_events::{self, Event};
use rampart_proto::admin::{
    AccountStatus, DEFAULT_INVITE_SECS, Invite, MAX_INVITE_SECS, NewInvite, UserList, UserSummary,
};
use rampart_proto::api::SecurityEventKind;
use rampart_proto::{BlobId, DeviceId, Username};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sqlx::{Row as _, SqliteConnection, SqlitePool};

/// Why the delivery service closed a device's WebSocket.
const KICK_SESSIONS_REVOKED: &str = "an administrator revoked this account's sessions";

/// Accounts that are not deleted: one (`?1`, a user id) or all (`?1` NULL).
const SUMMARY: &str = "SELECT u.username, u.role, u.created_at, u.disabled_at, \
     (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.revoked = 0) AS devices, \
     (SELECT MAX(d.last_seen) FROM devices d WHERE d.user_id = u.id) AS last_seen, \
     EXISTS (SELECT 1 FROM two_factor t WHERE t.user_id = u.id AND t.secret IS NOT NULL) \
       AS two_factor \
     FROM users u WHERE u.deleted_at IS NULL AND (?1 IS NULL OR u.id = ?1) \
     ORDER BY u.username";

fn summary_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserSummary, ApiError> {
    let username = Username::parse(row.try_get::<&str, _>("username")?)
        .map_err(|_| ApiError::internal("invalid username in database"))?;
    Ok(UserSummary {
        username,
        role: role_from_db(row.try_get::<&str, _>("role")?),
        status: if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
            AccountStatus::Disabled
        } else {
            AccountStatus::Active
        },
        two_factor: row.try_get::<bool, _>("two_factor")?,
        devices: u32::try_from(row.try_get::<i64, _>("devices")?).unwrap_or(u32::MAX),
        created_at: u64_from_db(row.try_get("created_at")?),
        last_seen: row.try_get::<Option<i64>, _>("last_seen")?.map(u64_from_db),
    })
}

async fn summary(conn: &mut SqliteConnection, user_id: i64) -> Result<UserSummary, ApiError> {
    let row = sqlx::query(SUMMARY)
        .bind(Some(user_id))
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("that account no longer exists"))?;
    summary_from_row(&row)
}

/// `GET /v1/admin/users`, sorted by username.
pub(super) async fn list(ctx: &Ctx, caller: &Caller) -> Result<UserList, ApiError> {
    check_administers(ctx, caller).await?;
    let rows = sqlx::query(SUMMARY)
        .bind(None::<i64>)
        .fetch_all(&ctx.pool)
        .await?;
    let users = rows
        .iter()
        .map(summary_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UserList { users })
}

/// `POST /v1/admin/invites`.
pub(super) async fn invite(ctx: &Ctx, caller: &Caller, new: NewInvite) -> Result<Invite, ApiError> {
    if let Err(reason) = may_invite(caller, new.role) {
        return Err(deny(ctx, caller, None, reason).await);
    }
    let secs = new.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if secs == 0 || secs > MAX_INVITE_SECS {
        return Err(ApiError::bad_request(format!(
            "expires_in_secs must be 1 to {MAX_INVITE_SECS} (30 days)"
        )));
    }
    let now = ctx.now();
    let expires_at = now.saturating_add(i64::try_from(secs * 1000).unwrap_or(i64::MAX));
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let code = db::insert_invite_at(&mut tx, new.role.as_str(), now, expires_at).await?;
    // Never the code: its role and lifetime only.
    let kind = SecurityEventKind::InviteCreated;
    let entry = admin_entry(ctx, caller, kind)
        .detail("role", new.role.as_str())
        .detail("expires_in_secs", secs);
    record_own(&mut tx, ctx, caller, kind, entry).await?;
    tx.commit().await?;
    tracing::info!(by = %by(caller), role = ?new.role, "invite created");
    Ok(Invite {
        code,
        role: new.role,
        expires_at: u64_from_db(expires_at),
    })
}

/// `POST /v1/admin/users/{username}/role`.
pub(super) async fn set_role(
    ctx: &Ctx,
    caller: &Caller,
    username: &Username,
    role: rampart_proto::api::Role,
) -> Result<UserSummary, ApiError> {
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let t = target(&mut tx, username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::SetRole(role)).await?;
    if t.role == role {
        return summary(&mut tx, t.id).await;
    }
    if role != rampart_proto::api::Role::Owner {
        tx = keep_an_owner(ctx, caller, tx, &t).await?;
    }
    sqlx::query("UPDATE users SET role = ? WHERE id = ?")
        .bind(role.as_str())
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    record_both_with(
        &mut tx,
        ctx,
        caller,
        t.id,
        SecurityEventKind::RoleChanged,
        &[("role", role.as_str()), ("from", t.role.as_str())],
    )
    .await?;
    let answer = summary(&mut tx, t.id).await?;
    tx.commit().await?;
    tracing::info!(user = %username, from = ?t.role, to = ?role, by = %by(caller), "role changed");
    Ok(answer)
}

/// Marks every live device of the account revoked and deletes their
/// KeyPackages (the database half of `devices::revoke`); returns them.
async fn revoke_all_devices(
    conn: &mut SqliteConnection,
    ctx: &Ctx,
    caller: &Caller,
    user_id: i64,
) -> Result<Vec<DeviceId>, ApiError> {
    let devices: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM devices WHERE user_id = ? AND revoked = 0")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    let mut revoked = Vec::with_capacity(devices.len());
    for id in devices {
        sqlx::query("UPDATE devices SET revoked = 1 WHERE id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM key_packages WHERE device_id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if let Some(device) = device_from_db(id) {
            let event = Event::new(SecurityEventKind::DeviceRevoked, Some(user_id), ctx.ip)
                .device(device)
                .mirror();
            security_events::record(&mut *conn, ctx.now(), &event).await?;
            let entry = admin_entry(ctx, caller, SecurityEventKind::DeviceRevoked)
                .target(audit::Target::User(user_id))
                .device(Some(device));
            audit::append(&mut *conn, ctx.now(), &entry).await?;
            revoked.push(device);
        }
    }
    Ok(revoked)
}

/// `POST /v1/admin/users/{username}/disable`; disabling a disabled
/// account changes nothing.
pub(super) async fn disable(
    ctx: &Ctx,
    caller: &Caller,
    username: &Username,
) -> Result<UserSummary, ApiError> {
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let t = target(&mut tx, username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::Disable).await?;
    if t.disabled {
        return summary(&mut tx, t.id).await;
    }
    tx = keep_an_owner(ctx, caller, tx, &t).await?;
    sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
        .bind(ctx.now())
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    let devices = revoke_all_devices(&mut tx, ctx, caller, t.id).await?;
    record_both(
        &mut tx,
        ctx,
        caller,
        t.id,
        SecurityEventKind::AccountDisabled,
    )
    .await?;
    tx.commit().await?;
    // Sessions stay (they authorise nothing now) so that an old token is
    // told why; see the module documentation.
    ctx.revoke_devices(&devices).await?;
    tracing::info!(user = %username, devices = devices.len(), by = %by(caller), "account disabled");
    summary(&mut *ctx.pool.acquire().await?, t.id).await
}

/// `POST /v1/admin/users/{username}/enable`; enabling an active account
/// changes nothing. Devices stay revoked: the user signs in again as a new
/// device.
pub(super) async fn enable(
    ctx: &Ctx,
    caller: &Caller,
    username: &Username,
) -> Result<UserSummary, ApiError> {
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let t = target(&mut tx, username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::Enable).await?;
    if !t.disabled {
        return summary(&mut tx, t.id).await;
    }
    sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = ?")
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    // The sessions kept while disabled belong to revoked devices.
    sqlx::query(
        "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
    )
    .bind(t.id)
    .execute(&mut *tx)
    .await?;
    record_both(
        &mut tx,
        ctx,
        caller,
        t.id,
        SecurityEventKind::AccountEnabled,
    )
    .await?;
    let answer = summary(&mut tx, t.id).await?;
    tx.commit().await?;
    tracing::info!(user = %username, by = %by(caller), "account enabled");
    Ok(answer)
}

/// The `deleted_usernames` key of a name.
fn tombstone(name: &str) -> Vec<u8> {
    sha256(format!("rampart deleted username\0{name}").as_bytes())
}

/// Whether the name belonged to a deleted account (and so can never be
/// registered again).
pub(crate) async fn is_tombstoned(
    conn: &mut SqliteConnection,
    username: &Username,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM deleted_usernames WHERE name_hash = ?")
            .bind(tombstone(username.as_str()))
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

/// `DELETE /v1/admin/users/{username}`: see the module documentation.
pub(super) async fn delete(
    ctx: &Ctx,
    caller: &Caller,
    username: &Username,
) -> Result<(), ApiError> {
    // First as a disable: checked, marked, every device revoked.
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let t = target(&mut tx, username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::Delete).await?;
    tx = keep_an_owner(ctx, caller, tx, &t).await?;
    sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?")
        .bind(ctx.now())
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    let devices = revoke_all_devices(&mut tx, ctx, caller, t.id).await?;
    tx.commit().await?;
    // The delivery service closes sockets and empties queues before the
    // rows go; the devices' group memberships stay for it to remove.
    ctx.revoke_devices(&devices).await?;

    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    // Checked again: the account may have changed in between.
    let t: Target = target(&mut tx, username).await?;
    let blobs = purge(&mut tx, ctx, t.id, username).await?;
    // By name: the account row no longer carries it.
    let kind = SecurityEventKind::AccountDeleted;
    let entry =
        admin_entry(ctx, caller, kind).target(audit::Target::Text(format!("user:{username}")));
    record_own(&mut tx, ctx, caller, kind, entry).await?;
    tx.commit().await?;
    // Objects after their rows (see `blobs::gc`); with the server stopped
    // the orphan collector deletes them at the next start.
    if let Some(live) = &ctx.live {
        for (id, upload, complete) in blobs {
            crate::blobs::store::discard(live.blobs.store.as_ref(), id, upload, complete).await;
        }
    }
    if let Err(e) = collect_deleted(&ctx.pool).await {
        tracing::warn!(error = %e, "dropping a deleted account's rows failed; the cleanup retries");
    }
    tracing::info!(by = %by(caller), "account deleted");
    Ok(())
}

type DoomedBlob = (BlobId, Option<String>, bool);

/// Deletes everything of the account but the rows MLS removal still needs
/// (its devices that are group members, and a husk user row for them).
async fn purge(
    conn: &mut SqliteConnection,
    ctx: &Ctx,
    user_id: i64,
    username: &Username,
) -> Result<Vec<DoomedBlob>, ApiError> {
    for sql in [
        "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
        "DELETE FROM key_packages WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
        "DELETE FROM queue WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
        "DELETE FROM idempotency WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
        "DELETE FROM link_requests WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?)",
        "DELETE FROM link_requests WHERE approved_by = ?",
        "DELETE FROM two_factor WHERE user_id = ?",
        "DELETE FROM recovery_codes WHERE user_id = ?",
        "DELETE FROM dlp_events WHERE user_id = ?",
        "DELETE FROM security_events WHERE user_id = ?",
        "UPDATE security_events SET subject_user = NULL WHERE subject_user = ?",
        // A used invite names its user; its job is done.
        "DELETE FROM invites WHERE used_by = ?",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut *conn).await?;
    }
    let rows = sqlx::query(
        "DELETE FROM blobs WHERE uploader_user = ? OR uploader_device IN \
         (SELECT id FROM devices WHERE user_id = ?) RETURNING id, upload, complete",
    )
    .bind(user_id)
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut blobs = Vec::with_capacity(rows.len());
    for row in rows {
        if let Ok(id) = BlobId::from_slice(row.try_get::<&[u8], _>("id")?) {
            blobs.push((
                id,
                row.try_get("upload")?,
                row.try_get::<i64, _>("complete")? != 0,
            ));
        }
    }
    // Devices still in groups keep their keys (the delivery service matches
    // leaves by them) but not their names.
    sqlx::query("UPDATE devices SET name = '' WHERE user_id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let mut raw = [0u8; 8];
    OsRng.fill_bytes(&mut raw);
    let husk = format!("deleted-{}", hex::encode(raw));
    let now = ctx.now();
    for name in [username.as_str(), husk.as_str()] {
        sqlx::query(
            "INSERT OR IGNORE INTO deleted_usernames (name_hash, deleted_at) VALUES (?, ?)",
        )
        .bind(tombstone(name))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "UPDATE users SET username = ?, password_hash = '', identity_key = X'', role = 'guest', \
         deleted_at = ? WHERE id = ?",
    )
    .bind(&husk)
    .bind(now)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(blobs)
}

/// Drops what is left of deleted accounts once no group holds their
/// devices: the devices, then the husk rows. Run by the hourly cleanup and
/// after every deletion.
pub(crate) async fn collect_deleted(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Devices of deleted accounts that no group holds any more, with what
    // still points at them; then the husks left without devices.
    for sql in [
        "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices \
         WHERE user_id IN (SELECT id FROM users WHERE deleted_at IS NOT NULL) \
         AND id NOT IN (SELECT device_id FROM group_members))",
        "DELETE FROM key_packages WHERE device_id IN (SELECT id FROM devices \
         WHERE user_id IN (SELECT id FROM users WHERE deleted_at IS NOT NULL) \
         AND id NOT IN (SELECT device_id FROM group_members))",
        "DELETE FROM blobs WHERE uploader_device IN (SELECT id FROM devices \
         WHERE user_id IN (SELECT id FROM users WHERE deleted_at IS NOT NULL) \
         AND id NOT IN (SELECT device_id FROM group_members))",
        "DELETE FROM devices \
         WHERE user_id IN (SELECT id FROM users WHERE deleted_at IS NOT NULL) \
         AND id NOT IN (SELECT device_id FROM group_members)",
        "DELETE FROM security_events WHERE user_id IN \
         (SELECT id FROM users WHERE deleted_at IS NOT NULL) \
         AND user_id NOT IN (SELECT user_id FROM devices)",
        "DELETE FROM users WHERE deleted_at IS NOT NULL \
         AND id NOT IN (SELECT user_id FROM devices)",
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// `POST /v1/admin/users/{username}/2fa-reset`: deletes the TOTP secret
/// and recovery codes and revokes every session, so the user signs in with
/// the password alone and enrols again.
pub(super) async fn reset_two_factor(
    ctx: &Ctx,
    caller: &Caller,
    username: &Username,
) -> Result<UserSummary, ApiError> {
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    let t = target(&mut tx, username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::ResetTwoFactor).await?;
    sqlx::query("DELETE FROM two_factor WHERE user_id = ?")
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    let devices: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_id = ?) \
         RETURNING device_id",
    )
    .bind(t.id)
    .fetch_all(&mut *tx)
    .await?;
    record_both(
        &mut tx,
        ctx,
        caller,
        t.id,
        SecurityEventKind::TwoFactorReset,
    )
    .await?;
    let answer = summary(&mut tx, t.id).await?;
    tx.commit().await?;
    ctx.kick(
        devices.into_iter().filter_map(device_from_db).collect(),
        KICK_SESSIONS_REVOKED,
    )
    .await;
    tracing::info!(user = %username, by = %by(caller), "second factor reset");
    Ok(answer)
}

/// The session-revoked reason, shared with `sessions`.
pub(super) fn kick_reason() -> &'static str {
    KICK_SESSIONS_REVOKED
}
