//! MLS KeyPackages: devices upload a batch plus one last-resort package; a
//! claim hands out one per device and deletes it (the last-resort one is kept,
//! and only handed out when nothing else is left).

use crate::auth::AuthDevice;
use crate::db::{device_from_db, device_to_db};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::State;
use openmls::prelude::KeyPackageIn;
use openmls::prelude::tls_codec::Deserialize as _;
use rampart_proto::api::{
    ClaimRequest, ClaimResponse, ClaimedKeyPackage, ClaimedUser, KeyPackageCount, UploadKeyPackages,
};
use rampart_proto::limits::{
    MAX_CLAIM_USERS, MAX_DEVICES_PER_USER, MAX_KEY_PACKAGE_BYTES, MAX_KEY_PACKAGES_PER_UPLOAD,
    MAX_KEY_PACKAGES_STORED,
};
use rampart_proto::{DeviceId, ErrorCode};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection};
use std::collections::HashSet;

/// Devices one claim may name (every device of every named user).
const MAX_CLAIM_DEVICES: usize = MAX_CLAIM_USERS * MAX_DEVICES_PER_USER;

/// Refuses anything that is not one well-formed, size-capped KeyPackage.
/// The server cannot check more than the framing: the signature is checked by
/// whoever claims it.
fn check_key_package(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.len() > MAX_KEY_PACKAGE_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("a KeyPackage may be at most {MAX_KEY_PACKAGE_BYTES} bytes"),
        ));
    }
    KeyPackageIn::tls_deserialize_exact(bytes)
        .map(drop)
        .map_err(|_| ApiError::new(ErrorCode::MalformedMls, "a KeyPackage could not be parsed"))
}

async fn count(conn: &mut SqliteConnection, device: DeviceId) -> Result<KeyPackageCount, ApiError> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(last_resort = 0), 0) AS normal, COALESCE(SUM(last_resort = 1), 0) AS lr \
         FROM key_packages WHERE device_id = ?",
    )
    .bind(device_to_db(device))
    .fetch_one(conn)
    .await?;
    Ok(KeyPackageCount {
        count: u32::try_from(row.try_get::<i64, _>("normal")?).unwrap_or(u32::MAX),
        has_last_resort: row.try_get::<i64, _>("lr")? > 0,
    })
}

/// `POST /v1/key-packages`.
pub async fn upload(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(req): ApiJson<UploadKeyPackages>,
) -> Result<ApiJson<KeyPackageCount>, ApiError> {
    if req.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_KEY_PACKAGES_PER_UPLOAD} KeyPackages per upload"),
        ));
    }
    for kp in req.key_packages.iter().chain(req.last_resort.iter()) {
        check_key_package(kp)?;
    }
    let device = device_to_db(auth.device_id);
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let stored = count(&mut tx, auth.device_id).await?.count as usize;
    if stored + req.key_packages.len() > MAX_KEY_PACKAGES_STORED {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "a device may keep at most {MAX_KEY_PACKAGES_STORED} KeyPackages on the server ({stored} stored)"
            ),
        ));
    }
    if !req.key_packages.is_empty() {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO key_packages (device_id, data, last_resort) ");
        q.push_values(req.key_packages, |mut b, kp| {
            b.push_bind(device).push_bind(kp).push_bind(0i64);
        });
        q.build().execute(&mut *tx).await?;
    }
    if let Some(kp) = req.last_resort {
        sqlx::query("DELETE FROM key_packages WHERE device_id = ? AND last_resort = 1")
            .bind(device)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO key_packages (device_id, data, last_resort) VALUES (?, ?, 1)")
            .bind(device)
            .bind(kp)
            .execute(&mut *tx)
            .await?;
    }
    let counted = count(&mut tx, auth.device_id).await?;
    tx.commit().await?;
    Ok(ApiJson(counted))
}

/// `GET /v1/key-packages/count`.
pub async fn get_count(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<KeyPackageCount>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(ApiJson(count(&mut conn, auth.device_id).await?))
}

/// `POST /v1/key-packages/claim`.
pub async fn claim(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<ApiJson<ClaimResponse>, ApiError> {
    if req.users.len() > MAX_CLAIM_USERS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_CLAIM_USERS} users per claim"),
        ));
    }
    if req
        .devices
        .as_ref()
        .is_some_and(|d| d.len() > MAX_CLAIM_DEVICES)
    {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_CLAIM_DEVICES} devices per claim"),
        ));
    }
    // When devices are named, only those (of the named users) are claimed.
    let only: Option<HashSet<i64>> = req
        .devices
        .map(|devices| devices.into_iter().map(device_to_db).collect());
    // One write transaction: a package handed out is deleted in the same
    // step, so two claimers can never receive the same one.
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut users = Vec::with_capacity(req.users.len());
    for username in req.users {
        let user = sqlx::query("SELECT id, identity_key FROM users WHERE username = ?")
            .bind(username.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("no user named {username}"))
            })?;
        let devices: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE user_id = ? AND revoked = 0 AND id != ? ORDER BY id",
        )
        .bind(user.try_get::<i64, _>("id")?)
        .bind(device_to_db(auth.device_id))
        .fetch_all(&mut *tx)
        .await?;
        let mut key_packages = Vec::with_capacity(devices.len());
        for device in devices {
            if only.as_ref().is_some_and(|only| !only.contains(&device)) {
                continue;
            }
            let Some(device_id) = device_from_db(device) else {
                continue;
            };
            if let Some(key_package) = take_one(&mut tx, device).await? {
                key_packages.push(ClaimedKeyPackage {
                    device_id,
                    key_package,
                });
            }
        }
        users.push(ClaimedUser {
            username,
            identity_key: user.try_get("identity_key")?,
            key_packages,
        });
    }
    tx.commit().await?;
    Ok(ApiJson(ClaimResponse { users }))
}

/// The oldest normal package (deleted), else the last-resort one (kept).
async fn take_one(
    conn: &mut SqliteConnection,
    device: i64,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let normal: Option<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM key_packages WHERE id = \
         (SELECT id FROM key_packages WHERE device_id = ? AND last_resort = 0 ORDER BY id LIMIT 1) \
         RETURNING data",
    )
    .bind(device)
    .fetch_optional(&mut *conn)
    .await?;
    if normal.is_some() {
        return Ok(normal);
    }
    sqlx::query_scalar("SELECT data FROM key_packages WHERE device_id = ? AND last_resort = 1")
        .bind(device)
        .fetch_optional(conn)
        .await
}
