//! The user directory: identity keys and published devices. Any signed-in
//! user may read it; clients verify every device certificate themselves.

use crate::auth::AuthDevice;
use crate::db::{device_from_db, u64_from_db};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use rampart_proto::api::{DeviceInfo, UserInfo};
use rampart_proto::{ErrorCode, Username};
use sqlx::Row as _;

/// `GET /v1/users/{username}`.
pub async fn user(
    State(state): State<AppState>,
    _auth: AuthDevice,
    Path(name): Path<String>,
) -> Result<ApiJson<UserInfo>, ApiError> {
    let username = Username::parse(&name)
        .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?;
    let user = sqlx::query("SELECT id, identity_key FROM users WHERE username = ?")
        .bind(username.as_str())
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no user named {username}")))?;
    let rows = sqlx::query(
        "SELECT id, name, signature_key, certificate, created_at FROM devices \
         WHERE user_id = ? AND revoked = 0 ORDER BY created_at, id",
    )
    .bind(user.try_get::<i64, _>("id")?)
    .fetch_all(&state.pool)
    .await?;
    let mut devices = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(device_id) = device_from_db(row.try_get("id")?) else {
            continue;
        };
        devices.push(DeviceInfo {
            device_id,
            name: row.try_get("name")?,
            signature_key: row.try_get("signature_key")?,
            certificate: row.try_get("certificate")?,
            created_at: u64_from_db(row.try_get("created_at")?),
        });
    }
    Ok(ApiJson(UserInfo {
        username,
        identity_key: user.try_get("identity_key")?,
        devices,
    }))
}
