//! The caller's own devices: listing them, and revoking one (a lost phone).
//!
//! Revoking is immediate and total on the server: the device is marked
//! revoked, its sessions and KeyPackages are deleted, its WebSocket is
//! closed, its queue is emptied and nothing is queued for it again. It stays
//! a leaf of its MLS groups until a commit from another device removes it;
//! the delivery service accepts such commits, and clients send them right
//! after revoking.

use crate::auth::AuthDevice;
use crate::client_ip::ClientIp;
use crate::db::{device_from_db, device_to_db, u64_from_db};
use crate::error::{ApiError, ApiJson};
use crate::security_events::{self, Event};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rampart_proto::DeviceId;
use rampart_proto::api::{AccountDevice, DeviceList, SecurityEventKind};
use sqlx::Row as _;

/// `GET /v1/devices`: the live devices of the caller's account.
pub async fn list(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<DeviceList>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, name, signature_key, certificate, created_at, last_seen FROM devices \
         WHERE user_id = ? AND revoked = 0 ORDER BY created_at, id",
    )
    .bind(auth.user_id)
    .fetch_all(&state.pool)
    .await?;
    let mut devices = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(device_id) = device_from_db(row.try_get("id")?) else {
            continue;
        };
        devices.push(AccountDevice {
            device_id,
            name: row.try_get("name")?,
            created_at: u64_from_db(row.try_get("created_at")?),
            last_seen: u64_from_db(row.try_get("last_seen")?),
            current: device_id == auth.device_id,
            signature_key: row.try_get("signature_key")?,
            certificate: row.try_get("certificate")?,
        });
    }
    Ok(ApiJson(DeviceList { devices }))
}

fn no_such_device() -> ApiError {
    ApiError::not_found("your account has no live device with that id")
}

/// `POST /v1/devices/{device_id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    auth: AuthDevice,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Another user's device, an unknown one and a malformed id all look alike.
    let device = DeviceId::parse(&id).map_err(|_| no_such_device())?;
    if device == auth.device_id {
        return Err(ApiError::bad_request(
            "this is the device making the request; to sign it out use POST /v1/logout, \
             or revoke it from another of your devices",
        ));
    }
    let now = state.now();
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let revoked =
        sqlx::query("UPDATE devices SET revoked = 1 WHERE id = ? AND user_id = ? AND revoked = 0")
            .bind(device_to_db(device))
            .bind(auth.user_id)
            .execute(&mut *tx)
            .await?;
    if revoked.rows_affected() != 1 {
        return Err(no_such_device());
    }
    sqlx::query("DELETE FROM sessions WHERE device_id = ?")
        .bind(device_to_db(device))
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM key_packages WHERE device_id = ?")
        .bind(device_to_db(device))
        .execute(&mut *tx)
        .await?;
    let event = Event::new(SecurityEventKind::DeviceRevoked, Some(auth.user_id), ip).device(device);
    security_events::record(&mut *tx, now, &event).await?;
    tx.commit().await?;
    // The delivery actor owns the queues and sockets: it closes the
    // connection, empties the queue and stops queueing for the device.
    if !state.delivery.revoke(device).await {
        return Err(ApiError::internal(
            "the delivery service did not confirm a revocation",
        ));
    }
    tracing::info!(user = %auth.username, %device, by = %auth.device_id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}
