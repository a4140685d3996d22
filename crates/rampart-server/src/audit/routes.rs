//! The audit log over HTTP (owners and admins): `GET /v1/admin/audit`,
//! `/v1/admin/audit/checkpoints`, `/v1/admin/audit/key` and
//! `POST /v1/admin/audit/checkpoint`; and the middleware that audits every
//! call of the admin API.

use super::{Actor, Entry, Query as AuditQuery, Target};
use crate::admin::routes::Admin;
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts as _, Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rampart_proto::DeviceId;
use rampart_proto::audit::{
    AuditCheckpoint, AuditCheckpointList, AuditKey, AuditPage, CheckpointReason, Outcome,
};
use std::sync::{Arc, Mutex};

/// `GET /v1/admin/audit`: sealed entries in id order (or newest first).
pub(crate) async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(ApiJson(state.audit.page(&query).await?))
}

/// `GET /v1/admin/audit/checkpoints`: every checkpoint, oldest first.
pub(crate) async fn checkpoints(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<AuditCheckpointList>, ApiError> {
    let checkpoints = state.audit.checkpoints().await?;
    Ok(ApiJson(AuditCheckpointList { checkpoints }))
}

/// `POST /v1/admin/audit/checkpoint`: signs the head now (before an export
/// that should be covered to its last entry).
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<Option<AuditCheckpoint>>, ApiError> {
    let made = state.audit.checkpoint(CheckpointReason::Requested).await?;
    Ok(ApiJson(made))
}

/// `GET /v1/admin/audit/key`: the checkpoint signing key.
pub(crate) async fn key(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<AuditKey>, ApiError> {
    Ok(ApiJson(AuditKey {
        key: hex::encode(state.audit.public_key()),
    }))
}

/// Who called the admin API, filled in by the [`Admin`] extractor (which
/// authenticates) for [`audit_admin_calls`] (which runs around it).
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(Arc<Mutex<Option<(i64, DeviceId)>>>);

impl CallerSlot {
    pub(crate) fn fill(&self, user_id: i64, device: DeviceId) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((user_id, device));
        }
    }

    fn take(&self) -> Option<(i64, DeviceId)> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Audits every call of `/v1/admin/…` made with a session: who, from
/// where, which method and path, and the status. Reads are audited too:
/// who looked at the user list or the audit log is itself worth knowing.
/// Calls without a valid session are not (anyone could fill the log with
/// them); they are answered 401 and counted in the metrics.
pub(crate) async fn audit_admin_calls(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/v1/admin/") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(ip) = ClientIp::from_request_parts(&mut parts, &state).await;
    let route = format!("route:{} {}", parts.method, parts.uri.path());
    let slot = CallerSlot::default();
    parts.extensions.insert(slot.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    let outcome = if status.is_success() {
        Outcome::Success
    } else if status == axum::http::StatusCode::UNAUTHORIZED
        || status == axum::http::StatusCode::FORBIDDEN
    {
        Outcome::Denied
    } else {
        Outcome::Failure
    };
    let Some((user, device)) = slot.take() else {
        return response;
    };
    let entry = Entry::new("admin_api", Actor::User(user), outcome)
        .device(Some(device))
        .ip(ip.display())
        .target(Target::Text(route))
        .detail("status", status.as_u16());
    super::append_logged(&state.pool, state.now(), &entry).await;
    response
}
