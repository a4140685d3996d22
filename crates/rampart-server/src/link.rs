//! Device linking: a new device joins an existing account without the
//! password, approved by a device the account already has.
//!
//! 1. The new device posts its id, name, keys and a MAC (`POST /v1/link`,
//!    no session) and shows the user a code made of the returned `link_id`
//!    and a secret that never reaches the server.
//! 2. The user types the code into an existing device, which fetches the
//!    request (`GET /v1/link/{id}`), checks the MAC with the secret, signs
//!    a certificate for the new device with the identity key, seals the
//!    identity to the new device's ephemeral key and approves
//!    (`POST /v1/link/{id}/approve`). The server checks the certificate
//!    against the account's identity key before it creates the device.
//! 3. The new device polls with its poll secret (`POST /v1/link/{id}/poll`)
//!    and gets, once, a session and the sealed identity.
//!
//! Requests expire after [`LINK_LIFETIME_MS`]; the cleanup loop deletes them.
//! The server stores only SHA-256 of the poll secret.

use crate::attempt::Attempt;
use crate::auth::{self, AuthDevice};
use crate::client_ip::ClientIp;
use crate::db::{device_from_db, device_to_db, sha256, u64_from_db};
use crate::error::{ApiError, ApiJson};
use crate::ratelimit::Action;
use crate::security_events::{self, Event};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_proto::api::{
    LinkApproval, LinkPoll, LinkRequest, LinkResult, LinkStart, LinkStatus, LinkTicket,
    SecurityEventKind, SessionResponse,
};
use rampart_proto::limits::{
    MAX_DEVICES_PER_USER, MAX_LINK_CODE_LEN, MAX_LINK_SEALED_BYTES, PUBLIC_KEY_LEN,
};
use rampart_proto::{ErrorCode, Username};
use rand::rngs::OsRng;
use rand::{Rng as _, RngCore as _};
use sqlx::Row as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Characters of a link id: no 0/O, 1/I/L or U/V look-alikes.
const LINK_ID_ALPHABET: &[u8; 30] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Characters per link id (30^8, about 39 bits, live for ten minutes).
const LINK_ID_LEN: usize = 8;
/// How long a link request (approved or not) waits.
pub const LINK_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Unexpired requests the server holds at once.
const MAX_PENDING_LINKS: i64 = 1000;
/// Bytes of the poll secret.
const POLL_SECRET_BYTES: usize = 32;
/// Bytes of the new device's MAC (HMAC-SHA-256).
const MAC_LEN: usize = 32;

fn new_link_id() -> String {
    (0..LINK_ID_LEN)
        .map(|_| char::from(LINK_ID_ALPHABET[OsRng.gen_range(0..LINK_ID_ALPHABET.len())]))
        .collect()
}

/// A typed link id, normalised (upper case, spaces and dashes dropped);
/// `None` if it cannot be one.
fn parse_link_id(typed: &str) -> Option<String> {
    if typed.len() > MAX_LINK_CODE_LEN {
        return None;
    }
    let id: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (id.len() == LINK_ID_LEN && id.bytes().all(|b| LINK_ID_ALPHABET.contains(&b))).then_some(id)
}

fn no_such_link() -> ApiError {
    ApiError::not_found("no such device-link request, or it expired")
}

fn exact_len(field: &str, bytes: &[u8], len: usize) -> Result<(), ApiError> {
    if bytes.len() == len {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be {len} bytes"
        )))
    }
}

/// `POST /v1/link` (no session).
pub async fn start(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LinkStart>,
) -> Result<ApiJson<LinkTicket>, ApiError> {
    state
        .limiter
        .admit(Action::Link, &ip.key(), state.clock.now_ms())
        .map_err(ApiError::rate_limited)?;
    auth::check_device_name(&req.name)?;
    exact_len("signature_key", &req.signature_key, PUBLIC_KEY_LEN)?;
    exact_len("ephemeral_key", &req.ephemeral_key, PUBLIC_KEY_LEN)?;
    exact_len("mac", &req.mac, MAC_LEN)?;

    let mut secret = Zeroizing::new([0u8; POLL_SECRET_BYTES]);
    OsRng.fill_bytes(secret.as_mut());
    let now = state.now();
    let expires_at = now + LINK_LIFETIME_MS;
    let device = device_to_db(req.device_id);
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DELETE FROM link_requests WHERE expires_at <= ?")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_requests")
        .fetch_one(&mut *tx)
        .await?;
    if pending >= MAX_PENDING_LINKS {
        return Err(ApiError::unavailable(
            "too many device-link requests are waiting; try again later",
        ));
    }
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM devices WHERE id = ?1 UNION ALL \
         SELECT 1 FROM link_requests WHERE device_id = ?1",
    )
    .bind(device)
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(
            "that device id is already registered or waiting to be linked; choose another",
        ));
    }
    let mut link_id = None;
    // A collision is ~2^-39 per pending request; a few tries are plenty.
    for _ in 0..8 {
        let candidate = new_link_id();
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO link_requests (link_id, poll_hash, device_id, name, \
             signature_key, ephemeral_key, mac, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&candidate)
        .bind(sha256(secret.as_ref()))
        .bind(device)
        .bind(req.name.trim())
        .bind(&req.signature_key)
        .bind(&req.ephemeral_key)
        .bind(&req.mac)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            link_id = Some(candidate);
            break;
        }
    }
    let link_id = link_id.ok_or_else(|| ApiError::internal("no free link id after 8 tries"))?;
    tx.commit().await?;
    Ok(ApiJson(LinkTicket {
        link_id,
        poll_secret: URL_SAFE_NO_PAD.encode(secret.as_ref()),
        expires_at: u64_from_db(expires_at),
    }))
}

/// `GET /v1/link/{link_id}`: a pending request, for the approving device.
pub async fn get(
    State(state): State<AppState>,
    _auth: AuthDevice,
    Path(id): Path<String>,
) -> Result<ApiJson<LinkRequest>, ApiError> {
    let id = parse_link_id(&id).ok_or_else(no_such_link)?;
    let row = sqlx::query(
        "SELECT device_id, name, signature_key, ephemeral_key, mac, expires_at FROM link_requests \
         WHERE link_id = ? AND expires_at > ? AND approved_by IS NULL",
    )
    .bind(&id)
    .bind(state.now())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(no_such_link)?;
    let device_id =
        device_from_db(row.try_get("device_id")?).ok_or_else(|| ApiError::internal("device 0"))?;
    Ok(ApiJson(LinkRequest {
        device_id,
        name: row.try_get("name")?,
        signature_key: row.try_get("signature_key")?,
        ephemeral_key: row.try_get("ephemeral_key")?,
        mac: row.try_get("mac")?,
        expires_at: u64_from_db(row.try_get("expires_at")?),
    }))
}

/// `POST /v1/link/{link_id}/approve`: creates the device in the approver's
/// account, if its certificate verifies against the account's identity key.
pub async fn approve(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LinkApproval>,
) -> Result<StatusCode, ApiError> {
    let id = parse_link_id(&id).ok_or_else(no_such_link)?;
    exact_len("ephemeral_key", &req.ephemeral_key, PUBLIC_KEY_LEN)?;
    if req.sealed.len() > MAX_LINK_SEALED_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("sealed may be at most {MAX_LINK_SEALED_BYTES} bytes"),
        ));
    }
    let now = state.now();
    let row = sqlx::query(
        "SELECT r.device_id, r.name, r.signature_key, r.approved_by, u.identity_key \
         FROM link_requests r, users u WHERE r.link_id = ? AND r.expires_at > ? AND u.id = ?",
    )
    .bind(&id)
    .bind(now)
    .bind(auth.user_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(no_such_link)?;
    if row.try_get::<Option<i64>, _>("approved_by")?.is_some() {
        return Err(ApiError::conflict(
            "that device-link request was already approved",
        ));
    }
    let device_db: i64 = row.try_get("device_id")?;
    let device = device_from_db(device_db).ok_or_else(|| ApiError::internal("device 0"))?;
    let signature_key: Vec<u8> = row.try_get("signature_key")?;
    let name: String = row.try_get("name")?;
    auth::check_certificate(
        row.try_get::<&[u8], _>("identity_key")?,
        &auth.username,
        device,
        &signature_key,
        &req.certificate,
    )?;

    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = ? AND revoked = 0")
            .bind(auth.user_id)
            .fetch_one(&mut *tx)
            .await?;
    if live >= MAX_DEVICES_PER_USER as i64 {
        return Err(ApiError::conflict(format!(
            "an account may have at most {MAX_DEVICES_PER_USER} devices; revoke one first"
        )));
    }
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM devices WHERE id = ?")
        .bind(device_db)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ApiError::conflict("that device id is already registered"));
    }
    // Exactly the request the certificate was checked for, still pending.
    let marked = sqlx::query(
        "UPDATE link_requests SET approved_by = ?, certificate = ?, approver_ephemeral = ?, \
         sealed = ? WHERE link_id = ? AND approved_by IS NULL AND expires_at > ? \
         AND device_id = ? AND signature_key = ?",
    )
    .bind(auth.user_id)
    .bind(&req.certificate)
    .bind(&req.ephemeral_key)
    .bind(&req.sealed)
    .bind(&id)
    .bind(now)
    .bind(device_db)
    .bind(&signature_key)
    .execute(&mut *tx)
    .await?;
    if marked.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "that device-link request was already approved or has expired",
        ));
    }
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, signature_key, certificate, created_at, last_seen) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(device_db)
    .bind(auth.user_id)
    .bind(&name)
    .bind(&signature_key)
    .bind(&req.certificate)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let event = Event::new(SecurityEventKind::DeviceAdded, Some(auth.user_id), ip).device(device);
    security_events::record(&mut *tx, now, &event).await?;
    tx.commit().await?;
    tracing::info!(user = %auth.username, %device, by = %auth.device_id, "device linked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/link/{link_id}/poll` (no session): the new device collects the
/// result, once. A wrong secret counts against the address.
pub async fn poll(
    State(state): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LinkPoll>,
) -> Result<ApiJson<LinkStatus>, ApiError> {
    let secret = Zeroizing::new(req.poll_secret);
    let attempt = Attempt::address(ip);
    attempt.check(&state)?;
    let presented = (secret.len() <= MAX_LINK_CODE_LEN)
        .then(|| URL_SAFE_NO_PAD.decode(secret.as_bytes()).ok())
        .flatten()
        .map(|raw| sha256(&Zeroizing::new(raw)));
    let now = state.now();
    let row = match (parse_link_id(&id), &presented) {
        (Some(id), Some(_)) => {
            sqlx::query(
                "SELECT link_id, poll_hash, device_id, approved_by, certificate, \
                 approver_ephemeral, sealed FROM link_requests WHERE link_id = ? AND expires_at > ?",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&state.pool)
            .await?
        }
        _ => None,
    };
    let matches = match (&row, &presented) {
        (Some(row), Some(hash)) => {
            let stored: &[u8] = row.try_get("poll_hash")?;
            bool::from(stored.ct_eq(hash.as_slice()))
        }
        _ => false,
    };
    let (Some(row), true) = (row, matches) else {
        attempt.failed(&state, None).await;
        return Err(no_such_link());
    };
    let Some(user_id) = row.try_get::<Option<i64>, _>("approved_by")? else {
        return Ok(ApiJson(LinkStatus { approved: None }));
    };
    let link_id: String = row.try_get("link_id")?;
    let device_db: i64 = row.try_get("device_id")?;
    let device = device_from_db(device_db).ok_or_else(|| ApiError::internal("device 0"))?;

    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    // Handed out once: whoever deletes the row gets the session.
    let taken = sqlx::query("DELETE FROM link_requests WHERE link_id = ? AND device_id = ?")
        .bind(&link_id)
        .bind(device_db)
        .execute(&mut *tx)
        .await?;
    let account = sqlx::query(
        "SELECT u.username, u.role FROM users u JOIN devices d ON d.user_id = u.id \
         WHERE u.id = ? AND d.id = ? AND d.revoked = 0",
    )
    .bind(user_id)
    .bind(device_db)
    .fetch_optional(&mut *tx)
    .await?;
    let (1, Some(account)) = (taken.rows_affected(), account) else {
        return Err(no_such_link());
    };
    let username = Username::parse(account.try_get::<&str, _>("username")?)
        .map_err(|_| ApiError::internal("invalid username in database"))?;
    let role = auth::role_from_db(account.try_get::<&str, _>("role")?);
    let token = auth::insert_session(&mut tx, device, now).await?;
    tx.commit().await?;
    Ok(ApiJson(LinkStatus {
        approved: Some(LinkResult {
            session: SessionResponse {
                token,
                username,
                device_id: device,
                role,
            },
            certificate: row.try_get("certificate")?,
            ephemeral_key: row.try_get("approver_ephemeral")?,
            sealed: row.try_get("sealed")?,
        }),
    }))
}

/// Deletes requests past their expiry (approved or not).
pub async fn cleanup(pool: &sqlx::SqlitePool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM link_requests WHERE expires_at <= ?")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ids() {
        for _ in 0..100 {
            let id = new_link_id();
            assert_eq!(id.len(), LINK_ID_LEN);
            assert_eq!(parse_link_id(&id), Some(id.clone()));
            assert_eq!(parse_link_id(&id.to_lowercase()), Some(id.clone()));
        }
        assert_eq!(parse_link_id("abcd-efgh"), Some("ABCDEFGH".to_owned()));
        assert_eq!(parse_link_id("ABCDEFG0"), None);
        assert_eq!(parse_link_id("ABCDEFGHJ"), None);
        assert_eq!(parse_link_id(&"A".repeat(1000)), None);
    }
}
