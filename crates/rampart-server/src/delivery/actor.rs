//! The delivery actor: sole owner of group epochs, memberships, per-device
//! sequence counters, live connections and recent idempotency keys, and the
//! single writer of the delivery tables.
//!
//! Loop: take one operation, drain whatever else is already waiting (up to
//! [`MAX_BATCH`]), apply them all in memory, write the whole batch in ONE
//! transaction (group commit: one fsync for hundreds of messages), then
//! answer. Application messages are pushed to online recipients as soon as
//! they are processed, before the batch is durable, which keeps online latency
//! low; delivery is at least once and the sender hears `Accepted` only after
//! the commit. Commits and Welcomes (and anything after them in the batch) are
//! pushed only once durable, so nobody ever sees a commit the server forgot.
//!
//! Time comes from the server [`Clock`]: message timestamps, expiry and
//! recall windows. Sends are checked against the organisation's message
//! lifetime rules ([`lifetime`]); a recall authorised here deletes the
//! target's undelivered copies in the same transaction that stores the
//! recall message itself.
//!
//! Files: an application message that lists blobs binds each (in the
//! batch's transaction) to its key and expiry, after checking that the
//! sending account uploaded it, complete, to this conversation, and that
//! no other message shares it. Only such messages cost a database read
//! here; text messages do not. A recall deletes the blobs bound to its
//! target too, even once every copy was delivered; their stored objects
//! are deleted after the batch commits.

use super::external::DeliverySigner;
use super::lifetime::{self, Purger};
use super::{DeliveryHandle, OP_QUEUE, Op, Outbound};
use crate::blobs::Blobs;
use crate::blobs::store::discard;
use crate::client_ip::ClientIp;
use crate::clock::Clock;
use crate::config::MessagesConfig;
use crate::db::{device_from_db, device_to_db, u64_from_db, u64_to_db};
use crate::metrics::Metrics;
use crate::security_events::{self, Event};
use bytes::Bytes;
use rampart_proto::admin::AccessPolicy;
use rampart_proto::api::Role;
use rampart_proto::api::SecurityEventKind;
use rampart_proto::audit::Outcome;
use rampart_proto::frame::{
    CommitBundle, Create, Delivery, DeliveryKind, SendMessage, ServerFrame,
};
use rampart_proto::group::{Action, GroupSettings};
use rampart_proto::limits::{MAX_ATTACHMENTS, MAX_GROUP_DEVICES};
use rampart_proto::{BlobId, DeviceId, ErrorCode, GroupId, GroupKind, IdempotencyKey, Username};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqlitePool};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// Operations applied per transaction at most.
const MAX_BATCH: usize = 512;
/// Idempotency keys remembered per device (a resend normally follows within seconds).
const RECENT_KEYS: usize = 1024;
/// How long idempotency rows are kept in the database.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// Rows per multi-row INSERT, under SQLite's 32766 bound variables.
const ROWS_PER_INSERT: usize = 1000;
/// Stored messages one recall may name (a key is random; more than one
/// match means a sender reused a key on purpose).
const MAX_RECALL_TARGETS: i64 = 16;

struct Group {
    kind: GroupKind,
    epoch: u64,
    members: HashSet<DeviceId>,
    /// Mirrored from the latest commit's GroupInfo (unverified; see
    /// [`super::mls::check_commit`]). Direct chats have none.
    settings: Option<GroupSettings>,
}

struct Device {
    username: Username,
    /// The sequence number the next queued message gets.
    next_seq: u64,
    revoked: bool,
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    kick: oneshot::Sender<&'static str>,
}

/// A bounded, insertion-ordered set of a device's recent idempotency keys
/// with the epoch its request was answered with.
#[derive(Default)]
struct RecentKeys {
    epochs: HashMap<[u8; 16], u64>,
    order: VecDeque<[u8; 16]>,
}

impl RecentKeys {
    fn insert(&mut self, key: [u8; 16], epoch: u64) {
        if self.epochs.insert(key, epoch).is_none() {
            self.order.push_back(key);
            if self.order.len() > RECENT_KEYS
                && let Some(old) = self.order.pop_front()
            {
                self.epochs.remove(&old);
            }
        }
    }
}

struct MessageRow {
    id: i64,
    group: GroupId,
    sender: DeviceId,
    kind: DeliveryKind,
    epoch: u64,
    time: i64,
    /// The sender's idempotency key, for application messages (what a recall names).
    client_key: Option<[u8; 16]>,
    /// When it is deleted (ms, server clock).
    expires_at: Option<i64>,
    payload: Vec<u8>,
}

/// A blob bound to the message that shares it, written with the batch.
struct Attach {
    blob: BlobId,
    group: GroupId,
    /// The message's idempotency key (what a recall names).
    key: [u8; 16],
    uploader: Username,
    at: i64,
    /// The message's expiry: the blob goes with it.
    expires_at: Option<i64>,
}

/// A group touched by this batch: its state before (to write the membership
/// difference) and what to store.
struct GroupWrite {
    created: Option<DeviceId>,
    members_before: HashSet<DeviceId>,
    group_info: Vec<u8>,
    /// Encoded [`GroupSettings`], `None` when the GroupInfo carries none.
    settings: Option<Vec<u8>>,
}

#[derive(Default)]
struct Batch {
    messages: Vec<MessageRow>,
    queue: Vec<(i64, i64, i64)>,
    idempotency: Vec<(i64, [u8; 16], i64)>,
    groups: HashMap<GroupId, GroupWrite>,
    acks: HashMap<DeviceId, u64>,
    replies: Vec<(oneshot::Sender<ServerFrame>, ServerFrame)>,
    connects: Vec<(oneshot::Sender<Option<u64>>, u64)>,
    flushes: Vec<oneshot::Sender<()>>,
    /// Revoked devices whose queues are deleted with this batch.
    revoked: Vec<(DeviceId, oneshot::Sender<bool>)>,
    /// Messages recalled by this batch: deleted (with their queue rows)
    /// after its inserts, so a target stored in the same batch goes too.
    recalled: Vec<i64>,
    /// Blobs bound to messages of this batch.
    attach: Vec<Attach>,
    /// Blobs recalled by this batch: rows deleted after the binds, objects
    /// once the batch is durable.
    recalled_blobs: Vec<BlobId>,
    /// Devices whose request was refused for want of a right: recorded as
    /// `access_denied` security events with the batch.
    denied: Vec<(DeviceId, i64, String)>,
    /// Accepted membership and settings changes, audited with the batch.
    audit: Vec<(i64, crate::audit::Entry)>,
    /// Set once a handshake message is in the batch: from then on pushes wait
    /// for the commit, which also keeps each device's pushes in seq order.
    hold_pushes: bool,
    held: Vec<(DeviceId, Outbound)>,
    /// Application messages from clients accepted in this batch (not
    /// resends), counted in the metrics once the batch is durable.
    relayed: u64,
    /// Commits and proposals from clients accepted in this batch.
    handshakes: u64,
}

/// A refused request: code, message and (for stale epochs) the current epoch.
struct Rejection {
    code: ErrorCode,
    message: String,
    current_epoch: Option<u64>,
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        current_epoch: None,
    }
}

impl From<sqlx::Error> for Rejection {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "delivery actor: database read failed");
        reject(ErrorCode::Internal, "internal server error")
    }
}

/// A refusal for want of a right; the caller records it as a security event.
fn forbidden(message: impl Into<String>) -> Rejection {
    reject(ErrorCode::Forbidden, message)
}

fn not_yours() -> Rejection {
    reject(
        ErrorCode::NotFound,
        "that file was not uploaded by you to this conversation, or has been deleted",
    )
}

fn not_member() -> Rejection {
    reject(
        ErrorCode::NotMember,
        "this device is not a member of that group",
    )
}

pub struct Actor {
    pool: SqlitePool,
    clock: Clock,
    messages: MessagesConfig,
    /// Asks for a WAL checkpoint after a recall deleted rows (coalesced).
    checkpoints: mpsc::Sender<()>,
    /// Where recalled blobs are deleted from.
    blobs: Arc<Blobs>,
    rx: mpsc::Receiver<Op>,
    groups: HashMap<GroupId, Group>,
    devices: HashMap<DeviceId, Device>,
    conns: HashMap<DeviceId, Conn>,
    recent: HashMap<DeviceId, RecentKeys>,
    next_message_id: i64,
    /// Signs the Remove proposals for revoked devices (see [`super::external`]).
    signer: Arc<DeliverySigner>,
    /// Per group, the epoch of the latest removal proposals and the devices
    /// they named, so each epoch gets one proposal per device.
    proposed: HashMap<GroupId, (u64, HashSet<DeviceId>)>,
    /// Counts relayed messages and accepted handshakes.
    metrics: Arc<Metrics>,
}

/// Loads the delivery state and starts the actor, which reads `clock` for
/// every timestamp and applies the `messages` lifetime rules. `purger`
/// checkpoints the WAL after recalls (on its own task, off the hot path);
/// recalled blobs are deleted from `blobs`; what was accepted is counted
/// in `metrics`.
pub async fn start(
    pool: SqlitePool,
    clock: Clock,
    messages: MessagesConfig,
    purger: Purger,
    blobs: Arc<Blobs>,
    signer: Arc<DeliverySigner>,
    metrics: Arc<Metrics>,
) -> Result<(DeliveryHandle, tokio::task::JoinHandle<()>), sqlx::Error> {
    let (tx, rx) = mpsc::channel(OP_QUEUE);
    // Capacity one: requests made while a checkpoint waits coalesce; the
    // task ends with the actor.
    let (checkpoints, mut requests) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while requests.recv().await.is_some() {
            purger.checkpoint().await;
        }
    });
    let mut actor = Actor {
        pool,
        clock,
        messages,
        checkpoints,
        blobs,
        rx,
        groups: HashMap::new(),
        devices: HashMap::new(),
        conns: HashMap::new(),
        recent: HashMap::new(),
        next_message_id: 1,
        signer,
        proposed: HashMap::new(),
        metrics,
    };
    actor.reload().await?;
    // Devices revoked while the server was stopped (an administrator
    // disabling an account on the data directory) are proposed for removal
    // now; so are those whose earlier proposals a restart may have lost.
    let mut batch = Batch::default();
    let groups: Vec<GroupId> = actor.groups.keys().copied().collect();
    for group in groups {
        actor.propose_removals(&mut batch, group).await;
    }
    actor.finish(batch).await;
    let join = tokio::spawn(actor.run());
    Ok((DeliveryHandle { tx }, join))
}

impl Actor {
    /// (Re)loads everything from the database. Sequence counters and message
    /// ids never go backwards, even after a failed batch, so a number a client
    /// may have seen is never reused for another message.
    async fn reload(&mut self) -> Result<(), sqlx::Error> {
        let mut groups = HashMap::new();
        for row in sqlx::query("SELECT id, kind, epoch, settings FROM groups")
            .fetch_all(&self.pool)
            .await?
        {
            let Ok(id) = GroupId::from_slice(row.try_get::<&[u8], _>("id")?) else {
                continue;
            };
            let kind = if row.try_get::<&str, _>("kind")? == "direct" {
                GroupKind::Direct
            } else {
                GroupKind::Group
            };
            let epoch = u64_from_db(row.try_get("epoch")?);
            let settings = match row.try_get::<Option<&[u8]>, _>("settings")? {
                None => None,
                Some(bytes) => GroupSettings::decode(bytes)
                    .inspect_err(|_| tracing::warn!("skipping corrupt stored group settings"))
                    .ok(),
            };
            groups.insert(
                id,
                Group {
                    kind,
                    epoch,
                    members: HashSet::new(),
                    settings,
                },
            );
        }
        for row in sqlx::query("SELECT group_id, device_id FROM group_members")
            .fetch_all(&self.pool)
            .await?
        {
            let (Ok(id), Some(device)) = (
                GroupId::from_slice(row.try_get::<&[u8], _>("group_id")?),
                device_from_db(row.try_get("device_id")?),
            ) else {
                continue;
            };
            if let Some(g) = groups.get_mut(&id) {
                g.members.insert(device);
            }
        }
        let mut devices = HashMap::new();
        for row in sqlx::query(DEVICE_QUERY_ALL).fetch_all(&self.pool).await? {
            if let Some((id, mut device)) = device_from_row(&row)? {
                if let Some(old) = self.devices.get(&id) {
                    device.next_seq = device.next_seq.max(old.next_seq);
                }
                devices.insert(id, device);
            }
        }
        let mut recent: HashMap<DeviceId, RecentKeys> = HashMap::new();
        for row in sqlx::query(
            "SELECT device_id, key, request_result_epoch FROM idempotency WHERE created_at > ? ORDER BY created_at",
        )
        .bind(self.clock.now_db() - IDEMPOTENCY_TTL_MS)
        .fetch_all(&self.pool)
        .await?
        {
            let (Some(device), Ok(key)) = (
                device_from_db(row.try_get("device_id")?),
                <[u8; 16]>::try_from(row.try_get::<&[u8], _>("key")?),
            ) else {
                continue;
            };
            recent
                .entry(device)
                .or_default()
                .insert(key, u64_from_db(row.try_get("request_result_epoch")?));
        }
        // AUTOINCREMENT's high-water mark survives deletions, MAX(id) covers
        // a fresh table.
        let next_id: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages), 0), \
             COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)) + 1",
        )
        .fetch_one(&self.pool)
        .await?;
        self.groups = groups;
        self.devices = devices;
        self.recent = recent;
        self.next_message_id = self.next_message_id.max(next_id);
        Ok(())
    }

    async fn run(mut self) {
        let mut ops = Vec::with_capacity(MAX_BATCH);
        while let Some(op) = self.rx.recv().await {
            ops.push(op);
            while ops.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let mut batch = Batch::default();
            for op in ops.drain(..) {
                self.apply(&mut batch, op).await;
            }
            self.finish(batch).await;
        }
        tracing::debug!("delivery actor stopped");
    }

    async fn apply(&mut self, batch: &mut Batch, op: Op) {
        match op {
            Op::Send {
                device,
                msg,
                kind,
                epoch,
                reply,
            } => {
                let request_id = msg.request_id;
                let result = self.send(batch, device, msg, kind, epoch).await;
                self.note_denial(batch, device, &result);
                if result.as_ref().is_ok_and(|(_, duplicate)| !duplicate) {
                    if kind == DeliveryKind::Application {
                        batch.relayed += 1;
                    } else {
                        batch.handshakes += 1;
                    }
                }
                batch.replies.push((reply, answer(request_id, result)));
            }
            Op::Commit {
                device,
                bundle,
                settings,
                reply,
            } => {
                let request_id = bundle.request_id;
                let group = bundle.group;
                let result = self.commit(batch, device, *bundle, settings).await;
                self.note_denial(batch, device, &result);
                if result.as_ref().is_ok_and(|(_, duplicate)| !duplicate) {
                    batch.handshakes += 1;
                    self.propose_removals(batch, group).await;
                }
                batch.replies.push((reply, answer(request_id, result)));
            }
            Op::Ack { device, up_to } => {
                // Never beyond what was queued: a bogus ack must not move
                // the counter past messages not yet assigned.
                let Some(d) = self.devices.get(&device) else {
                    return;
                };
                let up_to = up_to.min(d.next_seq.saturating_sub(1));
                let entry = batch.acks.entry(device).or_insert(0);
                *entry = (*entry).max(up_to);
            }
            Op::Connect {
                device,
                conn_id,
                sender,
                kick,
                reply,
            } => match self.device(device).await {
                Ok(Some(d)) if !d.revoked => {
                    let backlog_until = d.next_seq;
                    // Replacing drops the older connection's channel, which closes it.
                    self.conns.insert(
                        device,
                        Conn {
                            id: conn_id,
                            tx: sender,
                            kick,
                        },
                    );
                    batch.connects.push((reply, backlog_until));
                }
                Ok(_) => {
                    let _ = reply.send(None);
                }
                Err(e) => {
                    tracing::error!(error = %e, "delivery actor: loading a device failed");
                    let _ = reply.send(None);
                }
            },
            Op::Disconnect { device, conn_id } => {
                if self.conns.get(&device).is_some_and(|c| c.id == conn_id) {
                    self.conns.remove(&device);
                }
            }
            Op::Flush { reply } => batch.flushes.push(reply),
            Op::Revoke { device, reply } => {
                // An uncached device is loaded from the database later,
                // where it is already marked revoked.
                if let Some(d) = self.devices.get_mut(&device) {
                    d.revoked = true;
                }
                self.recent.remove(&device);
                self.close(device, "this device was revoked");
                batch.revoked.push((device, reply));
                let groups: Vec<GroupId> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.members.contains(&device))
                    .map(|(id, _)| *id)
                    .collect();
                for group in groups {
                    self.propose_removals(batch, group).await;
                }
            }
            Op::Kick { devices, reason } => {
                for device in devices {
                    self.close(device, reason);
                }
            }
        }
    }

    /// Closes a device's connection on purpose, telling it why.
    fn close(&mut self, device: DeviceId, reason: &'static str) {
        if let Some(conn) = self.conns.remove(&device) {
            let _ = conn.kick.send(reason);
        }
    }

    /// The cached device, loading it on a miss (devices registered after startup).
    async fn device(&mut self, id: DeviceId) -> Result<Option<&Device>, sqlx::Error> {
        if !self.devices.contains_key(&id) {
            let row = sqlx::query(DEVICE_QUERY_ONE)
                .bind(device_to_db(id))
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row
                && let Some((id, device)) = device_from_row(&row)?
            {
                self.devices.insert(id, device);
            }
        }
        Ok(self.devices.get(&id))
    }

    fn duplicate(&self, device: DeviceId, key: IdempotencyKey) -> Option<u64> {
        self.recent.get(&device)?.epochs.get(&key.0).copied()
    }

    fn remember(&mut self, batch: &mut Batch, device: DeviceId, key: IdempotencyKey, epoch: u64) {
        self.recent.entry(device).or_default().insert(key.0, epoch);
        batch
            .idempotency
            .push((device_to_db(device), key.0, u64_to_db(epoch)));
    }

    /// The username of a sending device; an unknown device is treated like a
    /// non-member so the answer leaks nothing.
    async fn sender_name(&mut self, device: DeviceId) -> Result<Username, Rejection> {
        self.device(device)
            .await?
            .filter(|d| !d.revoked)
            .map(|d| d.username.clone())
            .ok_or_else(not_member)
    }

    async fn send(
        &mut self,
        batch: &mut Batch,
        device: DeviceId,
        msg: SendMessage,
        kind: DeliveryKind,
        message_epoch: u64,
    ) -> Result<(u64, bool), Rejection> {
        if let Some(epoch) = self.duplicate(device, msg.key) {
            return Ok((epoch, true));
        }
        let sender = self.sender_name(device).await?;
        let group = self.groups.get(&msg.group).ok_or_else(not_member)?;
        if !group.members.contains(&device) {
            return Err(not_member());
        }
        // A message of an older epoch is unreadable for devices a later
        // commit added: the sender must catch up and encrypt it again.
        if message_epoch != group.epoch {
            return Err(Rejection {
                code: ErrorCode::StaleEpoch,
                message: "the group has moved on; process the newer commits and send again".into(),
                current_epoch: Some(group.epoch),
            });
        }
        let epoch = group.epoch;
        if kind == DeliveryKind::Application
            && let Some(settings) = &group.settings
            && !settings.allows(&sender, Action::Post)
        {
            return Err(forbidden(
                if settings.role_of(&sender) == rampart_proto::group::GroupRole::ReadOnly {
                    "you are a read-only member of this group: you may read but not post"
                } else {
                    "only the group's admins may post in this announcement group"
                },
            ));
        }
        let admin = group.settings.as_ref().is_some_and(|s| s.is_admin(&sender));
        let recipients: Vec<DeviceId> = group
            .members
            .iter()
            .copied()
            .filter(|d| *d != device)
            .collect();
        let expires_in = lifetime::check_send(&self.messages, kind, msg.expires_in, msg.recalls)
            .map_err(|r| reject(r.code, r.message))?;
        let now = self.clock.now_db();
        let application = kind == DeliveryKind::Application;
        let bind = if msg.attachments.is_empty() {
            Vec::new()
        } else if !application {
            return Err(reject(
                ErrorCode::BadRequest,
                "only application messages share files",
            ));
        } else {
            self.check_attachments(batch, &sender, msg.group, msg.key, &msg.attachments, now)
                .await?
        };
        if let Some(target) = msg.recalls {
            let (messages, blobs) = self
                .recall(batch, &sender, admin, msg.group, target, now)
                .await?;
            batch.recalled.extend(messages);
            batch.recalled_blobs.extend(blobs);
        }
        let expires_at = expires_in.map(|secs| lifetime::expires_at(now, secs));
        for blob in bind {
            batch.attach.push(Attach {
                blob,
                group: msg.group,
                key: msg.key.0,
                uploader: sender.clone(),
                at: now,
                expires_at,
            });
        }
        self.store_and_fan_out(
            batch,
            MessageRow {
                id: 0,
                group: msg.group,
                sender: device,
                kind,
                epoch,
                time: now,
                client_key: application.then_some(msg.key.0),
                expires_at,
                payload: msg.message,
            },
            &sender,
            &recipients,
        );
        self.remember(batch, device, msg.key, epoch);
        Ok((epoch, false))
    }

    /// The blobs `msg` may bind: each must exist, be complete and unexpired,
    /// have been uploaded by the sending account to this group, and be bound
    /// to no other message (this same key again is a resend: nothing to
    /// bind). Any failure refuses the whole message, with the same answer
    /// whatever the reason, so others' ids cannot be probed.
    async fn check_attachments(
        &self,
        batch: &Batch,
        sender: &Username,
        group: GroupId,
        key: IdempotencyKey,
        ids: &[BlobId],
        now: i64,
    ) -> Result<Vec<BlobId>, Rejection> {
        let mut unique: Vec<BlobId> = Vec::with_capacity(ids.len());
        for id in ids.iter().take(MAX_ATTACHMENTS) {
            if !unique.contains(id) {
                unique.push(*id);
            }
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT b.id, b.group_id, b.complete, b.message_key, b.expires_at, u.username              FROM blobs b JOIN users u ON u.id = b.uploader_user WHERE b.id IN (",
        );
        let mut list = q.separated(", ");
        for id in &unique {
            list.push_bind(id.as_bytes().to_vec());
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut bind = Vec::with_capacity(unique.len());
        for id in unique {
            let mut row = None;
            for r in &rows {
                if r.try_get::<&[u8], _>("id")? == id.as_bytes().as_slice() {
                    row = Some(r);
                }
            }
            let row = row.ok_or_else(not_yours)?;
            let usable = row.try_get::<&[u8], _>("group_id")? == group.as_bytes().as_slice()
                && row.try_get::<i64, _>("complete")? != 0
                && row.try_get::<&str, _>("username")? == sender.as_str()
                && row
                    .try_get::<Option<i64>, _>("expires_at")?
                    .is_none_or(|t| t > now);
            if !usable {
                return Err(not_yours());
            }
            let stored = row.try_get::<Option<&[u8]>, _>("message_key")?;
            let pending = batch.attach.iter().find(|a| a.blob == id).map(|a| a.key);
            match stored.or(pending.as_ref().map(|k| k.as_slice())) {
                None => bind.push(id),
                Some(bound) if bound == key.0.as_slice() => {}
                Some(_) => return Err(not_yours()),
            }
        }
        Ok(bind)
    }

    /// What a recall of `target` in `group` by `sender` deletes: the
    /// undelivered, unexpired messages accepted under that key, and the
    /// blobs bound to it (delivered or not). The sender may recall their
    /// own within the recall window (for blobs, counted from when they were
    /// sent), an admin of the group anything at any time. None stored (all
    /// delivered and no files, expired, or never sent): nothing to do, and
    /// clients judge the recall themselves. Some stored but none allowed:
    /// refused.
    async fn recall(
        &mut self,
        batch: &Batch,
        sender: &Username,
        admin: bool,
        group: GroupId,
        target: IdempotencyKey,
        now: i64,
    ) -> Result<(Vec<i64>, Vec<BlobId>), Rejection> {
        // (message id, sending device, server time); this batch first, as
        // it is not in the database yet.
        let mut found: Vec<(i64, DeviceId, i64)> = batch
            .messages
            .iter()
            .filter(|m| {
                m.group == group
                    && m.client_key == Some(target.0)
                    && m.expires_at.is_none_or(|t| t > now)
                    && batch.queue.iter().any(|q| q.2 == m.id)
            })
            .map(|m| (m.id, m.sender, m.time))
            .collect();
        let rows = sqlx::query(
            "SELECT m.id, m.sender_device, m.server_time FROM messages m \
             WHERE m.client_key = ? AND m.group_id = ? \
             AND (m.expires_at IS NULL OR m.expires_at > ?) \
             AND EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id) \
             ORDER BY m.id LIMIT ?",
        )
        .bind(target.0.as_slice())
        .bind(group.as_bytes().as_slice())
        .bind(now)
        .bind(MAX_RECALL_TARGETS)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            if let Some(device) = device_from_db(row.try_get("sender_device")?)
                && !found.iter().any(|f| f.0 == id)
            {
                found.push((id, device, row.try_get("server_time")?));
            }
        }
        // (blob, the sender's own, when bound); this batch first again.
        let mut files: Vec<(BlobId, bool, i64)> = batch
            .attach
            .iter()
            .filter(|a| a.group == group && a.key == target.0)
            .map(|a| (a.blob, a.uploader == *sender, a.at))
            .collect();
        let rows = sqlx::query(
            "SELECT b.id, u.username, b.attached_at FROM blobs b              JOIN users u ON u.id = b.uploader_user              WHERE b.group_id = ? AND b.message_key = ? LIMIT ?",
        )
        .bind(group.as_bytes().as_slice())
        .bind(target.0.as_slice())
        .bind(MAX_RECALL_TARGETS * MAX_ATTACHMENTS as i64)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let Ok(id) = BlobId::from_slice(row.try_get::<&[u8], _>("id")?) else {
                continue;
            };
            if !files.iter().any(|f| f.0 == id) {
                let own = row.try_get::<&str, _>("username")? == sender.as_str();
                let at = row.try_get::<Option<i64>, _>("attached_at")?.unwrap_or(0);
                files.push((id, own, at));
            }
        }
        if found.is_empty() && files.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let window_ms = i64::from(self.messages.recall_window_secs) * 1000;
        let mut allowed = Vec::with_capacity(found.len());
        let mut allowed_files = Vec::with_capacity(files.len());
        let mut too_late = false;
        for (id, device, time) in found {
            let own = self
                .device(device)
                .await?
                .is_some_and(|d| d.username == *sender);
            if admin || (own && now.saturating_sub(time) <= window_ms) {
                allowed.push(id);
            } else if own {
                too_late = true;
            }
        }
        for (id, own, at) in files {
            if admin || (own && now.saturating_sub(at) <= window_ms) {
                allowed_files.push(id);
            } else if own {
                too_late = true;
            }
        }
        if !allowed.is_empty() || !allowed_files.is_empty() {
            return Ok((allowed, allowed_files));
        }
        Err(if too_late {
            reject(
                ErrorCode::WindowClosed,
                lifetime::window_closed_message(self.messages.recall_window_secs),
            )
        } else {
            reject(
                ErrorCode::Forbidden,
                "only the sender, or an admin of the group, may recall this message",
            )
        })
    }

    async fn commit(
        &mut self,
        batch: &mut Batch,
        device: DeviceId,
        bundle: CommitBundle,
        settings: Option<GroupSettings>,
    ) -> Result<(u64, bool), Rejection> {
        if let Some(epoch) = self.duplicate(device, bundle.key) {
            return Ok((epoch, true));
        }
        let sender = self.sender_name(device).await?;
        let group_id = bundle.group;

        // Who is in the group now, creating it if this commit says so.
        let (kind, members_before) = match &bundle.create {
            Some(create) => {
                if self.groups.contains_key(&group_id) || bundle.epoch != 0 {
                    return Err(reject(
                        ErrorCode::Conflict,
                        "that group already exists (a new group starts at epoch 0)",
                    ));
                }
                match create {
                    Create::Group if group_id.kind() == GroupKind::Group => {}
                    Create::Direct { peer }
                        if group_id.kind() == GroupKind::Direct
                            && GroupId::direct(&sender, peer) == group_id => {}
                    _ => {
                        return Err(reject(
                            ErrorCode::BadRequest,
                            "the group id does not match the kind of group being created",
                        ));
                    }
                }
                (group_id.kind(), HashSet::from([device]))
            }
            None => {
                let group = self.groups.get(&group_id).ok_or_else(not_member)?;
                if !group.members.contains(&device) {
                    return Err(not_member());
                }
                if group.epoch != bundle.epoch {
                    return Err(Rejection {
                        code: ErrorCode::StaleEpoch,
                        message: "the group has moved on; process the newer commits and retry"
                            .into(),
                        current_epoch: Some(group.epoch),
                    });
                }
                (group.kind, group.members.clone())
            }
        };

        self.check_membership_change(&bundle, &sender, kind, &members_before)
            .await?;
        self.authorize_commit(
            batch,
            &bundle,
            &sender,
            kind,
            &members_before,
            settings.as_ref(),
        )
        .await?;
        let size = members_before.len() + bundle.added.len() - bundle.removed.len();
        if size > MAX_GROUP_DEVICES {
            return Err(reject(
                ErrorCode::TooLarge,
                format!("a group may have at most {MAX_GROUP_DEVICES} devices"),
            ));
        }

        // Accepted: from here on nothing fails.
        let old_epoch = bundle.epoch;
        let new_epoch = old_epoch + 1;
        let mut members = members_before.clone();
        for d in &bundle.removed {
            members.remove(d);
        }
        members.extend(bundle.added.iter().copied());
        // A 1:1 conversation has no settings: neither person administers it.
        let settings = settings.filter(|_| kind == GroupKind::Group);
        let encoded = settings.as_ref().map(GroupSettings::encode);
        let audited = match self.groups.get(&group_id) {
            None => Some("group_created"),
            Some(_) if !bundle.added.is_empty() || !bundle.removed.is_empty() => {
                Some("group_members_changed")
            }
            Some(old) if old.settings.as_ref().map(GroupSettings::encode) != encoded => {
                Some("group_settings_changed")
            }
            // A member's own key update: routine, not audited.
            Some(_) => None,
        };
        if let Some(action) = audited {
            let entry = crate::audit::Entry::new(
                action,
                crate::audit::Actor::Name(sender.to_string()),
                Outcome::Success,
            )
            .device(Some(device))
            .target(crate::audit::Target::Group(group_id))
            .detail("epoch", new_epoch)
            .detail("added", device_list(&bundle.added))
            .detail("removed", device_list(&bundle.removed));
            batch.audit.push((self.clock.now_db(), entry));
        }
        let existing = self.groups.insert(
            group_id,
            Group {
                kind,
                epoch: new_epoch,
                members,
                settings,
            },
        );
        let write = batch.groups.entry(group_id).or_insert_with(|| GroupWrite {
            created: existing.is_none().then_some(device),
            members_before: existing.map(|g| g.members).unwrap_or_default(),
            group_info: Vec::new(),
            settings: None,
        });
        write.group_info = bundle.group_info;
        write.settings = encoded;

        // Handshakes are pushed only once durable; see the module docs.
        batch.hold_pushes = true;
        let now = self.clock.now_db();
        // Everyone in the old epoch but the committer learns of it, removed
        // devices included, so they know they were removed.
        let commit_to: Vec<DeviceId> = members_before
            .iter()
            .copied()
            .filter(|d| *d != device)
            .collect();
        self.store_and_fan_out(
            batch,
            MessageRow {
                id: 0,
                group: group_id,
                sender: device,
                kind: DeliveryKind::Commit,
                epoch: old_epoch,
                time: now,
                client_key: None,
                expires_at: None,
                payload: bundle.commit,
            },
            &sender,
            &commit_to,
        );
        if let Some(welcome) = bundle.welcome {
            self.store_and_fan_out(
                batch,
                MessageRow {
                    id: 0,
                    group: group_id,
                    sender: device,
                    kind: DeliveryKind::Welcome,
                    epoch: new_epoch,
                    time: now,
                    client_key: None,
                    expires_at: None,
                    payload: welcome,
                },
                &sender,
                &bundle.added,
            );
        }
        self.remember(batch, device, bundle.key, new_epoch);
        Ok((new_epoch, false))
    }

    /// Whether the committer may make this change, by the group's settings
    /// (as mirrored before the commit) and the organisation's access policy:
    ///
    /// - creating a group needs an org role the policy lets create groups,
    ///   and the new group's settings must make its creator an admin; a
    ///   guest starts direct chats only with people it shares a group with;
    /// - adding another user, or removing another user's live device, needs
    ///   the `AddRemove` right (removing revoked devices, and one's own, is
    ///   open to every member: that is how they leave the keys); guests add
    ///   nobody, and guests join groups only if the policy allows;
    /// - changing the settings needs the `ChangeSettings` right (admins),
    ///   and must leave an admin;
    /// - a group never exceeds the policy's number of users.
    ///
    /// Reads the database (roles, policy) only for commits that add users
    /// or create a group: rare next to messages.
    async fn authorize_commit(
        &mut self,
        batch: &Batch,
        bundle: &CommitBundle,
        sender: &Username,
        kind: GroupKind,
        members_before: &HashSet<DeviceId>,
        new_settings: Option<&GroupSettings>,
    ) -> Result<(), Rejection> {
        let users_before: HashSet<Username> = members_before
            .iter()
            .filter_map(|d| self.devices.get(d).map(|d| d.username.clone()))
            .collect();
        let mut new_users: Vec<Username> = Vec::new();
        for d in &bundle.added {
            if let Some(device) = self.devices.get(d)
                && !users_before.contains(&device.username)
                && !new_users.contains(&device.username)
            {
                new_users.push(device.username.clone());
            }
        }
        // Removing a revoked device, or one's own, is open to every member;
        // so is committing a member's leave.
        let others: Vec<DeviceId> = bundle
            .removed
            .iter()
            .copied()
            .filter(|d| {
                self.devices
                    .get(d)
                    .is_some_and(|d| !d.revoked && d.username != *sender)
            })
            .collect();
        let removes_others = !others.is_empty() && {
            let leavers = self.leavers(batch, bundle.group, bundle.epoch).await?;
            others.iter().any(|d| !leavers.contains(d))
        };
        let needs_db = bundle.create.is_some() || !new_users.is_empty() || removes_others;
        let (access, sender_role) = if needs_db {
            (
                crate::admin::try_load_access(&self.pool).await?,
                self.role(sender).await?,
            )
        } else {
            (AccessPolicy::default(), Role::Member)
        };

        if let Some(create) = &bundle.create {
            match create {
                Create::Group => {
                    if !access.may_create_groups(sender_role) {
                        return Err(forbidden(match sender_role {
                            Role::Guest => "guests cannot create groups",
                            _ => "your organisation lets only its admins create groups",
                        }));
                    }
                    if !new_settings.is_some_and(|s| s.is_admin(sender)) {
                        return Err(forbidden(
                            "a new group needs settings that make its creator an admin",
                        ));
                    }
                }
                Create::Direct { peer } => {
                    if sender_role == Role::Guest && !self.share_a_group(sender, peer).await? {
                        return Err(forbidden(
                            "guests may start direct chats only with people they share a group with",
                        ));
                    }
                }
            }
        } else if kind == GroupKind::Group {
            let before = self
                .groups
                .get(&bundle.group)
                .and_then(|g| g.settings.clone());
            if let Some(before) = &before {
                if (!new_users.is_empty() || removes_others)
                    && !before.allows(sender, Action::AddRemove)
                {
                    return Err(forbidden(
                        "you may not add or remove members of this group; ask one of its admins",
                    ));
                }
                match new_settings {
                    None => {
                        return Err(forbidden("a group's settings cannot be removed"));
                    }
                    Some(after) if after != before => {
                        if !before.allows(sender, Action::ChangeSettings) {
                            return Err(forbidden(
                                "only the group's admins may change its roles or settings",
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        if kind == GroupKind::Group
            && let Some(after) = new_settings
            && after.admins().next().is_none()
        {
            return Err(forbidden("a group must keep at least one admin"));
        }

        if sender_role == Role::Guest && kind == GroupKind::Group && removes_others {
            return Err(forbidden("guests cannot remove people from groups"));
        }
        if !new_users.is_empty() && kind == GroupKind::Group {
            if sender_role == Role::Guest {
                return Err(forbidden("guests cannot add people to groups"));
            }
            for user in &new_users {
                if self.role(user).await? == Role::Guest && !access.guests_may_be_added {
                    return Err(forbidden(format!(
                        "your organisation does not allow guests such as @{user} in groups"
                    )));
                }
            }
            let mut users_after: HashSet<&Username> = users_before.iter().collect();
            for d in &bundle.removed {
                if let Some(device) = self.devices.get(d) {
                    // Only if it was the user's last device in the group.
                    let others = members_before.iter().any(|m| {
                        m != d
                            && !bundle.removed.contains(m)
                            && self
                                .devices
                                .get(m)
                                .is_some_and(|o| o.username == device.username)
                    });
                    if !others {
                        users_after.remove(&device.username);
                    }
                }
            }
            users_after.extend(new_users.iter());
            if users_after.len() > access.max_group_users as usize {
                return Err(reject(
                    ErrorCode::TooLarge,
                    format!(
                        "your organisation allows at most {} people in a group",
                        access.max_group_users
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Devices that proposed their own removal in `epoch` of `group` (the
    /// only proposal the server relays from a member, checked in
    /// `super::verify`), from this batch and the stored log. The server's
    /// own removal proposals name revoked devices, which anyone may remove.
    async fn leavers(
        &self,
        batch: &Batch,
        group: GroupId,
        epoch: u64,
    ) -> Result<HashSet<DeviceId>, Rejection> {
        let mut out: HashSet<DeviceId> = batch
            .messages
            .iter()
            .filter(|m| m.group == group && m.kind == DeliveryKind::Proposal && m.epoch == epoch)
            .map(|m| m.sender)
            .collect();
        let stored: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT sender_device FROM messages WHERE group_id = ? AND kind = ? AND epoch = ?",
        )
        .bind(group.as_bytes().as_slice())
        .bind(i64::from(DeliveryKind::Proposal.to_u8()))
        .bind(u64_to_db(epoch))
        .fetch_all(&self.pool)
        .await?;
        out.extend(stored.into_iter().filter_map(device_from_db));
        Ok(out)
    }

    /// The organisation role of a user (a user the server does not know is
    /// treated as a guest: least privilege).
    async fn role(&self, user: &Username) -> Result<Role, Rejection> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE username = ?")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(role.map_or(Role::Guest, |r| crate::auth::role_from_db(&r)))
    }

    /// Whether two users have a live device each in one named group.
    async fn share_a_group(&self, a: &Username, b: &Username) -> Result<bool, Rejection> {
        Ok(self.groups.values().any(|g| {
            g.kind == GroupKind::Group && {
                let mut has_a = false;
                let mut has_b = false;
                for d in &g.members {
                    if let Some(device) = self.devices.get(d).filter(|d| !d.revoked) {
                        has_a |= device.username == *a;
                        has_b |= device.username == *b;
                    }
                }
                has_a && has_b
            }
        }))
    }

    /// Remembers a refusal for want of a right, to record it with the batch.
    fn note_denial(
        &self,
        batch: &mut Batch,
        device: DeviceId,
        result: &Result<(u64, bool), Rejection>,
    ) {
        // Not being a member counts too: an admin of one group touching
        // another, or a removed device trying its luck.
        if let Err(r) = result
            && matches!(r.code, ErrorCode::Forbidden | ErrorCode::NotMember)
        {
            batch
                .denied
                .push((device, self.clock.now_db(), r.message.clone()));
        }
    }

    /// Proposes, as the groups' external sender, the removal of every
    /// revoked device still in `group`, in its current epoch (once per
    /// epoch). See [`super::external`].
    async fn propose_removals(&mut self, batch: &mut Batch, group_id: GroupId) {
        let Some(group) = self.groups.get(&group_id) else {
            return;
        };
        let epoch = group.epoch;
        let already = self
            .proposed
            .get(&group_id)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, d)| d);
        let revoked: Vec<DeviceId> = group
            .members
            .iter()
            .copied()
            .filter(|d| self.devices.get(d).is_some_and(|d| d.revoked))
            .filter(|d| already.is_none_or(|a| !a.contains(d)))
            .collect();
        if revoked.is_empty() {
            return;
        }
        let recipients: Vec<DeviceId> = group.members.iter().copied().collect();
        match self
            .removal_payloads(batch, group_id, epoch, &revoked)
            .await
        {
            Ok(payloads) => {
                let now = self.clock.now_db();
                for (device, payload) in payloads {
                    let Some(name) = self.devices.get(&device).map(|d| d.username.clone()) else {
                        continue;
                    };
                    // The frame names the device the proposal is about as its
                    // sender; clients go by the MLS sender (the server).
                    self.store_and_fan_out(
                        batch,
                        MessageRow {
                            id: 0,
                            group: group_id,
                            sender: device,
                            kind: DeliveryKind::Proposal,
                            epoch,
                            time: now,
                            client_key: None,
                            expires_at: None,
                            payload,
                        },
                        &name,
                        &recipients,
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "proposing the removal of revoked devices failed");
                return;
            }
        }
        let entry = self
            .proposed
            .entry(group_id)
            .or_insert_with(|| (epoch, HashSet::new()));
        if entry.0 != epoch {
            *entry = (epoch, HashSet::new());
        }
        entry.1.extend(revoked);
    }

    /// Signed Remove proposals for `devices`, found by signature key in the
    /// ratchet tree of the group's latest GroupInfo (this batch's, if a
    /// commit in it changed the group).
    async fn removal_payloads(
        &self,
        batch: &Batch,
        group: GroupId,
        epoch: u64,
        devices: &[DeviceId],
    ) -> Result<Vec<(DeviceId, Vec<u8>)>, sqlx::Error> {
        let group_info = match batch.groups.get(&group) {
            Some(write) if !write.group_info.is_empty() => write.group_info.clone(),
            _ => sqlx::query_scalar::<_, Vec<u8>>("SELECT group_info FROM groups WHERE id = ?")
                .bind(group.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or_default(),
        };
        let keys = crate::db::signature_keys(&self.pool, devices).await?;
        let leaves = match super::inspect::members(&group_info) {
            Ok(members) => members,
            Err(r) => {
                tracing::warn!(reason = r.message, "the stored group info does not verify");
                Vec::new()
            }
        };
        let mut out = Vec::new();
        for (device, leaf) in devices.iter().filter_map(|device| {
            let key = keys.get(device)?;
            leaves
                .iter()
                .find(|(_, k)| k == key)
                .map(|(leaf, _)| (*device, *leaf))
        }) {
            match self.signer.remove_proposal(&group, epoch, leaf) {
                Ok(payload) => out.push((device, payload)),
                Err(e) => tracing::warn!(error = e, "signing a removal proposal failed"),
            }
        }
        Ok(out)
    }

    /// `added` must be live devices not yet in the group (in a direct chat,
    /// only the two users' devices); `removed` must be members; no device twice.
    async fn check_membership_change(
        &mut self,
        bundle: &CommitBundle,
        sender: &Username,
        kind: GroupKind,
        members: &HashSet<DeviceId>,
    ) -> Result<(), Rejection> {
        let mut seen = HashSet::with_capacity(bundle.added.len() + bundle.removed.len());
        for d in bundle.added.iter().chain(&bundle.removed) {
            if !seen.insert(*d) {
                return Err(reject(
                    ErrorCode::BadRequest,
                    format!("device {d} appears twice in added/removed"),
                ));
            }
        }
        for d in &bundle.removed {
            if !members.contains(d) {
                return Err(reject(
                    ErrorCode::BadRequest,
                    format!("device {d} is not a member and cannot be removed"),
                ));
            }
        }
        for d in &bundle.added {
            if members.contains(d) {
                return Err(reject(
                    ErrorCode::Conflict,
                    format!("device {d} is already a member"),
                ));
            }
            let device = match self.device(*d).await? {
                Some(device) if !device.revoked => device,
                _ => {
                    return Err(reject(
                        ErrorCode::NotFound,
                        format!("device {d} does not exist or was revoked"),
                    ));
                }
            };
            if kind == GroupKind::Direct
                && device.username != *sender
                && GroupId::direct(sender, &device.username) != bundle.group
            {
                return Err(reject(
                    ErrorCode::Forbidden,
                    format!("device {d} belongs to neither user of this direct chat"),
                ));
            }
        }
        Ok(())
    }

    /// Stores a message once and gives each recipient the next number in its
    /// queue, pushing to those online (now, or once durable if held).
    fn store_and_fan_out(
        &mut self,
        batch: &mut Batch,
        mut row: MessageRow,
        sender: &Username,
        recipients: &[DeviceId],
    ) {
        row.id = self.next_message_id;
        self.next_message_id += 1;
        for &to in recipients {
            let Some(device) = self.devices.get_mut(&to) else {
                // Members are loaded when added; a miss means a corrupt row.
                tracing::warn!(device = %to, "member device missing from cache");
                continue;
            };
            // A revoked device stays a member until a commit removes its
            // leaf, but receives nothing more.
            if device.revoked {
                continue;
            }
            let seq = device.next_seq;
            device.next_seq += 1;
            batch.queue.push((device_to_db(to), u64_to_db(seq), row.id));
            if self.conns.contains_key(&to) {
                let frame = Bytes::from(Delivery::encode_frame(
                    seq,
                    &row.group,
                    sender,
                    row.sender,
                    row.kind,
                    row.epoch,
                    u64_from_db(row.time),
                    row.expires_at.map(u64_from_db),
                    &row.payload,
                ));
                let out = Outbound {
                    seq,
                    frame,
                    expires_at: row.expires_at.map(u64_from_db),
                };
                if batch.hold_pushes {
                    batch.held.push((to, out));
                } else {
                    self.push(to, out);
                }
            }
        }
        batch.messages.push(row);
    }

    /// Hands a frame to a connection without waiting; a connection that cannot
    /// keep up is dropped (it reconnects and reads its queue from the database).
    fn push(&mut self, to: DeviceId, out: Outbound) {
        let Some(conn) = self.conns.get(&to) else {
            return;
        };
        match conn.tx.try_send(out) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::info!(device = %to, "connection too far behind; dropping it");
                self.conns.remove(&to);
            }
            Err(TrySendError::Closed(_)) => {
                self.conns.remove(&to);
            }
        }
    }

    /// Makes the batch durable, then answers. On failure everything in the
    /// batch is answered `internal`, connections are dropped (their clients
    /// reconnect and re-read the queue) and the caches are reloaded so memory
    /// matches the disk again.
    async fn finish(&mut self, mut batch: Batch) {
        let result = self.write(&mut batch).await;
        match result {
            Ok(()) => {
                self.metrics.messages_relayed(batch.relayed);
                self.metrics.handshakes_accepted(batch.handshakes);
                if !batch.recalled_blobs.is_empty() {
                    // Off the actor: an object store may take a while.
                    // Their rows are gone; a failed deletion leaves an
                    // object without a row, which the collector removes.
                    let ids = std::mem::take(&mut batch.recalled_blobs);
                    let blobs = self.blobs.clone();
                    tracing::debug!(blobs = ids.len(), "recalled blobs");
                    tokio::spawn(async move {
                        for id in ids {
                            discard(blobs.store.as_ref(), id, None, true).await;
                        }
                    });
                }
                for (to, out) in std::mem::take(&mut batch.held) {
                    self.push(to, out);
                }
                for (reply, frame) in batch.replies {
                    let _ = reply.send(frame);
                }
                for (reply, backlog_until) in batch.connects {
                    let _ = reply.send(Some(backlog_until));
                }
                for (_, reply) in batch.revoked {
                    let _ = reply.send(true);
                }
                if !batch.recalled.is_empty() {
                    tracing::debug!(
                        messages = batch.recalled.len(),
                        "recalled undelivered messages"
                    );
                    // Full: one is already waiting, and it covers these rows too.
                    let _ = self.checkpoints.try_send(());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery actor: writing a batch failed");
                for (reply, frame) in batch.replies {
                    let request_id = match frame {
                        ServerFrame::Accepted { request_id, .. }
                        | ServerFrame::Rejected { request_id, .. } => request_id,
                        _ => 0,
                    };
                    let _ = reply.send(super::internal_rejection(request_id));
                }
                for (reply, _) in batch.connects {
                    let _ = reply.send(None);
                }
                for (_, reply) in batch.revoked {
                    let _ = reply.send(false);
                }
                self.conns.clear();
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %e, "delivery actor: reloading state failed");
                }
            }
        }
        for reply in batch.flushes {
            let _ = reply.send(());
        }
    }

    async fn write(&self, batch: &mut Batch) -> Result<(), sqlx::Error> {
        if batch.messages.is_empty()
            && batch.acks.is_empty()
            && batch.groups.is_empty()
            && batch.idempotency.is_empty()
            && batch.revoked.is_empty()
            && batch.recalled.is_empty()
            && batch.attach.is_empty()
            && batch.recalled_blobs.is_empty()
            && batch.denied.is_empty()
            && batch.audit.is_empty()
        {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.clock.now_db();
        for (id, write) in std::mem::take(&mut batch.groups) {
            let Some(group) = self.groups.get(&id) else {
                continue;
            };
            let gid = id.as_bytes().as_slice();
            match write.created {
                Some(creator) => {
                    sqlx::query(
                        "INSERT INTO groups (id, kind, epoch, group_info, settings, created_by_device, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(gid)
                    .bind(match group.kind {
                        GroupKind::Direct => "direct",
                        GroupKind::Group => "group",
                    })
                    .bind(u64_to_db(group.epoch))
                    .bind(write.group_info)
                    .bind(write.settings)
                    .bind(device_to_db(creator))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE groups SET epoch = ?, group_info = ?, settings = ? WHERE id = ?",
                    )
                    .bind(u64_to_db(group.epoch))
                    .bind(write.group_info)
                    .bind(write.settings)
                    .bind(gid)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for gone in write.members_before.difference(&group.members) {
                sqlx::query("DELETE FROM group_members WHERE group_id = ? AND device_id = ?")
                    .bind(gid)
                    .bind(device_to_db(*gone))
                    .execute(&mut *tx)
                    .await?;
            }
            let joined: Vec<i64> = group
                .members
                .difference(&write.members_before)
                .map(|d| device_to_db(*d))
                .collect();
            for chunk in joined.chunks(ROWS_PER_INSERT) {
                QueryBuilder::<Sqlite>::new("INSERT INTO group_members (group_id, device_id) ")
                    .push_values(chunk, |mut b, d| {
                        b.push_bind(gid).push_bind(*d);
                    })
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let messages = std::mem::take(&mut batch.messages);
        let mut rows = messages.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk = rows.by_ref().take(ROWS_PER_INSERT);
            QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages \
                 (id, group_id, sender_device, kind, epoch, server_time, client_key, expires_at, payload) ",
            )
            .push_values(chunk, |mut b, m| {
                b.push_bind(m.id)
                    .push_bind(m.group.as_bytes().to_vec())
                    .push_bind(device_to_db(m.sender))
                    .push_bind(i64::from(m.kind.to_u8()))
                    .push_bind(u64_to_db(m.epoch))
                    .push_bind(m.time)
                    .push_bind(m.client_key.map(|k| k.to_vec()))
                    .push_bind(m.expires_at)
                    .push_bind(m.payload);
            })
            .build()
            .execute(&mut *tx)
            .await?;
        }
        for chunk in batch.queue.chunks(ROWS_PER_INSERT * 3) {
            QueryBuilder::<Sqlite>::new("INSERT INTO queue (device_id, seq, message_id) ")
                .push_values(chunk, |mut b, (d, s, m)| {
                    b.push_bind(*d).push_bind(*s).push_bind(*m);
                })
                .build()
                .execute(&mut *tx)
                .await?;
        }
        for chunk in batch.idempotency.chunks(ROWS_PER_INSERT * 2) {
            // REPLACE: a key evicted from memory but still in the table must
            // not fail the whole batch.
            QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO idempotency (device_id, key, request_result_epoch, created_at) ",
            )
            .push_values(chunk, |mut b, (d, k, e)| {
                b.push_bind(*d).push_bind(k.to_vec()).push_bind(*e).push_bind(now);
            })
            .build()
            .execute(&mut *tx)
            .await?;
        }
        for a in &batch.attach {
            // Only if still unbound: a concurrent DELETE by the uploader
            // (or the orphan collector) may have removed it since the
            // check, and then the message simply shares a deleted file.
            let bound = sqlx::query(
                "UPDATE blobs SET message_key = ?, attached_at = ?, expires_at = ?                  WHERE id = ? AND message_key IS NULL",
            )
            .bind(a.key.as_slice())
            .bind(a.at)
            .bind(a.expires_at)
            .bind(a.blob.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if bound == 0 {
                tracing::info!(blob = ?a.blob, "a file was deleted while its message was sent");
            }
        }
        // After this batch's inserts, so a target stored in this batch goes too.
        for chunk in batch.recalled.chunks(ROWS_PER_INSERT) {
            delete_messages(&mut tx, chunk).await?;
        }
        // After the binds, so a file sent and recalled in one batch goes too.
        for chunk in batch.recalled_blobs.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM blobs WHERE id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_bytes().to_vec());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        for (device, up_to) in &batch.acks {
            let (d, s) = (device_to_db(*device), u64_to_db(*up_to));
            sqlx::query("DELETE FROM queue WHERE device_id = ? AND seq <= ?")
                .bind(d)
                .bind(s)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE devices SET acked_seq = MAX(acked_seq, ?) WHERE id = ?")
                .bind(s)
                .bind(d)
                .execute(&mut *tx)
                .await?;
        }
        for (device, at, reason) in &batch.denied {
            let user_id: Option<i64> =
                sqlx::query_scalar("SELECT user_id FROM devices WHERE id = ?")
                    .bind(device_to_db(*device))
                    .fetch_optional(&mut *tx)
                    .await?;
            let event = Event::new(SecurityEventKind::AccessDenied, user_id, ClientIp(None))
                .device(*device)
                .detail("reason", reason);
            security_events::record(&mut *tx, *at, &event).await?;
        }
        for (at, entry) in std::mem::take(&mut batch.audit) {
            crate::audit::append(&mut *tx, at, &entry).await?;
        }
        // After this batch's inserts, so nothing queued for a revoked device survives.
        for (device, _) in &batch.revoked {
            sqlx::query("DELETE FROM queue WHERE device_id = ?")
                .bind(device_to_db(*device))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// Device ids for an audit entry: the first few, then how many more.
fn device_list(devices: &[DeviceId]) -> String {
    const SHOWN: usize = 16;
    let mut out: Vec<String> = devices.iter().take(SHOWN).map(|d| d.to_string()).collect();
    if devices.len() > SHOWN {
        out.push(format!("+{}", devices.len() - SHOWN));
    }
    out.join(",")
}

fn answer(request_id: u32, result: Result<(u64, bool), Rejection>) -> ServerFrame {
    match result {
        Ok((epoch, duplicate)) => ServerFrame::Accepted {
            request_id,
            epoch,
            duplicate,
        },
        Err(r) => ServerFrame::Rejected {
            request_id,
            code: r.code,
            current_epoch: r.current_epoch,
            message: r.message,
        },
    }
}

const DEVICE_QUERY_ALL: &str = "SELECT d.id, d.revoked, d.acked_seq, u.username, \
     (SELECT MAX(q.seq) FROM queue q WHERE q.device_id = d.id) AS max_seq \
     FROM devices d JOIN users u ON u.id = d.user_id";
const DEVICE_QUERY_ONE: &str = "SELECT d.id, d.revoked, d.acked_seq, u.username, \
     (SELECT MAX(q.seq) FROM queue q WHERE q.device_id = d.id) AS max_seq \
     FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?";

fn device_from_row(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<Option<(DeviceId, Device)>, sqlx::Error> {
    let Some(id) = device_from_db(row.try_get("id")?) else {
        return Ok(None);
    };
    let Ok(username) = Username::parse(row.try_get::<&str, _>("username")?) else {
        return Ok(None);
    };
    let acked = u64_from_db(row.try_get("acked_seq")?);
    let max_seq = row
        .try_get::<Option<i64>, _>("max_seq")?
        .map(u64_from_db)
        .unwrap_or(0);
    Ok(Some((
        id,
        Device {
            username,
            next_seq: acked.max(max_seq) + 1,
            revoked: row.try_get::<i64, _>("revoked")? != 0,
        },
    )))
}

/// Deletes messages and their queue rows by id, first raising each affected
/// device's `acked_seq` past the deleted rows so that its sequence numbers
/// never restart below a number it may have seen.
async fn delete_messages(tx: &mut sqlx::SqliteConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    let in_ids = |q: &mut QueryBuilder<Sqlite>| {
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
    };
    let mut q = QueryBuilder::<Sqlite>::new(
        "UPDATE devices SET acked_seq = MAX(acked_seq, x.s) FROM \
         (SELECT device_id AS d, MAX(seq) AS s FROM queue WHERE message_id IN (",
    );
    in_ids(&mut q);
    q.push(") GROUP BY device_id) AS x WHERE devices.id = x.d");
    q.build().execute(&mut *tx).await?;
    let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM queue WHERE message_id IN (");
    in_ids(&mut q);
    q.push(")");
    q.build().execute(&mut *tx).await?;
    let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE id IN (");
    in_ids(&mut q);
    q.push(")");
    q.build().execute(&mut *tx).await?;
    Ok(())
}

/// Deletes what no queue references any more and expired idempotency keys.
/// Group state (epoch, GroupInfo) lives in `groups`, never in `messages`.
pub async fn cleanup(pool: &SqlitePool, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency WHERE created_at < ?")
        .bind(now_ms - IDEMPOTENCY_TTL_MS)
        .execute(pool)
        .await?;
    sqlx::query(
        "DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m \
         WHERE NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id) \
         AND NOT (m.kind = ? AND m.epoch = (SELECT g.epoch FROM groups g WHERE g.id = m.group_id)) \
         LIMIT 10000)",
    )
    // Proposals of a group's current epoch stay: a commit may still name
    // them by reference, and the server checks it against them.
    .bind(i64::from(DeliveryKind::Proposal.to_u8()))
    .execute(pool)
    .await?;
    Ok(())
}
