//! Organisation policy that clients fetch and apply before sending. The
//! server enforces what it can see of it (see `delivery::lifetime`).

use crate::auth::AuthDevice;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::State;
use rampart_proto::api::MessagePolicy;

/// `GET /v1/policy/messages`: maximum retention, default timer, recall
/// window. Any signed-in device may read it (401 without a session).
pub async fn messages(
    State(state): State<AppState>,
    _auth: AuthDevice,
) -> Result<ApiJson<MessagePolicy>, ApiError> {
    Ok(ApiJson(state.message_policy.as_ref().clone()))
}
