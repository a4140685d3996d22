//! The HTTP admin API (`/v1/admin/…`, see [`rampart_proto::admin`]) and
//! the OpenAPI document (`GET /v1/openapi.json`).

use super::{Caller, Ctx, Live, access, groups, sessions, users};
use crate::auth::AuthDevice;
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::security_events::{self, Event};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rampart_proto::Username;
use rampart_proto::admin::{
    AccessPolicy, AdminGroupList, Invite, NewInvite, RoleChange, SessionList, UserList, UserSummary,
};
use rampart_proto::api::SecurityEventKind;
use serde::Deserialize;

/// The OpenAPI 3.1 document of every route.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /v1/openapi.json` (no session).
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// An owner's or admin's session, with what an operation needs. Any other
/// session is refused with `403` and an `access_denied` event.
pub(crate) struct Admin {
    caller: Caller,
    ctx: Ctx,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = AuthDevice::from_request_parts(parts, state).await?;
        if let Some(slot) = parts.extensions.get::<crate::audit::routes::CallerSlot>() {
            slot.fill(auth.user_id, auth.device_id);
        }
        let Ok(ip) = ClientIp::from_request_parts(parts, state).await;
        if !auth.role.administers() {
            let event = Event::new(SecurityEventKind::AccessDenied, Some(auth.user_id), ip)
                .device(auth.device_id);
            security_events::record_logged(state, &event).await;
            tracing::warn!(user = %auth.username, "admin API refused to a non-admin");
            return Err(ApiError::forbidden(
                "only owners and admins may use the admin API",
            ));
        }
        Ok(Admin {
            caller: Caller::Admin {
                user_id: auth.user_id,
                username: auth.username,
                role: auth.role,
                device: auth.device_id,
            },
            ctx: Ctx {
                pool: state.pool.clone(),
                clock: state.clock.clone(),
                ip,
                access: state.access_cache(),
                live: Some(Live {
                    delivery: state.delivery.clone(),
                    blobs: state.blobs.clone(),
                }),
            },
        })
    }
}

/// A username in a path; one that cannot exist is simply not found.
fn username(raw: &str) -> Result<Username, ApiError> {
    Username::parse(raw).map_err(|_| ApiError::not_found("there is no account with that name"))
}

pub(crate) async fn list_users(admin: Admin) -> Result<ApiJson<UserList>, ApiError> {
    Ok(ApiJson(users::list(&admin.ctx, &admin.caller).await?))
}

pub(crate) async fn invite(
    admin: Admin,
    ApiJson(new): ApiJson<NewInvite>,
) -> Result<ApiJson<Invite>, ApiError> {
    Ok(ApiJson(
        users::invite(&admin.ctx, &admin.caller, new).await?,
    ))
}

pub(crate) async fn set_role(
    admin: Admin,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<RoleChange>,
) -> Result<ApiJson<UserSummary>, ApiError> {
    let name = username(&name)?;
    Ok(ApiJson(
        users::set_role(&admin.ctx, &admin.caller, &name, change.role).await?,
    ))
}

pub(crate) async fn disable(
    admin: Admin,
    Path(name): Path<String>,
) -> Result<ApiJson<UserSummary>, ApiError> {
    let name = username(&name)?;
    Ok(ApiJson(
        users::disable(&admin.ctx, &admin.caller, &name).await?,
    ))
}

pub(crate) async fn enable(
    admin: Admin,
    Path(name): Path<String>,
) -> Result<ApiJson<UserSummary>, ApiError> {
    let name = username(&name)?;
    Ok(ApiJson(
        users::enable(&admin.ctx, &admin.caller, &name).await?,
    ))
}

pub(crate) async fn delete(admin: Admin, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let name = username(&name)?;
    users::delete(&admin.ctx, &admin.caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn reset_two_factor(
    admin: Admin,
    Path(name): Path<String>,
) -> Result<ApiJson<UserSummary>, ApiError> {
    let name = username(&name)?;
    Ok(ApiJson(
        users::reset_two_factor(&admin.ctx, &admin.caller, &name).await?,
    ))
}

pub(crate) async fn list_groups(admin: Admin) -> Result<ApiJson<AdminGroupList>, ApiError> {
    Ok(ApiJson(groups::list(&admin.ctx, &admin.caller).await?))
}

pub(crate) async fn get_access(admin: Admin) -> Result<ApiJson<AccessPolicy>, ApiError> {
    Ok(ApiJson(access::get(&admin.ctx, &admin.caller).await?))
}

pub(crate) async fn set_access(
    admin: Admin,
    ApiJson(policy): ApiJson<AccessPolicy>,
) -> Result<ApiJson<AccessPolicy>, ApiError> {
    Ok(ApiJson(
        access::set(&admin.ctx, &admin.caller, policy).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct SessionsQuery {
    user: Option<String>,
}

pub(crate) async fn list_sessions(
    admin: Admin,
    query: Result<Query<SessionsQuery>, QueryRejection>,
) -> Result<ApiJson<SessionList>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("the only query parameter is user=NAME, given at most once")
    })?;
    let user = query.user.as_deref().map(username).transpose()?;
    Ok(ApiJson(
        sessions::list(&admin.ctx, &admin.caller, user.as_ref()).await?,
    ))
}

pub(crate) async fn revoke_session(
    admin: Admin,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    sessions::revoke(&admin.ctx, &admin.caller, &session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` of every `.route(...)` in `Server::router()`, read
    /// from the source so that a new route cannot slip past the document.
    fn routes_in_router() -> BTreeSet<(String, String)> {
        let src = include_str!("../lib.rs");
        let start = src.find("pub fn router(&self)").unwrap();
        let body = &src[start..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").unwrap();
        let mut found = BTreeSet::new();
        for (at, _) in body.match_indices(".route(") {
            // The route call up to its closing parenthesis.
            let rest = &body[at + ".route(".len()..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .unwrap()
                .0;
            let call = &rest[..end];
            let path = call.split('"').nth(1).unwrap().to_owned();
            for m in method.captures_iter(call) {
                found.insert((m[1].to_uppercase(), path.clone()));
            }
        }
        found
    }

    fn routes_in_openapi() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut found = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
        found
    }

    #[test]
    fn openapi_documents_exactly_the_routes_of_the_router() {
        let router = routes_in_router();
        let documented = routes_in_openapi();
        assert!(router.len() > 40, "the router parse found only {router:?}");
        let undocumented: Vec<_> = router.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&router).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "routes missing from openapi.json: {undocumented:?}; \
             documented but not routed: {stale:?}"
        );
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        // Every admin route requires the session (no `security: []`).
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if path.starts_with("/v1/admin/") {
                for op in ops.as_object().unwrap().values() {
                    assert!(op.get("security").is_none(), "{path} must need a session");
                    assert!(op["responses"].get("403").is_some(), "{path}");
                }
            }
        }
    }
}
