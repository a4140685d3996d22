//! The delivery service: one ordered log per group, per-device queues with
//! increasing sequence numbers, and a WebSocket per device.
//!
//! A single actor task ([`actor`]) owns all mutable delivery state and is the
//! only writer of the delivery tables, so there are no locks: connection
//! tasks ([`ws`]) send it operations on a channel and await the answers.

pub mod actor;
pub mod external;
pub mod inspect;
pub mod lifetime;
pub mod mls;
pub mod verify;
pub mod ws;

use bytes::Bytes;
use rampart_proto::frame::{CommitBundle, DeliveryKind, SendMessage, ServerFrame};
use rampart_proto::group::GroupSettings;
use rampart_proto::{DeviceId, ErrorCode};
use tokio::sync::{mpsc, oneshot};

/// An encoded `Deliver` frame on its way to a connection, with its sequence
/// number so the connection can drop what its backlog already covered.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub seq: u64,
    pub frame: Bytes,
    /// When the message expires (server clock, ms): a connection that gets
    /// to it later drops it instead.
    pub expires_at: Option<u64>,
}

/// Live pushes a connection may have buffered before the actor gives up on it
/// (the queue in the database still has everything; the client reconnects).
pub const CONNECTION_BUFFER: usize = 1024;
/// Operations waiting for the actor before senders feel back-pressure.
const OP_QUEUE: usize = 8192;

/// What a connection asks of the actor.
#[derive(Debug)]
pub enum Op {
    /// An application message or proposal whose framing [`mls::check_send`] accepted.
    Send {
        device: DeviceId,
        msg: SendMessage,
        kind: DeliveryKind,
        /// The MLS epoch the message was made in.
        epoch: u64,
        reply: oneshot::Sender<ServerFrame>,
    },
    /// A commit bundle whose framing [`mls::check_commit`] accepted.
    Commit {
        device: DeviceId,
        bundle: Box<CommitBundle>,
        /// The group settings in the bundle's GroupInfo (unverified).
        settings: Option<GroupSettings>,
        reply: oneshot::Sender<ServerFrame>,
    },
    Ack {
        device: DeviceId,
        up_to: u64,
    },
    /// Registers a connection; answered with the first sequence number that
    /// will be pushed live (everything below it is read from the database),
    /// or `None` if the device may not connect.
    Connect {
        device: DeviceId,
        conn_id: u64,
        sender: mpsc::Sender<Outbound>,
        /// Told why, when the server closes the connection on purpose.
        kick: oneshot::Sender<&'static str>,
        reply: oneshot::Sender<Option<u64>>,
    },
    Disconnect {
        device: DeviceId,
        conn_id: u64,
    },
    /// Answered once everything received before it is durable.
    Flush {
        reply: oneshot::Sender<()>,
    },
    /// The device was revoked (already marked so in the database): close
    /// its connection, delete its queue, never queue for it again. Answered
    /// `true` once the queue deletion is durable.
    Revoke {
        device: DeviceId,
        reply: oneshot::Sender<bool>,
    },
    /// Closes these devices' connections, telling them why.
    Kick {
        devices: Vec<DeviceId>,
        reason: &'static str,
    },
}

/// The connection tasks' handle on the actor.
#[derive(Clone, Debug)]
pub struct DeliveryHandle {
    tx: mpsc::Sender<Op>,
}

/// The reply a lost actor would have given: nothing was stored.
pub fn internal_rejection(request_id: u32) -> ServerFrame {
    ServerFrame::Rejected {
        request_id,
        code: ErrorCode::Internal,
        current_epoch: None,
        message: "internal server error".into(),
    }
}

impl DeliveryHandle {
    /// Queues an operation; waits only if the actor is far behind.
    pub async fn submit(&self, op: Op) -> bool {
        self.tx.send(op).await.is_ok()
    }

    pub async fn connect(
        &self,
        device: DeviceId,
        conn_id: u64,
        sender: mpsc::Sender<Outbound>,
        kick: oneshot::Sender<&'static str>,
    ) -> Option<u64> {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Connect {
            device,
            conn_id,
            sender,
            kick,
            reply,
        })
        .await;
        rx.await.ok().flatten()
    }

    /// See [`Op::Revoke`]; `false` if the actor could not make it durable.
    pub async fn revoke(&self, device: DeviceId) -> bool {
        let (reply, rx) = oneshot::channel();
        if !self.submit(Op::Revoke { device, reply }).await {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// See [`Op::Kick`].
    pub async fn kick(&self, devices: Vec<DeviceId>, reason: &'static str) {
        if !devices.is_empty() {
            self.submit(Op::Kick { devices, reason }).await;
        }
    }

    pub async fn disconnect(&self, device: DeviceId, conn_id: u64) {
        self.submit(Op::Disconnect { device, conn_id }).await;
    }

    /// Waits until everything submitted so far is committed.
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.submit(Op::Flush { reply }).await {
            let _ = rx.await;
        }
    }
}
