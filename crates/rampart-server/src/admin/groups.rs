//! Groups as administrators see them: id, kind, epoch, sizes and the
//! admins their settings name. Never a name (it is encrypted) or content.

use super::{Caller, Ctx, check_administers};
use crate::db::u64_from_db;
use crate::error::ApiError;
use rampart_proto::GroupId;
use rampart_proto::admin::{AdminGroup, AdminGroupList};
use rampart_proto::group::GroupSettings;
use sqlx::Row as _;

/// `GET /v1/admin/groups`, oldest first.
pub(super) async fn list(ctx: &Ctx, caller: &Caller) -> Result<AdminGroupList, ApiError> {
    check_administers(ctx, caller).await?;
    let rows = sqlx::query(
        "SELECT g.id, g.kind, g.epoch, g.created_at, g.settings, \
         (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS devices, \
         (SELECT COUNT(DISTINCT d.user_id) FROM group_members m \
            JOIN devices d ON d.id = m.device_id WHERE m.group_id = g.id) AS users \
         FROM groups g ORDER BY g.created_at, g.id",
    )
    .fetch_all(&ctx.pool)
    .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(group_id) = GroupId::from_slice(row.try_get::<&[u8], _>("id")?) else {
            continue;
        };
        let admins = match row.try_get::<Option<&[u8]>, _>("settings")? {
            None => Vec::new(),
            Some(bytes) => match GroupSettings::decode(bytes) {
                Ok(settings) => settings.admins().cloned().collect(),
                Err(_) => {
                    tracing::warn!("skipping corrupt stored group settings");
                    Vec::new()
                }
            },
        };
        let kind: String = row.try_get("kind")?;
        groups.push(AdminGroup {
            group_id,
            kind: if kind == "direct" { "direct" } else { "group" }.into(),
            users: u32::try_from(row.try_get::<i64, _>("users")?).unwrap_or(u32::MAX),
            devices: u32::try_from(row.try_get::<i64, _>("devices")?).unwrap_or(u32::MAX),
            admins,
            epoch: u64_from_db(row.try_get("epoch")?),
            created_at: u64_from_db(row.try_get("created_at")?),
        });
    }
    Ok(AdminGroupList { groups })
}
