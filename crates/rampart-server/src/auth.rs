//! Accounts and sessions: registration (with invites), login, logout, and the
//! bearer-token extractor every other route uses.

use crate::config::Registration;
use crate::db::{self, device_to_db, now_ms, sha256};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use rampart_proto::api::{LoginRequest, RegisterRequest, Role, SessionResponse, WhoAmI};
use rampart_proto::limits::{
    MAX_DEVICE_NAME_LEN, MAX_INVITE_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
};
use rampart_proto::{DeviceId, ErrorCode, Username};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sqlx::Row as _;
use zeroize::Zeroizing;

/// Sessions touch `last_used` at most this often, so a busy client does not
/// turn every read into a write.
const TOUCH_INTERVAL_MS: i64 = 60_000;
const BAD_CREDENTIALS: &str = "username or password is wrong";

/// The authenticated caller of a request: a session token of a live device.
#[derive(Clone, Debug)]
pub struct AuthDevice {
    pub user_id: i64,
    pub username: Username,
    pub device_id: DeviceId,
    pub role: Role,
}

pub fn role_to_db(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn role_from_db(s: &str) -> Role {
    match s {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        // Least privilege for anything unexpected.
        _ => Role::Member,
    }
}

impl FromRequestParts<AppState> for AuthDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(ApiError::unauthorized)?;
        authenticate(state, token.trim()).await
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<AuthDevice, ApiError> {
    let raw = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| ApiError::unauthorized())?,
    );
    let token_hash = sha256(&raw);
    let row = sqlx::query(
        "SELECT s.last_used, d.id AS device_id, d.revoked, u.id AS user_id, u.username, u.role \
         FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = d.user_id \
         WHERE s.token_hash = ?",
    )
    .bind(&token_hash)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(ApiError::unauthorized)?;
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(ApiError::unauthorized());
    }
    let device_db: i64 = row.try_get("device_id")?;
    let device_id = db::device_from_db(device_db)
        .ok_or_else(|| ApiError::internal("device id 0 in database"))?;
    let username = Username::parse(row.try_get::<&str, _>("username")?)
        .map_err(|_| ApiError::internal("invalid username in database"))?;
    let now = now_ms();
    if now - row.try_get::<i64, _>("last_used")? >= TOUCH_INTERVAL_MS {
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
    Ok(AuthDevice {
        user_id: row.try_get("user_id")?,
        username,
        device_id,
        role: role_from_db(row.try_get::<&str, _>("role")?),
    })
}

/// Argon2id with the OWASP minimum: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(19_456, 2, 1, None).map_err(ApiError::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the blocking pool: Argon2 takes tens of milliseconds of CPU.
pub async fn hash_password(password: Zeroizing<String>) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

async fn verify_password(password: Zeroizing<String>, phc: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(ApiError::internal)?;
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
}

/// A hash of a random password, verified against when the username is
/// unknown so that both failures take the same time.
pub async fn dummy_hash() -> Result<String, ApiError> {
    let mut random = [0u8; 24];
    OsRng.fill_bytes(&mut random);
    hash_password(Zeroizing::new(hex::encode(random))).await
}

/// A fresh bearer token: the client gets the token, the database its hash.
fn new_token() -> (String, Vec<u8>) {
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(raw.as_mut());
    (URL_SAFE_NO_PAD.encode(raw.as_ref()), sha256(raw.as_ref()))
}

async fn insert_session(
    conn: &mut sqlx::SqliteConnection,
    device: DeviceId,
) -> Result<String, sqlx::Error> {
    let (token, hash) = new_token();
    let now = now_ms();
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

fn check_password_len(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::new(
            ErrorCode::WeakPassword,
            format!("passwords are {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"),
        ));
    }
    Ok(())
}

/// Checks the device certificate: the identity key's signature over
/// (user, device, signature key). The server refuses to publish a device
/// whose certificate does not verify, though clients check it again.
fn check_certificate(req: &RegisterRequest) -> Result<(), ApiError> {
    let identity: [u8; PUBLIC_KEY_LEN] =
        req.identity_key.as_slice().try_into().map_err(|_| {
            ApiError::bad_request("identity_key must be a 32-byte Ed25519 public key")
        })?;
    let identity = VerifyingKey::from_bytes(&identity)
        .map_err(|_| ApiError::bad_request("identity_key is not a valid Ed25519 public key"))?;
    if req.device.signature_key.len() != PUBLIC_KEY_LEN {
        return Err(ApiError::bad_request(
            "device.signature_key must be a 32-byte Ed25519 public key",
        ));
    }
    let signature: [u8; SIGNATURE_LEN] = req
        .device
        .certificate
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request("device.certificate must be a 64-byte signature"))?;
    let message = rampart_proto::device_certificate_message(
        &req.username,
        req.device.device_id,
        &req.device.signature_key,
    );
    identity
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                "device.certificate is not the identity key's signature over this device",
            )
        })
}

/// `POST /v1/register`.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let password = Zeroizing::new(req.password.clone());
    check_password_len(&password)?;
    if req.device.name.chars().count() > MAX_DEVICE_NAME_LEN || req.device.name.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "device.name must be 1 to {MAX_DEVICE_NAME_LEN} characters"
        )));
    }
    check_certificate(&req)?;
    let invite_hash = match (state.registration, &req.invite) {
        (_, Some(code)) if code.len() > MAX_INVITE_LEN => return Err(invalid_invite()),
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
    let password_hash = hash_password(password).await?;

    // IMMEDIATE: take the write lock up front so the "first user is owner"
    // check and the invite consumption cannot race another registration.
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = now_ms();
    if let Some(hash) = &invite_hash {
        let usable: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM invites WHERE code_hash = ? AND used_by IS NULL AND expires_at > ?",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if usable.is_none() {
            return Err(invalid_invite());
        }
    }
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE username = ?")
        .bind(req.username.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ApiError::new(ErrorCode::Conflict, "that username is taken"));
    }
    let device_taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM devices WHERE id = ?")
        .bind(device_to_db(req.device.device_id))
        .fetch_optional(&mut *tx)
        .await?;
    if device_taken.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "that device id is already registered; choose another",
        ));
    }
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    let role = if users == 0 {
        Role::Owner
    } else {
        Role::Member
    };
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, identity_key, role, created_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(req.username.as_str())
    .bind(&password_hash)
    .bind(&req.identity_key)
    .bind(role_to_db(role))
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
    let token = insert_session(&mut tx, req.device.device_id).await?;
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

/// `POST /v1/login`.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let password = Zeroizing::new(req.password.clone());
    let row = sqlx::query("SELECT id, password_hash, role FROM users WHERE username = ?")
        .bind(req.username.as_str())
        .fetch_optional(&state.pool)
        .await?;
    let Some(row) = row else {
        // Same work and same answer as a wrong password: no username oracle.
        let _ = verify_password(password, state.dummy_hash.to_string()).await?;
        return Err(ApiError::new(ErrorCode::BadCredentials, BAD_CREDENTIALS));
    };
    if password.len() > MAX_PASSWORD_LEN
        || !verify_password(password, row.try_get("password_hash")?).await?
    {
        return Err(ApiError::new(ErrorCode::BadCredentials, BAD_CREDENTIALS));
    }
    let user_id: i64 = row.try_get("id")?;
    let role = role_from_db(row.try_get::<&str, _>("role")?);
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let live: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM devices WHERE id = ? AND user_id = ? AND revoked = 0")
            .bind(device_to_db(req.device_id))
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if live.is_none() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this device is not registered to this account, or was revoked",
        ));
    }
    let token = insert_session(&mut tx, req.device_id).await?;
    tx.commit().await?;
    Ok(ApiJson(SessionResponse {
        token,
        username: req.username,
        device_id: req.device_id,
        role,
    }))
}

/// `POST /v1/logout`: ends the presented session (only that one).
pub async fn logout(
    State(state): State<AppState>,
    _auth: AuthDevice,
    parts: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = parts
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let raw = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| ApiError::unauthorized())?,
    );
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(sha256(&raw))
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me`.
pub async fn me(auth: AuthDevice) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        username: auth.username,
        device_id: auth.device_id,
        role: auth.role,
    })
}
