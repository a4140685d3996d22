//! One WebSocket per connected device: backlog from the database, then live
//! pushes from the actor, while requests are read and answered concurrently
//! (a client may pipeline many sends; answers come back as they are ready).
//!
//! A message whose expiry has passed (by the server clock) is never sent,
//! from the backlog or live, even if the purge has not deleted it yet.
//!
//! After the backlog, each connection also watches the DLP policy revision
//! (see `crate::dlp`) and sends `PolicyChanged`: right away if a policy is
//! set, then on every change. The watch channel holds only the latest
//! revision, so nothing queues up behind a slow socket.

use super::mls::{self, Refusal};
use super::verify;
use super::{CONNECTION_BUFFER, Op, Outbound, internal_rejection};
use crate::auth::AuthDevice;
use crate::clock::Clock;
use crate::db::{device_to_db, u64_from_db, u64_to_db};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use rampart_proto::codec::DecodeError;
use rampart_proto::frame::{ClientFrame, Delivery, DeliveryKind, ServerFrame};
use rampart_proto::limits::MAX_FRAME_BYTES;
use rampart_proto::{DeviceId, ErrorCode, GroupId, Username};
use sqlx::Row as _;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

/// Concurrent WebSockets per server; each costs a task and small buffers.
pub const MAX_WEBSOCKETS: usize = 10_000;
/// Requests one connection may have waiting for the actor.
const MAX_IN_FLIGHT: usize = 256;
/// Backlog rows read per query.
const BACKLOG_PAGE: i64 = 256;
/// Socket buffers are kept small so an idle connection costs little memory.
const SOCKET_BUFFER: usize = 4 * 1024;

/// `GET /v1/ws`: authenticated before the upgrade (401 otherwise).
pub async fn upgrade(
    State(state): State<AppState>,
    auth: AuthDevice,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let permit =
        state.ws_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable("the server has too many connections; retry later")
        })?;
    Ok(ws
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES + SOCKET_BUFFER)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(socket, state, auth.device_id).await;
            drop(permit);
        }))
}

fn binary(frame: &ServerFrame) -> Message {
    Message::Binary(Bytes::from(frame.encode()))
}

fn error_frame(code: ErrorCode, message: impl Into<String>) -> Message {
    binary(&ServerFrame::Error {
        code,
        message: message.into(),
    })
}

fn refusal(request_id: u32, r: Refusal) -> ServerFrame {
    ServerFrame::Rejected {
        request_id,
        code: r.code,
        current_epoch: None,
        message: r.message.into(),
    }
}

/// Waits for the actor's answer; a vanished actor means nothing was stored.
async fn reply_future(request_id: u32, rx: oneshot::Receiver<ServerFrame>) -> ServerFrame {
    rx.await.unwrap_or_else(|_| internal_rejection(request_id))
}

async fn run(socket: WebSocket, state: AppState, device: DeviceId) {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(CONNECTION_BUFFER);
    let (kick_tx, mut kick_rx) = oneshot::channel::<&'static str>();
    let Some(backlog_until) = state
        .delivery
        .connect(device, conn_id, out_tx, kick_tx)
        .await
    else {
        let _ = sink
            .send(error_frame(
                ErrorCode::Unauthorized,
                "this device may not connect",
            ))
            .await;
        let _ = sink.close().await;
        return;
    };
    let mut backlog = read_backlog(
        state.pool.clone(),
        state.clock.clone(),
        device,
        backlog_until,
    );
    let mut backlog_done = false;
    let mut pending = FuturesUnordered::new();
    let mut shutdown = state.shutdown.clone();
    let mut closing: Option<Message> = None;
    let mut kick_open = true;
    // The current revision counts as unseen when there is one: a client may
    // have fetched the policy just before it changed and it connected.
    let mut policy = state.policy_revision.clone();
    if *policy.borrow_and_update() > 0 {
        policy.mark_changed();
    }
    let mut policy_open = true;

    loop {
        tokio::select! {
            biased;
            // Closed on purpose (revoked, password changed): at once, even
            // mid-backlog, and before `out_rx` reports its closed channel. A
            // merely dropped sender (replaced connection) ends the
            // connection through `out_rx` as before.
            kicked = &mut kick_rx, if kick_open => match kicked {
                Ok(reason) => {
                    closing = Some(error_frame(ErrorCode::Unauthorized, reason));
                    break;
                }
                Err(_) => kick_open = false,
            },
            // Answers first: they free in-flight slots.
            Some(answer) = pending.next(), if !pending.is_empty() => {
                if sink.send(binary(&answer)).await.is_err() {
                    break;
                }
            }
            item = backlog.recv(), if !backlog_done => match item {
                Some(Ok(frame)) => {
                    if sink.send(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "reading backlog failed");
                    closing = Some(error_frame(ErrorCode::Internal, "internal server error"));
                    break;
                }
                // The reader ends right after sending BacklogDone.
                None => backlog_done = true,
            },
            out = out_rx.recv(), if backlog_done => match out {
                // The backlog already carried everything below `backlog_until`.
                Some(out) if out.seq < backlog_until => {}
                // Expired while waiting here (behind a long backlog).
                Some(out) if out.expires_at.is_some_and(|t| t <= state.clock.now_ms()) => {}
                Some(out) => {
                    if sink.send(Message::Binary(out.frame)).await.is_err() {
                        break;
                    }
                }
                None => {
                    closing = Some(error_frame(
                        ErrorCode::Internal,
                        "connection dropped by the server (replaced by a newer one, or too far behind); reconnect to resume",
                    ));
                    break;
                }
            },
            // After BacklogDone, so the backlog-then-BacklogDone order holds.
            changed = policy.changed(), if backlog_done && policy_open => match changed {
                Ok(()) => {
                    let revision = *policy.borrow_and_update();
                    if sink.send(binary(&ServerFrame::PolicyChanged { revision })).await.is_err() {
                        break;
                    }
                }
                // The server is going away; shutdown closes the socket.
                Err(_) => policy_open = false,
            },
            incoming = stream.next(), if pending.len() < MAX_IN_FLIGHT => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Text(_))) => {
                        closing = Some(error_frame(ErrorCode::BadRequest, "only binary frames are accepted"));
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        break;
                    }
                };
                let frame = match ClientFrame::decode(&bytes) {
                    Ok(frame) => frame,
                    Err(e) => {
                        let code = match e {
                            DecodeError::TooLong { .. } => ErrorCode::TooLarge,
                            _ => ErrorCode::BadRequest,
                        };
                        closing = Some(error_frame(code, format!("bad frame: {e}")));
                        break;
                    }
                };
                match handle(&state, device, frame).await {
                    Handled::Now(answer) => {
                        if sink.send(binary(&answer)).await.is_err() {
                            break;
                        }
                    }
                    Handled::Later(request_id, rx) => pending.push(reply_future(request_id, rx)),
                    Handled::Quiet => {}
                }
            }
            _ = shutdown.changed() => {
                closing = Some(error_frame(ErrorCode::Internal, "the server is shutting down"));
                break;
            }
        }
    }
    // Answer what the actor is already deciding: the client should hear how.
    while let Some(answer) = pending.next().await {
        if sink.send(binary(&answer)).await.is_err() {
            break;
        }
    }
    if let Some(msg) = closing {
        let _ = sink.send(msg).await;
    }
    let _ = sink.close().await;
    state.delivery.disconnect(device, conn_id).await;
}

enum Handled {
    /// Answered on sight (refused framing).
    Now(ServerFrame),
    /// Handed to the actor; its answer arrives on the receiver.
    Later(u32, oneshot::Receiver<ServerFrame>),
    /// Nothing to answer (acks).
    Quiet,
}

async fn handle(state: &AppState, device: DeviceId, frame: ClientFrame) -> Handled {
    let (request_id, reply, rx) = match &frame {
        ClientFrame::Send(m) => {
            let (tx, rx) = oneshot::channel();
            (m.request_id, tx, rx)
        }
        ClientFrame::Commit(c) => {
            let (tx, rx) = oneshot::channel();
            (c.request_id, tx, rx)
        }
        ClientFrame::Ack { up_to } => {
            state
                .delivery
                .submit(Op::Ack {
                    device,
                    up_to: *up_to,
                })
                .await;
            return Handled::Quiet;
        }
    };
    let op = match frame {
        ClientFrame::Send(msg) => match mls::check_send(&msg) {
            Ok((kind, epoch)) => {
                if let Err(r) = verify::proposal(state, device, &msg, kind, epoch).await {
                    return Handled::Now(refusal(request_id, r));
                }
                Op::Send {
                    device,
                    msg,
                    kind,
                    epoch,
                    reply,
                }
            }
            Err(r) => return Handled::Now(refusal(request_id, r)),
        },
        ClientFrame::Commit(bundle) => match mls::check_commit(&bundle) {
            Ok(settings) => {
                if let Err(r) = verify::commit(state, device, &bundle).await {
                    return Handled::Now(refusal(request_id, r));
                }
                Op::Commit {
                    device,
                    bundle: Box::new(bundle),
                    settings,
                    reply,
                }
            }
            Err(r) => return Handled::Now(refusal(request_id, r)),
        },
        ClientFrame::Ack { .. } => return Handled::Quiet,
    };
    if state.delivery.submit(op).await {
        Handled::Later(request_id, rx)
    } else {
        Handled::Now(internal_rejection(request_id))
    }
}

/// Reads the device's queue below `until` in pages on a helper task (WAL:
/// reads never block the actor's writes), ending with `BacklogDone`.
/// Messages expired by `clock` when their page is read are skipped.
fn read_backlog(
    pool: sqlx::SqlitePool,
    clock: Clock,
    device: DeviceId,
    until: u64,
) -> mpsc::Receiver<Result<Bytes, sqlx::Error>> {
    let (tx, rx) = mpsc::channel(BACKLOG_PAGE as usize);
    tokio::spawn(async move {
        let mut after: i64 = 0;
        loop {
            let page = backlog_page(&pool, device, after, until, clock.now_db()).await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for frame in page.frames {
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            match page.last {
                Some(last) if page.full => after = last,
                _ => break,
            }
        }
        let done = ServerFrame::BacklogDone {
            up_to: until.saturating_sub(1),
        };
        let _ = tx.send(Ok(Bytes::from(done.encode()))).await;
    });
    rx
}

async fn backlog_page(
    pool: &sqlx::SqlitePool,
    device: DeviceId,
    after: i64,
    until: u64,
    now: i64,
) -> Result<Page, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT q.seq, m.group_id, m.sender_device, m.kind, m.epoch, m.server_time, m.expires_at, \
         m.payload, u.username \
         FROM queue q JOIN messages m ON m.id = q.message_id \
         JOIN devices d ON d.id = m.sender_device JOIN users u ON u.id = d.user_id \
         WHERE q.device_id = ? AND q.seq > ? AND q.seq < ? \
         AND (m.expires_at IS NULL OR m.expires_at > ?) ORDER BY q.seq LIMIT ?",
    )
    .bind(device_to_db(device))
    .bind(after)
    .bind(u64_to_db(until))
    .bind(now)
    .bind(BACKLOG_PAGE)
    .fetch_all(pool)
    .await?;
    let mut page = Page {
        frames: Vec::with_capacity(rows.len()),
        last: None,
        full: rows.len() as i64 == BACKLOG_PAGE,
    };
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        page.last = Some(seq);
        let decoded = (
            GroupId::from_slice(row.try_get::<&[u8], _>("group_id")?).ok(),
            Username::parse(row.try_get::<&str, _>("username")?).ok(),
            crate::db::device_from_db(row.try_get("sender_device")?),
            u8::try_from(row.try_get::<i64, _>("kind")?)
                .ok()
                .and_then(|k| DeliveryKind::from_u8(k).ok()),
        );
        let (Some(group), Some(sender), Some(sender_device), Some(kind)) = decoded else {
            tracing::warn!(seq, "skipping a corrupt queued message");
            continue;
        };
        let frame = Delivery::encode_frame(
            u64_from_db(seq),
            &group,
            &sender,
            sender_device,
            kind,
            u64_from_db(row.try_get("epoch")?),
            u64_from_db(row.try_get("server_time")?),
            row.try_get::<Option<i64>, _>("expires_at")?
                .map(u64_from_db),
            row.try_get::<&[u8], _>("payload")?,
        );
        page.frames.push(Bytes::from(frame));
    }
    Ok(page)
}

struct Page {
    frames: Vec<Bytes>,
    /// The last sequence number read, corrupt rows included.
    last: Option<i64>,
    /// Whether more rows may follow.
    full: bool,
}
