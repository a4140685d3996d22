//! Accounts and sessions: registration (with invites, which carry the new
//! account's role), login (with the second factor), logout, and the
//! bearer-token extractor every other route uses, which also expires idle
//! sessions, refuses disabled accounts and, when the organisation requires
//! two-factor authentication, holds accounts without it to enrolling.

use crate::attempt::Attempt;
use crate::client_ip::ClientIp;
use crate::config::Registration;
use crate::db::{self, device_to_db, sha256};
use crate::error::{ApiError, ApiJson};
use crate::metrics::LoginOutcome;
use crate::password;
use crate::ratelimit::Action;
use crate::security_events::{self, Event};
use crate::state::AppState;
use crate::twofactor::{self, Factor};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use rampart_proto::api::{
    LoginRequest, NewDevice, RegisterRequest, Role, SecurityEventKind, SessionResponse, WhoAmI,
};
use rampart_proto::limits::{MAX_DEVICE_NAME_LEN, MAX_INVITE_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use rampart_proto::{DeviceId, ErrorCode, Username};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sqlx::Row as _;
use zeroize::Zeroizing;

/// Sessions touch `last_used` at most this often, so a busy client does not
/// turn every read into a write.
const TOUCH_INTERVAL_MS: i64 = 60_000;
/// Bytes of a session token (before base64url).
const TOKEN_BYTES: usize = 32;
/// Longest `Authorization` token looked at: base64url of [`TOKEN_BYTES`].
const MAX_TOKEN_CHARS: usize = 64;

/// The authenticated caller of a request: a session token of a live device.
#[derive(Clone, Debug)]
pub struct AuthDevice {
    pub user_id: i64,
    pub username: Username,
    pub device_id: DeviceId,
    pub role: Role,
    session: SessionHash,
}

/// SHA-256 of the session token this request presented.
#[derive(Clone)]
struct SessionHash(Vec<u8>);

impl std::fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHash(<redacted>)")
    }
}

impl AuthDevice {
    /// The stored hash of the session token of this request.
    pub(crate) fn session_hash(&self) -> &[u8] {
        &self.session.0
    }
}

pub fn role_from_db(s: &str) -> Role {
    match s {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        "member" => Role::Member,
        "bot" => Role::Bot,
        // Least privilege for anything unexpected.
        _ => Role::Guest,
    }
}

impl FromRequestParts<AppState> for AuthDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(ip) = ClientIp::from_request_parts(parts, state).await;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(ApiError::unauthorized)?;
        let enrolling = enrolment_route(&parts.method, parts.uri.path());
        authenticate(state, token.trim(), ip, enrolling).await
    }
}

/// What a disabled account is told, at login and for every old token.
pub(crate) const DISABLED_MESSAGE: &str =
    "this account has been disabled by an administrator; ask them to re-enable it";

fn account_disabled() -> ApiError {
    ApiError::new(ErrorCode::AccountDisabled, DISABLED_MESSAGE)
}

/// The routes open to an account that must enrol in two-factor
/// authentication before anything else.
fn enrolment_route(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(
        (method, path),
        (&Method::GET, "/v1/me")
            | (&Method::POST, "/v1/logout")
            | (&Method::GET, "/v1/2fa")
            | (&Method::POST, "/v1/2fa/setup")
            | (&Method::POST, "/v1/2fa/activate")
    )
}

fn enrolment_required() -> ApiError {
    ApiError::new(
        ErrorCode::TwoFactorEnrolmentRequired,
        "your organisation requires two-factor authentication for this account; \
         turn it on with `rampart 2fa enable` before doing anything else",
    )
}

/// The stored form of a presented token; `None` if it cannot be one of ours.
fn token_hash(token: &str) -> Option<Vec<u8>> {
    if token.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(token).ok()?);
    (raw.len() == TOKEN_BYTES).then(|| sha256(&raw))
}

/// One query per request: the session, its device and account, whether the
/// account is disabled and whether it has a second factor.
async fn authenticate(
    state: &AppState,
    token: &str,
    ip: ClientIp,
    enrolling: bool,
) -> Result<AuthDevice, ApiError> {
    let token_hash = token_hash(token).ok_or_else(ApiError::unauthorized)?;
    let row = sqlx::query(
        "SELECT s.last_used, d.id AS device_id, d.revoked, u.id AS user_id, u.username, u.role, \
         u.disabled_at, u.deleted_at, tf.secret IS NOT NULL AS two_factor \
         FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = d.user_id \
         LEFT JOIN two_factor tf ON tf.user_id = u.id \
         WHERE s.token_hash = ?",
    )
    .bind(&token_hash)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(ApiError::unauthorized)?;
    if row.try_get::<Option<i64>, _>("deleted_at")?.is_some() {
        return Err(ApiError::unauthorized());
    }
    let device_db: i64 = row.try_get("device_id")?;
    let device_id = db::device_from_db(device_db)
        .ok_or_else(|| ApiError::internal("device id 0 in database"))?;
    let user_id: i64 = row.try_get("user_id")?;
    // Before `revoked`: disabling revokes every device, and the old token
    // should hear why.
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        let event =
            Event::new(SecurityEventKind::AccessDenied, Some(user_id), ip).device(device_id);
        security_events::record_logged(state, &event).await;
        return Err(account_disabled());
    }
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(ApiError::unauthorized());
    }
    let username = Username::parse(row.try_get::<&str, _>("username")?)
        .map_err(|_| ApiError::internal("invalid username in database"))?;
    let now = state.now();
    let last_used: i64 = row.try_get("last_used")?;
    if now - last_used > state.session_idle_ms {
        let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(&token_hash)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 1 {
            let event =
                Event::new(SecurityEventKind::SessionExpired, Some(user_id), ip).device(device_id);
            security_events::record(&mut *tx, now, &event).await?;
        }
        tx.commit().await?;
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the session expired after a long time unused; log in again",
        ));
    }
    if now - last_used >= TOUCH_INTERVAL_MS {
        let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE sessions SET last_used = ? WHERE token_hash = ?")
            .bind(now)
            .bind(&token_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET last_seen = ? WHERE id = ?")
            .bind(now)
            .bind(device_db)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let role = role_from_db(row.try_get::<&str, _>("role")?);
    if !enrolling
        && !row.try_get::<bool, _>("two_factor")?
        && state.access().requires_two_factor(role)
    {
        return Err(enrolment_required());
    }
    Ok(AuthDevice {
        user_id,
        username,
        device_id,
        role,
        session: SessionHash(token_hash),
    })
}

/// A fresh bearer token: the client gets the token, the database its hash.
fn new_token() -> (String, Vec<u8>) {
    let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
    OsRng.fill_bytes(raw.as_mut());
    (URL_SAFE_NO_PAD.encode(raw.as_ref()), sha256(raw.as_ref()))
}

/// Creates a session for a device; returns its token (shown once).
pub async fn insert_session(
    conn: &mut sqlx::SqliteConnection,
    device: DeviceId,
    now: i64,
) -> Result<String, sqlx::Error> {
    let (token, hash) = new_token();
    sqlx::query(
        "INSERT INTO sessions (token_hash, device_id, created_at, last_used) VALUES (?, ?, ?, ?)",
    )
    .bind(hash)
    .bind(device_to_db(device))
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Checks a device certificate: the identity key's signature over (user,
/// device, signature key). The server refuses to create a device whose
/// certificate does not verify, though clients check it again.
pub fn check_certificate(
    identity_key: &[u8],
    username: &Username,
    device_id: DeviceId,
    signature_key: &[u8],
    certificate: &[u8],
) -> Result<(), ApiError> {
    let identity: [u8; PUBLIC_KEY_LEN] = identity_key
        .try_into()
        .map_err(|_| ApiError::bad_request("identity_key must be a 32-byte Ed25519 public key"))?;
    let identity = VerifyingKey::from_bytes(&identity)
        .map_err(|_| ApiError::bad_request("identity_key is not a valid Ed25519 public key"))?;
    if signature_key.len() != PUBLIC_KEY_LEN {
        return Err(ApiError::bad_request(
            "the device signature_key must be a 32-byte Ed25519 public key",
        ));
    }
    let signature: [u8; SIGNATURE_LEN] = certificate
        .try_into()
        .map_err(|_| ApiError::bad_request("the device certificate must be a 64-byte signature"))?;
    let message = rampart_proto::device_certificate_message(username, device_id, signature_key);
    identity
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                "the device certificate is not the identity key's signature over this device",
            )
        })
}

/// A device name as people see it: 1 to [`MAX_DEVICE_NAME_LEN`] characters.
pub fn check_device_name(name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_DEVICE_NAME_LEN || name.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "the device name must be 1 to {MAX_DEVICE_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// `POST /v1/register`.
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let password = Zeroizing::new(req.password);
    // Bad invites count against the address; registrations are throttled
    // per address whether they succeed or not.
    let attempt = Attempt::address(ip);
    attempt.check(&state)?;
    state
        .limiter
        .admit(Action::Register, &ip.key(), state.clock.now_ms())
        .map_err(ApiError::rate_limited)?;
    password::check_policy(&password, &req.username)?;
    crate::admin::check_username(&state.access(), &req.username)?;
    check_device_name(&req.device.name)?;
    check_certificate(
        &req.identity_key,
        &req.username,
        req.device.device_id,
        &req.device.signature_key,
        &req.device.certificate,
    )?;
    let invite_hash = match (state.registration, &req.invite) {
        (_, Some(code)) if code.len() > MAX_INVITE_LEN => {
            attempt.failed(&state, None).await;
            return Err(invalid_invite());
        }
        (Registration::Invite, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidInvite,
                "this server requires an invite code to register",
            ));
        }
        (Registration::Invite, Some(code)) => Some(db::invite_hash(code)),
        // Open registration ignores any invite given.
        (Registration::Open, _) => None,
    };
    let password_hash = password::hash(password).await?;

    // IMMEDIATE: take the write lock up front so the "first user is owner"
    // check and the invite consumption cannot race another registration.
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = state.now();
    let mut invited_role = None;
    if let Some(hash) = &invite_hash {
        let usable: Option<String> = sqlx::query_scalar(
            "SELECT role FROM invites WHERE code_hash = ? AND used_by IS NULL AND expires_at > ?",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = usable else {
            drop(tx);
            attempt.failed(&state, None).await;
            return Err(invalid_invite());
        };
        invited_role = Some(role_from_db(&role));
    }
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE username = ?")
        .bind(req.username.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ApiError::conflict("that username is taken"));
    }
    if crate::admin::is_tombstoned(&mut tx, &req.username).await? {
        return Err(ApiError::conflict(
            "that username belonged to a deleted account and cannot be used again",
        ));
    }
    let device_taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM devices WHERE id = ?1 UNION ALL \
         SELECT 1 FROM link_requests WHERE device_id = ?1 AND expires_at > ?2",
    )
    .bind(device_to_db(req.device.device_id))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if device_taken.is_some() {
        return Err(ApiError::conflict(
            "that device id is already registered; choose another",
        ));
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    // The first account owns the organisation; then the invite decides.
    let role = if users == 0 {
        Role::Owner
    } else {
        invited_role.unwrap_or(Role::Member)
    };
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, identity_key, role, created_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(req.username.as_str())
    .bind(&password_hash)
    .bind(&req.identity_key)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, signature_key, certificate, created_at, last_seen) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(device_to_db(req.device.device_id))
    .bind(user_id)
    .bind(req.device.name.trim())
    .bind(&req.device.signature_key)
    .bind(&req.device.certificate)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(hash) = &invite_hash {
        sqlx::query("UPDATE invites SET used_by = ? WHERE code_hash = ?")
            .bind(user_id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    for kind in [
        SecurityEventKind::Registered,
        SecurityEventKind::DeviceAdded,
    ] {
        let mut event = Event::new(kind, Some(user_id), ip).device(req.device.device_id);
        if kind == SecurityEventKind::Registered {
            event = event.detail("role", role.as_str());
        }
        security_events::record(&mut *tx, now, &event).await?;
    }
    let token = insert_session(&mut tx, req.device.device_id, now).await?;
    tx.commit().await?;
    tracing::info!(username = %req.username, device = %req.device.device_id, ?role, "registered");
    Ok(ApiJson(SessionResponse {
        token,
        username: req.username,
        device_id: req.device.device_id,
        role,
    }))
}

fn invalid_invite() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidInvite,
        "the invite code is unknown, used or expired",
    )
}

/// `POST /v1/login`. The order matters: a locked account or address is
/// refused before the password is looked at; a wrong password and an
/// unknown user get the same answer after the same work; the password alone
/// never yields a session when two-factor authentication is on.
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let password = Zeroizing::new(req.password);
    let code = req.totp.map(Zeroizing::new);
    let attempt = Attempt::account(&req.username, ip);
    attempt
        .check(&state)
        .inspect_err(|_| state.metrics.login(LoginOutcome::Locked))?;
    let row = sqlx::query(
        "SELECT id, password_hash, role, disabled_at FROM users \
         WHERE username = ? AND deleted_at IS NULL",
    )
    .bind(req.username.as_str())
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        // Same work and same answer as a wrong password: no username oracle.
        let _ = password::verify(password, state.dummy_hash.to_string()).await?;
        attempt
            .failed(&state, Some(SecurityEventKind::LoginFailed))
            .await;
        state.metrics.login(LoginOutcome::BadPassword);
        return Err(ApiError::bad_credentials());
    };
    let user_id: i64 = row.try_get("id")?;
    let attempt = attempt.user(user_id);
    if !password::verify(password, row.try_get("password_hash")?).await? {
        attempt
            .failed(&state, Some(SecurityEventKind::LoginFailed))
            .await;
        state.metrics.login(LoginOutcome::BadPassword);
        return Err(ApiError::bad_credentials());
    }
    // Only after the password: told before, anyone could learn that an
    // account exists and is disabled by asking with a wrong password.
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        let event =
            Event::new(SecurityEventKind::AccessDenied, Some(user_id), ip).device(req.device_id);
        security_events::record_logged(&state, &event).await;
        state.metrics.login(LoginOutcome::Disabled);
        return Err(account_disabled());
    }
    let role = role_from_db(row.try_get::<&str, _>("role")?);
    let two_factor = twofactor::is_enabled(&state.pool, user_id).await?;
    if two_factor && code.is_none() {
        return Err(twofactor::required());
    }
    match &req.new_device {
        Some(device) => {
            check_new_device(&state, user_id, &req.username, req.device_id, device).await?
        }
        None => {
            let live: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM devices WHERE id = ? AND user_id = ? AND revoked = 0",
            )
            .bind(device_to_db(req.device_id))
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await?;
            if live.is_none() {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "this device is not registered to this account, or was revoked; if none \
                     of your devices is left (say, an administrator re-enabled your account), \
                     sign in as a new device: `rampart login --new-device`",
                ));
            }
        }
    }
    let factor = match (&code, two_factor) {
        (Some(code), true) => match twofactor::check(&state, user_id, code, true).await? {
            Some(factor) => Some(factor),
            None => {
                attempt
                    .failed(&state, Some(SecurityEventKind::TwoFactorFailed))
                    .await;
                state.metrics.login(LoginOutcome::BadCode);
                return Err(ApiError::bad_code());
            }
        },
        // A code sent for an account without 2FA is ignored.
        _ => None,
    };
    let now = state.now();
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    if factor == Some(Factor::Recovery) {
        let event = Event::new(SecurityEventKind::RecoveryCodeUsed, Some(user_id), ip)
            .device(req.device_id);
        security_events::record(&mut *tx, now, &event).await?;
    }
    if let Some(device) = &req.new_device {
        sqlx::query(
            "INSERT INTO devices (id, user_id, name, signature_key, certificate, created_at, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(device_to_db(device.device_id))
        .bind(user_id)
        .bind(device.name.trim())
        .bind(&device.signature_key)
        .bind(&device.certificate)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let event =
            Event::new(SecurityEventKind::DeviceAdded, Some(user_id), ip).device(device.device_id);
        security_events::record(&mut *tx, now, &event).await?;
    }
    let event =
        Event::new(SecurityEventKind::LoginSucceeded, Some(user_id), ip).device(req.device_id);
    security_events::record(&mut *tx, now, &event).await?;
    let token = insert_session(&mut tx, req.device_id, now).await?;
    tx.commit().await?;
    attempt.succeeded(&state);
    state.metrics.login(LoginOutcome::Success);
    Ok(ApiJson(SessionResponse {
        token,
        username: req.username,
        device_id: req.device_id,
        role,
    }))
}

/// A login that brings its own new device (see `LoginRequest::new_device`):
/// allowed only when the account has no live device left, and only for a
/// device certified by the account's identity key, which never leaves the
/// user's profile. Otherwise a live device approves new ones (`/v1/link`).
async fn check_new_device(
    state: &AppState,
    user_id: i64,
    username: &Username,
    device_id: DeviceId,
    device: &NewDevice,
) -> Result<(), ApiError> {
    if device.device_id != device_id {
        return Err(ApiError::bad_request(
            "new_device.device_id must be the device_id being signed in",
        ));
    }
    check_device_name(&device.name)?;
    let identity_key: Vec<u8> = sqlx::query_scalar("SELECT identity_key FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_one(&state.pool)
        .await?;
    check_certificate(
        &identity_key,
        username,
        device.device_id,
        &device.signature_key,
        &device.certificate,
    )?;
    let live: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM devices WHERE user_id = ? AND revoked = 0 LIMIT 1")
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await?;
    if live.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this account still has a live device: approve the new one from it (`rampart link`)",
        ));
    }
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM devices WHERE id = ?1 UNION ALL \
         SELECT 1 FROM link_requests WHERE device_id = ?1",
    )
    .bind(device_to_db(device.device_id))
    .fetch_optional(&state.pool)
    .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(
            "that device id is already registered; choose another",
        ));
    }
    Ok(())
}

/// `POST /v1/logout`: ends the presented session (only that one).
pub async fn logout(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<StatusCode, ApiError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(auth.session_hash())
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me`.
pub async fn me(State(state): State<AppState>, auth: AuthDevice) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        username: auth.username,
        device_id: auth.device_id,
        role: auth.role,
        delivery_key: state.delivery_key.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        let (token, hash) = new_token();
        assert_eq!(token_hash(&token), Some(hash));
        assert_eq!(token_hash("bogus"), None);
        assert_eq!(token_hash(""), None);
        assert_eq!(token_hash(&"A".repeat(10_000)), None);
        // Valid base64 of the wrong length.
        assert_eq!(token_hash(&URL_SAFE_NO_PAD.encode([0u8; 16])), None);
    }
}
