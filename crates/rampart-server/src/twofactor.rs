//! Two-factor authentication: TOTP enrolment (setup, then activation with a
//! first code), disabling, single-use recovery codes, and the check that
//! login and the other sensitive routes share.
//!
//! TOTP secrets are stored encrypted with the server key
//! ([`crate::secrets`]); recovery codes only as an HMAC. Each TOTP step is
//! accepted once per account: the last accepted step is stored and only
//! later steps pass, so a code seen over a shoulder cannot be used again.

use crate::attempt::Attempt;
use crate::auth::AuthDevice;
use crate::client_ip::ClientIp;
use crate::db::{u64_from_db, u64_to_db};
use crate::error::{ApiError, ApiJson};
use crate::password;
use crate::security_events::{self, Event};
use crate::state::AppState;
use crate::totp;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_proto::ErrorCode;
use rampart_proto::api::{
    RecoveryCodes, SecurityEventKind, TotpCode, TotpDisable, TotpSetup, TotpSetupRequest,
    TwoFactorStatus,
};
use rampart_proto::limits::MAX_TOTP_INPUT_LEN;
use rand::RngCore as _;
use rand::rngs::OsRng;
use sqlx::{Row as _, SqliteConnection, SqlitePool};
use zeroize::Zeroizing;

/// Recovery codes handed out at once.
pub const RECOVERY_CODES: usize = 10;
/// Lower-case RFC 4648 base32: 5 bits per character, no look-alike digits.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters per half of a recovery code (`xxxxx-xxxxx`: 50 bits).
const RECOVERY_HALF: usize = 5;

/// Which second factor a check accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    Totp,
    Recovery,
}

/// The password was right but a second factor is needed too.
pub fn required() -> ApiError {
    ApiError::new(
        ErrorCode::TwoFactorRequired,
        "this account uses two-factor authentication: send the current code from your \
         authenticator app, or one of your recovery codes",
    )
}

fn already_enabled() -> ApiError {
    ApiError::conflict(
        "two-factor authentication is already on; disable it first to enrol another authenticator",
    )
}

fn not_enabled() -> ApiError {
    ApiError::bad_request("two-factor authentication is not on for this account")
}

/// Whether the account has an active TOTP secret.
pub async fn is_enabled(pool: &SqlitePool, user_id: i64) -> Result<bool, ApiError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM two_factor WHERE user_id = ? AND secret IS NOT NULL")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// Recovery codes are compared in this form: lower case, no spaces or dashes.
pub fn normalise_recovery(input: &str) -> Zeroizing<String> {
    Zeroizing::new(
        input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

fn new_recovery_code() -> Zeroizing<String> {
    let mut random = Zeroizing::new([0u8; 2 * RECOVERY_HALF]);
    OsRng.fill_bytes(random.as_mut());
    let mut code = Zeroizing::new(String::with_capacity(2 * RECOVERY_HALF + 1));
    for (i, b) in random.iter().enumerate() {
        if i == RECOVERY_HALF {
            code.push('-');
        }
        // 256 is a multiple of 32: no bias.
        code.push(char::from(RECOVERY_ALPHABET[usize::from(b & 31)]));
    }
    code
}

/// Replaces all of an account's recovery codes with new ones; returns them
/// (the only time they exist in clear).
async fn replace_recovery_codes(
    conn: &mut SqliteConnection,
    state: &AppState,
    user_id: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let code = new_recovery_code();
        let hash = state.key.recovery_hash(&normalise_recovery(&code));
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)",
        )
        .bind(user_id)
        .bind(hash)
        .bind(state.now())
        .execute(&mut *conn)
        .await?;
        // A collision (2^-50) is simply skipped.
        if inserted.rows_affected() == 1 {
            codes.push(code.to_string());
        }
    }
    Ok(codes)
}

/// Checks a second factor of an account with two-factor authentication on,
/// and uses it up: a TOTP step is recorded as the last accepted one, a
/// recovery code is deleted. Six digits are a TOTP code; anything else is a
/// recovery code (if `allow_recovery`). `None`: wrong, expired or used.
pub async fn check(
    state: &AppState,
    user_id: i64,
    input: &str,
    allow_recovery: bool,
) -> Result<Option<Factor>, ApiError> {
    if input.len() > MAX_TOTP_INPUT_LEN || input.trim().is_empty() {
        return Ok(None);
    }
    if totp::looks_like_code(input) {
        let row = sqlx::query(
            "SELECT secret, last_step FROM two_factor WHERE user_id = ? AND secret IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(&state.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: Vec<u8> = row.try_get("secret")?;
        let last = row.try_get::<Option<i64>, _>("last_step")?.map(u64_from_db);
        let secret = state
            .key
            .open_totp(user_id, &sealed)
            .map_err(ApiError::internal)?;
        let Some(step) = totp::verify(&secret, state.clock.unix_secs(), input, last) else {
            return Ok(None);
        };
        // Compare-and-set: of two requests racing with one code, one wins.
        let step = u64_to_db(step);
        let updated = sqlx::query(
            "UPDATE two_factor SET last_step = ? \
             WHERE user_id = ? AND (last_step IS NULL OR last_step < ?)",
        )
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&state.pool)
        .await?;
        Ok((updated.rows_affected() == 1).then_some(Factor::Totp))
    } else if allow_recovery {
        let hash = state.key.recovery_hash(&normalise_recovery(input));
        let deleted = sqlx::query("DELETE FROM recovery_codes WHERE user_id = ? AND code_hash = ?")
            .bind(user_id)
            .bind(hash)
            .execute(&state.pool)
            .await?;
        Ok((deleted.rows_affected() == 1).then_some(Factor::Recovery))
    } else {
        Ok(None)
    }
}

/// `GET /v1/2fa`.
pub async fn status(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<TwoFactorStatus>, ApiError> {
    let enabled = is_enabled(&state.pool, auth.user_id).await?;
    let left: i64 = if enabled {
        sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?")
            .bind(auth.user_id)
            .fetch_one(&state.pool)
            .await?
    } else {
        0
    };
    Ok(ApiJson(TwoFactorStatus {
        enabled,
        recovery_codes_left: u32::try_from(left).unwrap_or(0),
    }))
}

/// `POST /v1/2fa/setup`: a new secret, pending until activated. Replaces
/// any earlier pending one.
pub async fn setup(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    ApiJson(req): ApiJson<TotpSetupRequest>,
) -> Result<ApiJson<TotpSetup>, ApiError> {
    let attempt = Attempt::account(&auth.username, ip).user(auth.user_id);
    attempt.check(&state)?;
    if is_enabled(&state.pool, auth.user_id).await? {
        return Err(already_enabled());
    }
    password::reverify(&state, &auth, &attempt, &Zeroizing::new(req.password)).await?;
    attempt.succeeded(&state);

    let mut secret = Zeroizing::new([0u8; totp::SECRET_LEN]);
    OsRng.fill_bytes(secret.as_mut());
    let sealed = state
        .key
        .seal_totp(auth.user_id, secret.as_ref())
        .map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO two_factor (user_id, pending_secret) VALUES (?, ?) \
         ON CONFLICT(user_id) DO UPDATE SET pending_secret = excluded.pending_secret",
    )
    .bind(auth.user_id)
    .bind(sealed)
    .execute(&state.pool)
    .await?;
    let encoded = totp::base32_encode(secret.as_ref());
    Ok(ApiJson(TotpSetup {
        otpauth_uri: totp::otpauth_uri(auth.username.as_str(), &encoded),
        secret: encoded,
    }))
}

/// `POST /v1/2fa/activate`: a code from the pending secret turns it on and
/// yields fresh recovery codes.
pub async fn activate(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    ApiJson(req): ApiJson<TotpCode>,
) -> Result<ApiJson<RecoveryCodes>, ApiError> {
    let code = Zeroizing::new(req.code);
    let attempt = Attempt::account(&auth.username, ip).user(auth.user_id);
    attempt.check(&state)?;
    let row = sqlx::query("SELECT secret, pending_secret FROM two_factor WHERE user_id = ?")
        .bind(auth.user_id)
        .fetch_optional(&state.pool)
        .await?;
    let pending: Option<Vec<u8>> = match &row {
        Some(row) if row.try_get::<Option<Vec<u8>>, _>("secret")?.is_some() => {
            return Err(already_enabled());
        }
        Some(row) => row.try_get("pending_secret")?,
        None => None,
    };
    let Some(pending) = pending else {
        return Err(ApiError::bad_request(
            "no enrolment in progress; start with POST /v1/2fa/setup",
        ));
    };
    let secret = state
        .key
        .open_totp(auth.user_id, &pending)
        .map_err(ApiError::internal)?;
    let step = if code.len() <= MAX_TOTP_INPUT_LEN {
        totp::verify(&secret, state.clock.unix_secs(), &code, None)
    } else {
        None
    };
    let Some(step) = step else {
        attempt
            .failed(&state, Some(SecurityEventKind::TwoFactorFailed))
            .await;
        return Err(ApiError::bad_code());
    };

    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    // Only the secret this code was checked against: a setup in between
    // replaced it, and then the user must use the newer one.
    let activated = sqlx::query(
        "UPDATE two_factor SET secret = pending_secret, pending_secret = NULL, \
         last_step = ?, enabled_at = ? WHERE user_id = ? AND pending_secret = ? AND secret IS NULL",
    )
    .bind(u64_to_db(step))
    .bind(state.now())
    .bind(auth.user_id)
    .bind(&pending)
    .execute(&mut *tx)
    .await?;
    if activated.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "enrolment was restarted meanwhile; use the newest secret",
        ));
    }
    let codes = replace_recovery_codes(&mut tx, &state, auth.user_id).await?;
    let event = Event::new(SecurityEventKind::TwoFactorEnabled, Some(auth.user_id), ip)
        .device(auth.device_id);
    security_events::record(&mut *tx, state.now(), &event).await?;
    tx.commit().await?;
    attempt.succeeded(&state);
    tracing::info!(user = %auth.username, "two-factor authentication enabled");
    Ok(ApiJson(RecoveryCodes { codes }))
}

/// `POST /v1/2fa/disable`: needs the password and a code (TOTP or recovery).
pub async fn disable(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    ApiJson(req): ApiJson<TotpDisable>,
) -> Result<StatusCode, ApiError> {
    let password = Zeroizing::new(req.password);
    let code = Zeroizing::new(req.code);
    let attempt = Attempt::account(&auth.username, ip).user(auth.user_id);
    attempt.check(&state)?;
    if !is_enabled(&state.pool, auth.user_id).await? {
        return Err(not_enabled());
    }
    password::reverify(&state, &auth, &attempt, &password).await?;
    let Some(factor) = check(&state, auth.user_id, &code, true).await? else {
        attempt
            .failed(&state, Some(SecurityEventKind::TwoFactorFailed))
            .await;
        return Err(ApiError::bad_code());
    };
    let now = state.now();
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DELETE FROM two_factor WHERE user_id = ?")
        .bind(auth.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
        .bind(auth.user_id)
        .execute(&mut *tx)
        .await?;
    if factor == Factor::Recovery {
        let event = Event::new(SecurityEventKind::RecoveryCodeUsed, Some(auth.user_id), ip)
            .device(auth.device_id);
        security_events::record(&mut *tx, now, &event).await?;
    }
    let event = Event::new(SecurityEventKind::TwoFactorDisabled, Some(auth.user_id), ip)
        .device(auth.device_id);
    security_events::record(&mut *tx, now, &event).await?;
    tx.commit().await?;
    attempt.succeeded(&state);
    tracing::info!(user = %auth.username, "two-factor authentication disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/2fa/recovery-codes`: a current TOTP code replaces every
/// recovery code with new ones.
pub async fn regenerate(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    ApiJson(req): ApiJson<TotpCode>,
) -> Result<ApiJson<RecoveryCodes>, ApiError> {
    let code = Zeroizing::new(req.code);
    let attempt = Attempt::account(&auth.username, ip).user(auth.user_id);
    attempt.check(&state)?;
    if !is_enabled(&state.pool, auth.user_id).await? {
        return Err(not_enabled());
    }
    if check(&state, auth.user_id, &code, false).await?.is_none() {
        attempt
            .failed(&state, Some(SecurityEventKind::TwoFactorFailed))
            .await;
        return Err(ApiError::bad_code());
    }
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let codes = replace_recovery_codes(&mut tx, &state, auth.user_id).await?;
    let event = Event::new(
        SecurityEventKind::RecoveryCodesRegenerated,
        Some(auth.user_id),
        ip,
    )
    .device(auth.device_id);
    security_events::record(&mut *tx, state.now(), &event).await?;
    tx.commit().await?;
    attempt.succeeded(&state);
    Ok(ApiJson(RecoveryCodes { codes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_code_shape() {
        for _ in 0..100 {
            let code = new_recovery_code();
            assert_eq!(code.len(), 11);
            assert_eq!(code.as_bytes()[5], b'-');
            assert!(
                code.chars()
                    .filter(|c| *c != '-')
                    .all(|c| RECOVERY_ALPHABET.contains(&(c as u8)))
            );
            assert!(!totp::looks_like_code(&code));
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_recovery(" ABcde-fGh2j ").as_str(), "abcdefgh2j");
        assert_eq!(normalise_recovery("abcde fgh2j").as_str(), "abcdefgh2j");
    }
}
