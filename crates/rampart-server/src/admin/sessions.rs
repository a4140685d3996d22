//! Sessions as administrators see them: who, which device, since when,
//! named by a prefix of the stored token hash (never the token).

use super::{Act, Caller, Ctx, by, check_act, check_administers, record_both, target};
use crate::db::{device_from_db, u64_from_db};
use crate::error::ApiError;
use rampart_proto::Username;
use rampart_proto::admin::{SessionList, SessionSummary};
use rampart_proto::api::SecurityEventKind;
use sqlx::Row as _;

/// Hex digits of the token hash that name a session: 64 bits, so two
/// sessions share one only by a rare accident (then both are refused as
/// ambiguous and a longer prefix names one).
const SESSION_ID_HEX: usize = 16;
/// Longest session id accepted: the whole SHA-256 in hex.
const MAX_SESSION_ID_HEX: usize = 64;

/// `GET /v1/admin/sessions[?user=NAME]`: sessions of accounts that may
/// use them (not disabled, device not revoked), newest first.
pub(super) async fn list(
    ctx: &Ctx,
    caller: &Caller,
    user: Option<&Username>,
) -> Result<SessionList, ApiError> {
    check_administers(ctx, caller).await?;
    let mut conn = ctx.pool.acquire().await?;
    let only = match user {
        Some(name) => Some(target(&mut conn, name).await?.id),
        None => None,
    };
    let rows = sqlx::query(
        "SELECT s.token_hash, s.device_id, s.created_at, s.last_used, u.username \
         FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = d.user_id \
         WHERE d.revoked = 0 AND u.disabled_at IS NULL AND u.deleted_at IS NULL \
         AND (?1 IS NULL OR u.id = ?1) \
         ORDER BY s.created_at DESC, s.token_hash",
    )
    .bind(only)
    .fetch_all(&mut *conn)
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(device_id) = device_from_db(row.try_get("device_id")?) else {
            continue;
        };
        let hash: &[u8] = row.try_get("token_hash")?;
        let mut session_id = hex::encode(hash);
        session_id.truncate(SESSION_ID_HEX);
        sessions.push(SessionSummary {
            session_id,
            username: Username::parse(row.try_get::<&str, _>("username")?)
                .map_err(|_| ApiError::internal("invalid username in database"))?,
            device_id,
            created_at: u64_from_db(row.try_get("created_at")?),
            last_used: u64_from_db(row.try_get("last_used")?),
        });
    }
    Ok(SessionList { sessions })
}

fn no_such_session() -> ApiError {
    ApiError::not_found("no session has that id (it may have ended already)")
}

/// `POST /v1/admin/sessions/{session_id}/revoke`: deletes one session and
/// closes its device's WebSocket.
pub(super) async fn revoke(ctx: &Ctx, caller: &Caller, session_id: &str) -> Result<(), ApiError> {
    check_administers(ctx, caller).await?;
    let id = session_id.trim().to_ascii_lowercase();
    if id.len() < SESSION_ID_HEX
        || id.len() > MAX_SESSION_ID_HEX
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(no_such_session());
    }
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    // hex() is upper case; at most two rows tell unique from ambiguous.
    let rows = sqlx::query(
        "SELECT s.token_hash, s.device_id, u.username FROM sessions s \
         JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = d.user_id \
         WHERE substr(hex(s.token_hash), 1, ?) = upper(?) AND u.deleted_at IS NULL LIMIT 2",
    )
    .bind(i64::try_from(id.len()).unwrap_or(0))
    .bind(&id)
    .fetch_all(&mut *tx)
    .await?;
    let [row] = rows.as_slice() else {
        return Err(no_such_session());
    };
    let hash: Vec<u8> = row.try_get("token_hash")?;
    let device = device_from_db(row.try_get("device_id")?);
    let username = Username::parse(row.try_get::<&str, _>("username")?)
        .map_err(|_| ApiError::internal("invalid username in database"))?;
    let t = target(&mut tx, &username).await?;
    let mut tx = check_act(ctx, caller, tx, &t, Act::RevokeSession).await?;
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    record_both(
        &mut tx,
        ctx,
        caller,
        t.id,
        SecurityEventKind::SessionRevoked,
    )
    .await?;
    tx.commit().await?;
    if let Some(device) = device {
        ctx.kick(vec![device], super::users::kick_reason()).await;
    }
    tracing::info!(user = %username, by = %by(caller), "session revoked");
    Ok(())
}
