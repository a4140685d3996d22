//! Passwords: the policy new ones must meet (length, not the username, not
//! in the bundled list of leaked passwords), Argon2id hashing, and
//! `POST /v1/password`.

use crate::attempt::Attempt;
use crate::auth::AuthDevice;
use crate::client_ip::ClientIp;
use crate::db::device_to_db;
use crate::error::{ApiError, ApiJson};
use crate::security_events::{self, Event};
use crate::state::AppState;
use crate::twofactor::{self, Factor};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::State;
use axum::http::StatusCode;
use rampart_proto::api::{PasswordChange, SecurityEventKind};
use rampart_proto::limits::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use rampart_proto::{DeviceId, ErrorCode, Username};
use rand::RngCore as _;
use rand::rngs::OsRng;
use std::borrow::Cow;
use std::sync::LazyLock;
use zeroize::Zeroizing;

/// Lower-cased leaked passwords of 12 to 64 characters (see `data/README.md`).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// The list, lower-cased and sorted once, for binary search.
static COMMON: LazyLock<Vec<Cow<'static, str>>> = LazyLock::new(|| {
    let mut list: Vec<Cow<'static, str>> = COMMON_PASSWORDS
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let lower = l.to_lowercase();
            if lower == l {
                Cow::Borrowed(l)
            } else {
                Cow::Owned(lower)
            }
        })
        .collect();
    list.sort_unstable();
    list.dedup();
    list
});

fn weak(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::WeakPassword, message)
}

/// Whether the password is in the bundled list (case-insensitively).
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON
        .binary_search_by(|entry| entry.as_ref().cmp(lower.as_str()))
        .is_ok()
}

/// The rules for a new password. Each refusal says what to do instead.
pub fn check_policy(password: &str, username: &Username) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(weak(format!(
            "use at least {MIN_PASSWORD_LEN} characters; a few unrelated words make a \
             strong password that is easy to remember"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(weak(format!(
            "use at most {MAX_PASSWORD_LEN} bytes of password"
        )));
    }
    if password.to_lowercase().contains(username.as_str()) {
        return Err(weak(
            "the password must not contain the username; choose one that does not",
        ));
    }
    if is_common(password) {
        return Err(weak(
            "this password is in lists of leaked passwords that attackers try first; \
             choose another, for example a few unrelated words",
        ));
    }
    Ok(())
}

/// Argon2id with the OWASP minimum: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(19_456, 2, 1, None).map_err(ApiError::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the blocking pool: Argon2 takes tens of milliseconds of CPU.
pub async fn hash(password: Zeroizing<String>) -> Result<String, ApiError> {
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

/// Checks a password against a stored hash (on the blocking pool). A
/// password longer than the maximum is simply wrong, without hashing it.
pub async fn verify(password: Zeroizing<String>, phc: String) -> Result<bool, ApiError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
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
    hash(Zeroizing::new(hex::encode(random))).await
}

/// The stored hash of an account's password.
pub async fn stored_hash(state: &AppState, user_id: i64) -> Result<String, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_one(&state.pool)
            .await?,
    )
}

/// Checks the password of the signed-in account (for routes that want it
/// typed again), counting a wrong one like a failed login.
pub async fn reverify(
    state: &AppState,
    auth: &AuthDevice,
    attempt: &Attempt,
    password: &str,
) -> Result<(), ApiError> {
    let phc = stored_hash(state, auth.user_id).await?;
    if verify(Zeroizing::new(password.to_owned()), phc).await? {
        Ok(())
    } else {
        attempt
            .failed(state, Some(SecurityEventKind::LoginFailed))
            .await;
        Err(ApiError::new(
            ErrorCode::BadCredentials,
            "the password is wrong",
        ))
    }
}

/// `POST /v1/password`: needs the current password and, with two-factor
/// authentication on, a code. Replaces the hash and ends every other
/// session of the account; the calling session stays.
pub async fn change(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    // Moved, not copied, so that the buffers are wiped on drop.
    let old = Zeroizing::new(req.old_password);
    let new = Zeroizing::new(req.new_password);
    let totp = req.totp.map(Zeroizing::new);
    let attempt = Attempt::account(&auth.username, ip).user(auth.user_id);
    attempt.check(&state)?;
    check_policy(&new, &auth.username)?;
    reverify(&state, &auth, &attempt, &old).await?;
    let used = if twofactor::is_enabled(&state.pool, auth.user_id).await? {
        let Some(code) = totp else {
            return Err(twofactor::required());
        };
        match twofactor::check(&state, auth.user_id, &code, true).await? {
            Some(factor) => Some(factor),
            None => {
                attempt
                    .failed(&state, Some(SecurityEventKind::TwoFactorFailed))
                    .await;
                return Err(ApiError::bad_code());
            }
        }
    } else {
        None
    };
    let new_hash = hash(new).await?;

    let now = state.now();
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(&new_hash)
        .bind(auth.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM sessions WHERE token_hash != ? AND device_id IN \
         (SELECT id FROM devices WHERE user_id = ?)",
    )
    .bind(auth.session_hash())
    .bind(auth.user_id)
    .execute(&mut *tx)
    .await?;
    if used == Some(Factor::Recovery) {
        let event = Event::new(SecurityEventKind::RecoveryCodeUsed, Some(auth.user_id), ip)
            .device(auth.device_id);
        security_events::record(&mut *tx, now, &event).await?;
    }
    let event = Event::new(SecurityEventKind::PasswordChanged, Some(auth.user_id), ip)
        .device(auth.device_id);
    security_events::record(&mut *tx, now, &event).await?;
    let others: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM devices WHERE user_id = ? AND id != ?")
            .bind(auth.user_id)
            .bind(device_to_db(auth.device_id))
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    attempt.succeeded(&state);
    // Their sessions are gone; so must be the sockets they opened with them.
    let others: Vec<DeviceId> = others
        .into_iter()
        .filter_map(crate::db::device_from_db)
        .collect();
    state
        .delivery
        .kick(others, "the account's password was changed; log in again")
        .await;
    tracing::info!(user = %auth.username, "password changed; other sessions ended");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Username {
        Username::parse("alice").unwrap()
    }

    #[test]
    fn list_is_loaded_and_case_insensitive() {
        assert!(COMMON.len() > 40_000);
        let sample = COMMON[COMMON.len() / 2].to_string();
        assert!(is_common(&sample));
        assert!(is_common(&sample.to_uppercase()) || sample.to_uppercase() == sample);
        assert!(!is_common("correct horse battery staple zebra"));
    }

    #[test]
    fn policy() {
        let code = |p: &str| check_policy(p, &alice()).err().map(|e| e.code);
        assert_eq!(code("short pass"), Some(ErrorCode::WeakPassword));
        assert_eq!(code("AliceInWonderland"), Some(ErrorCode::WeakPassword));
        assert_eq!(code("alice"), Some(ErrorCode::WeakPassword));
        let common = COMMON
            .iter()
            .find(|p| p.chars().count() >= 12 && !p.contains("alice"))
            .unwrap()
            .to_string();
        assert_eq!(code(&common), Some(ErrorCode::WeakPassword));
        assert_eq!(
            code(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Some(ErrorCode::WeakPassword)
        );
        assert_eq!(code("correct horse battery"), None);
        // Twelve characters, not bytes.
        assert_eq!(code("ééééééééééé"), Some(ErrorCode::WeakPassword));
        assert_eq!(code("éééééébéééééé"), None);
    }
}
