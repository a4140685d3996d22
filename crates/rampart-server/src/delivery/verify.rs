//! Handshake messages checked against what they really do (see
//! [`super::inspect`]) before the actor judges their rights: a commit must
//! add and remove exactly the devices its bundle names, from the
//! committer's own leaf; a member's proposal must be its own removal.
//! Runs in the connection task, reading the group's stored GroupInfo; the
//! actor's epoch check then guarantees that the state checked against is
//! the one the commit lands on (a GroupInfo is stored once per epoch).

use super::inspect;
use super::mls::Refusal;
use crate::db::{device_to_db, u64_from_db, u64_to_db};
use crate::security_events::{self, Event};
use crate::state::AppState;
use rampart_proto::api::SecurityEventKind;
use rampart_proto::frame::{CommitBundle, DeliveryKind, SendMessage};
use rampart_proto::{DeviceId, ErrorCode, GroupId};
use sqlx::Row as _;
use std::collections::HashMap;

fn internal() -> Refusal {
    Refusal {
        code: ErrorCode::Internal,
        message: "internal server error",
    }
}

fn mismatch() -> Refusal {
    Refusal {
        code: ErrorCode::Forbidden,
        message: "the commit does not do what its bundle declares (added, removed or committer)",
    }
}

/// Runs the CPU-bound MLS verification off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(internal()))
}

/// The stored GroupInfo of a group `device` is a member of, if the group
/// is at `epoch`. `None` otherwise: the actor then refuses (not a member,
/// or a stale epoch) with the same answer for a group that does not exist,
/// so outsiders can neither probe groups nor make the server verify them.
async fn stored_group_info(
    state: &AppState,
    device: DeviceId,
    group: &GroupId,
    epoch: u64,
) -> Result<Option<Vec<u8>>, Refusal> {
    let row = sqlx::query(
        "SELECT g.epoch, g.group_info FROM groups g \
         JOIN group_members m ON m.group_id = g.id AND m.device_id = ? WHERE g.id = ?",
    )
    .bind(device_to_db(device))
    .bind(group.as_bytes().as_slice())
    .fetch_optional(&state.pool)
    .await
    .map_err(|_| internal())?;
    Ok(match row {
        Some(row) if row.try_get::<i64, _>("epoch").map(u64_from_db).ok() == Some(epoch) => {
            row.try_get("group_info").ok()
        }
        _ => None,
    })
}

/// The keys of `devices`, sorted, or `None` if one is unknown.
fn sorted_keys(all: &HashMap<DeviceId, Vec<u8>>, devices: &[DeviceId]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = devices
        .iter()
        .map(|d| all.get(d).cloned())
        .collect::<Option<_>>()?;
    out.sort();
    Some(out)
}

/// Counts a handshake message of `device` against its allowance (see
/// [`crate::ratelimit::HANDSHAKES_PER_WINDOW`]).
fn admit(state: &AppState, device: DeviceId) -> Result<(), Refusal> {
    state
        .limiter
        .admit(
            crate::ratelimit::Action::Handshake,
            &device.to_string(),
            state.clock.now_ms(),
        )
        .map_err(|_| Refusal {
            code: ErrorCode::RateLimited,
            message: "too many commits and proposals from this device; wait a minute",
        })
}

/// Records a refusal for want of a right (a forged handshake) as a
/// security event of the device's account.
async fn record(state: &AppState, device: DeviceId, refusal: &Refusal) {
    if refusal.code != ErrorCode::Forbidden {
        return;
    }
    let user: Option<i64> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = ?")
        .bind(device_to_db(device))
        .fetch_optional(&state.pool)
        .await
        .ok()
        .flatten();
    let event = Event::new(
        SecurityEventKind::AccessDenied,
        user,
        crate::client_ip::ClientIp(None),
    )
    .device(device);
    security_events::record_logged(state, &event).await;
}

/// A proposal from a member must be its own removal, signed by its own leaf.
pub async fn proposal(
    state: &AppState,
    device: DeviceId,
    msg: &SendMessage,
    kind: DeliveryKind,
    epoch: u64,
) -> Result<(), Refusal> {
    if kind != DeliveryKind::Proposal {
        return Ok(());
    }
    admit(state, device)?;
    let Some(current) = stored_group_info(state, device, &msg.group, epoch).await? else {
        return Ok(());
    };
    let payload = msg.message.clone();
    let result = async {
        let proposer = blocking(move || inspect::leave(&current, &payload)).await?;
        let own = crate::db::signature_keys(&state.pool, &[device])
            .await
            .map_err(|_| internal())?;
        if own.get(&device) != Some(&proposer) {
            return Err(mismatch());
        }
        Ok(())
    }
    .await;
    if let Err(r) = &result {
        record(state, device, r).await;
    }
    result
}

/// A commit must do exactly what its bundle declares, from the sender's
/// own leaf, and upload a GroupInfo of the state it makes.
pub async fn commit(
    state: &AppState,
    device: DeviceId,
    bundle: &CommitBundle,
) -> Result<(), Refusal> {
    let result = check_commit(state, device, bundle).await;
    if let Err(r) = &result {
        record(state, device, r).await;
    }
    result
}

async fn check_commit(
    state: &AppState,
    device: DeviceId,
    bundle: &CommitBundle,
) -> Result<(), Refusal> {
    admit(state, device)?;
    let mut named: Vec<DeviceId> =
        Vec::with_capacity(bundle.added.len() + bundle.removed.len() + 1);
    named.push(device);
    named.extend(&bundle.added);
    named.extend(&bundle.removed);
    let known = crate::db::signature_keys(&state.pool, &named)
        .await
        .map_err(|_| internal())?;
    let (Some(added), Some(removed), Some(own)) = (
        sorted_keys(&known, &bundle.added),
        sorted_keys(&known, &bundle.removed),
        known.get(&device).cloned(),
    ) else {
        // The actor names the unknown device.
        return Ok(());
    };

    if bundle.create.is_some() {
        // No earlier state: the new group's verified tree must hold the
        // creator and exactly the devices it declares adding.
        let info = bundle.group_info.clone();
        let mut members: Vec<Vec<u8>> = blocking(move || inspect::members(&info))
            .await?
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        members.sort();
        let mut expected = added;
        expected.push(own);
        expected.sort();
        return if members == expected {
            Ok(())
        } else {
            Err(mismatch())
        };
    }

    let Some(previous) = stored_group_info(state, device, &bundle.group, bundle.epoch).await?
    else {
        return Ok(());
    };
    let proposals: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM messages WHERE group_id = ? AND kind = ? AND epoch = ? ORDER BY id",
    )
    .bind(bundle.group.as_bytes().as_slice())
    .bind(i64::from(DeliveryKind::Proposal.to_u8()))
    .bind(u64_to_db(bundle.epoch))
    .fetch_all(&state.pool)
    .await
    .map_err(|_| internal())?;
    let (commit, info) = (bundle.commit.clone(), bundle.group_info.clone());
    let effects = blocking(move || inspect::commit(&previous, &proposals, &commit, &info)).await?;
    let mut done_added = effects.added;
    done_added.sort();
    let mut done_removed = effects.removed;
    done_removed.sort();
    if effects.committer != own || done_added != added || done_removed != removed {
        return Err(mismatch());
    }
    Ok(())
}
