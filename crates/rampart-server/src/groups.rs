//! Group state as the server routes it: epoch and member devices. Visible
//! only to member devices; an unknown group and a group you are not in get
//! the same answer, so ids cannot be probed.

use crate::auth::AuthDevice;
use crate::db::{device_from_db, device_to_db, u64_from_db};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use rampart_proto::api::{GroupList, GroupMember, GroupState};
use rampart_proto::{ErrorCode, GroupId, Username};
use sqlx::{Row as _, SqliteConnection};

fn not_member() -> ApiError {
    ApiError::new(
        ErrorCode::NotMember,
        "this device is not a member of that group",
    )
}

async fn load(
    conn: &mut SqliteConnection,
    group: GroupId,
    epoch: i64,
) -> Result<GroupState, ApiError> {
    let rows = sqlx::query(
        "SELECT u.username, m.device_id FROM group_members m \
         JOIN devices d ON d.id = m.device_id JOIN users u ON u.id = d.user_id \
         WHERE m.group_id = ? ORDER BY u.username, m.device_id",
    )
    .bind(group.as_bytes().as_slice())
    .fetch_all(conn)
    .await?;
    let mut members = Vec::with_capacity(rows.len());
    for row in rows {
        let username = Username::parse(row.try_get::<&str, _>("username")?)
            .map_err(|_| ApiError::internal("invalid username in database"))?;
        if let Some(device_id) = device_from_db(row.try_get("device_id")?) {
            members.push(GroupMember {
                username,
                device_id,
            });
        }
    }
    Ok(GroupState {
        group_id: group,
        epoch: u64_from_db(epoch),
        members,
    })
}

/// `GET /v1/groups`.
pub async fn list(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> Result<ApiJson<GroupList>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT g.id, g.epoch FROM groups g JOIN group_members m ON m.group_id = g.id \
         WHERE m.device_id = ? ORDER BY g.id",
    )
    .bind(device_to_db(auth.device_id))
    .fetch_all(&mut *conn)
    .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let id = GroupId::from_slice(row.try_get::<&[u8], _>("id")?)
            .map_err(|_| ApiError::internal("invalid group id in database"))?;
        groups.push(load(&mut conn, id, row.try_get("epoch")?).await?);
    }
    Ok(ApiJson(GroupList { groups }))
}

/// `GET /v1/groups/{group_id}`.
pub async fn get(
    State(state): State<AppState>,
    auth: AuthDevice,
    Path(id): Path<String>,
) -> Result<ApiJson<GroupState>, ApiError> {
    let group = GroupId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut conn = state.pool.acquire().await?;
    let epoch: Option<i64> = sqlx::query_scalar(
        "SELECT g.epoch FROM groups g JOIN group_members m ON m.group_id = g.id \
         WHERE g.id = ? AND m.device_id = ?",
    )
    .bind(group.as_bytes().as_slice())
    .bind(device_to_db(auth.device_id))
    .fetch_optional(&mut *conn)
    .await?;
    let epoch = epoch.ok_or_else(not_member)?;
    Ok(ApiJson(load(&mut conn, group, epoch).await?))
}
