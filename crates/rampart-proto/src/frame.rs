//! Binary frames of the delivery WebSocket (`GET /v1/ws`).
//!
//! Every frame starts with [`FRAME_VERSION`] and a type byte. Fields are
//! big-endian integers and u32-length-prefixed byte strings (see [`crate::codec`]),
//! each capped by [`crate::limits`]. A frame that fails to decode closes only the
//! connection that sent it.
//!
//! Flow: after the upgrade the server sends the device's backlog (every queued
//! [`Delivery`] after the last acknowledged sequence number), then
//! [`ServerFrame::BacklogDone`], then new deliveries as they arrive. The client
//! sends [`ClientFrame::Ack`] for what it has durably processed; the server keeps
//! everything not yet acknowledged, so delivery is at least once.
//!
//! [`ServerFrame::PolicyChanged`] may arrive at any time after `BacklogDone`:
//! once right after it when the organisation has a DLP policy (so a client
//! that fetched the policy just before connecting cannot miss a change made
//! in between), and again whenever the policy changes. Clients fetch
//! `GET /v1/policy/dlp` when the revision is newer than the one they hold.

use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{
    MAX_ATTACHMENTS, MAX_DEVICES_PER_COMMIT, MAX_ERROR_MESSAGE_LEN, MAX_HANDSHAKE_BYTES,
    MAX_MESSAGE_BYTES, MAX_USERNAME_LEN,
};
use crate::{BlobId, DeviceId, ErrorCode, GroupId, IdempotencyKey, Millis, Username};

/// The only frame version this build speaks.
pub const FRAME_VERSION: u8 = 1;

/// Frames a device sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// An MLS application message (PrivateMessage) or proposal (PublicMessage)
    /// for every other member device of `group`.
    Send(SendMessage),
    /// An MLS commit with its Welcome and GroupInfo, accepted only if `epoch`
    /// is the group's current epoch.
    Commit(CommitBundle),
    /// Everything up to and including this sequence number has been processed
    /// and may be deleted from the device's queue.
    Ack { up_to: u64 },
}

/// See [`ClientFrame::Send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessage {
    /// Echoed in the answer so a client can pipeline sends.
    pub request_id: u32,
    /// For application messages the official clients use the message's own
    /// (random) id, so that a later recall can name it to the server.
    pub key: IdempotencyKey,
    pub group: GroupId,
    /// Seconds after acceptance at which the server deletes every copy it
    /// still holds (disappearing messages). Required on application messages
    /// when the organisation sets a maximum retention, and at most that long.
    pub expires_in: Option<u32>,
    /// A recall: the server deletes the undelivered copies of the message
    /// this group accepted under that key, if the sender may recall it.
    pub recalls: Option<IdempotencyKey>,
    /// Uploaded blobs this message shares (the keys to them are inside the
    /// encrypted message). The server binds each to this message, so it
    /// expires and is recalled with it. At most [`MAX_ATTACHMENTS`].
    pub attachments: Vec<BlobId>,
    pub message: Vec<u8>,
}

/// How a commit creates its group, if it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Create {
    /// A named group with a random id.
    Group,
    /// The 1:1 conversation with `peer`; the server checks the id derivation.
    Direct { peer: Username },
}

/// See [`ClientFrame::Commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitBundle {
    pub request_id: u32,
    pub key: IdempotencyKey,
    pub group: GroupId,
    /// The epoch the commit was built on (must equal the group's current epoch).
    pub epoch: u64,
    /// Set on the first commit of a new group (epoch 0).
    pub create: Option<Create>,
    /// MLS PublicMessage carrying the commit.
    pub commit: Vec<u8>,
    /// MLS Welcome for the added devices, released only if the commit is accepted.
    pub welcome: Option<Vec<u8>>,
    /// MLS GroupInfo of the new epoch, kept for members who join later.
    pub group_info: Vec<u8>,
    /// Devices whose leaves this commit adds.
    pub added: Vec<DeviceId>,
    /// Devices whose leaves this commit removes.
    pub removed: Vec<DeviceId>,
}

/// What a [`Delivery`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    /// MLS PrivateMessage with application data.
    Application,
    /// MLS PublicMessage with a proposal.
    Proposal,
    /// MLS PublicMessage with a commit the server accepted.
    Commit,
    /// MLS Welcome adding this device to the group.
    Welcome,
}

impl DeliveryKind {
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Application => 1,
            Self::Proposal => 2,
            Self::Commit => 3,
            Self::Welcome => 4,
        }
    }

    pub fn from_u8(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            1 => Self::Application,
            2 => Self::Proposal,
            3 => Self::Commit,
            4 => Self::Welcome,
            _ => {
                return Err(DecodeError::UnknownTag {
                    what: "delivery kind",
                    tag,
                });
            }
        })
    }
}

/// One message from a device's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Position in this device's queue; strictly increasing.
    pub seq: u64,
    pub group: GroupId,
    /// The authenticated account that sent it. Clients still trust only the
    /// MLS sender, which the server cannot forge.
    pub sender: Username,
    pub sender_device: DeviceId,
    pub kind: DeliveryKind,
    /// For commits the epoch they were built on; otherwise the group's epoch
    /// when the server accepted the message.
    pub epoch: u64,
    pub server_time: Millis,
    /// When the server deletes this message (server clock), if it expires.
    pub expires_at: Option<Millis>,
    pub payload: Vec<u8>,
}

/// Frames the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Deliver(Delivery),
    /// The request was stored durably. `epoch` is the group's epoch afterwards.
    /// `duplicate` is set when the idempotency key had been seen already.
    Accepted {
        request_id: u32,
        epoch: u64,
        duplicate: bool,
    },
    /// The request was refused; nothing was stored.
    Rejected {
        request_id: u32,
        code: ErrorCode,
        /// For [`ErrorCode::StaleEpoch`]: the group's current epoch.
        current_epoch: Option<u64>,
        message: String,
    },
    /// Every delivery queued when the connection opened has been sent.
    BacklogDone {
        up_to: u64,
    },
    /// The connection is being closed for this reason.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The organisation's DLP policy is now at this revision (see
    /// `GET /v1/policy/dlp`). Only the latest revision is sent: a client
    /// that was slow to read sees one frame, not every change.
    PolicyChanged {
        revision: u64,
    },
}

const T_SEND: u8 = 1;
const T_COMMIT: u8 = 2;
const T_ACK: u8 = 3;
const T_DELIVER: u8 = 0x81;
const T_ACCEPTED: u8 = 0x82;
const T_REJECTED: u8 = 0x83;
const T_BACKLOG_DONE: u8 = 0x84;
const T_ERROR: u8 = 0x85;
const T_POLICY_CHANGED: u8 = 0x86;

fn read_header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let version = r.u8("version")?;
    if version != FRAME_VERSION {
        return Err(DecodeError::Version(version));
    }
    r.u8("frame type")
}

fn read_group(r: &mut Reader<'_>) -> Result<GroupId, DecodeError> {
    let raw: [u8; 32] = r.array("group id")?;
    GroupId::from_slice(&raw).map_err(|_| DecodeError::Invalid("group id"))
}

fn read_device(r: &mut Reader<'_>, field: &'static str) -> Result<DeviceId, DecodeError> {
    DeviceId::new(r.u64(field)?).ok_or(DecodeError::Invalid(field))
}

fn read_devices(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<DeviceId>, DecodeError> {
    let n = r.count(field, MAX_DEVICES_PER_COMMIT)?;
    (0..n).map(|_| read_device(r, field)).collect()
}

fn read_username(r: &mut Reader<'_>, field: &'static str) -> Result<Username, DecodeError> {
    let s = r.string(field, MAX_USERNAME_LEN)?;
    Username::parse(s).map_err(|_| DecodeError::Invalid(field))
}

/// An optional field: a presence byte (0 or 1), then the value.
fn read_option<T>(
    r: &mut Reader<'_>,
    what: &'static str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match r.u8(what)? {
        0 => Ok(None),
        1 => read(r).map(Some),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

fn write_option<T>(w: &mut Writer, value: Option<T>, write: impl FnOnce(&mut Writer, T)) {
    match value {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            write(w, v);
        }
    }
}

fn write_devices(w: &mut Writer, devices: &[DeviceId]) {
    w.u32(devices.len() as u32);
    for d in devices {
        w.u64(d.get());
    }
}

impl ClientFrame {
    /// Decodes one frame, enforcing every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let frame = match read_header(&mut r)? {
            T_SEND => ClientFrame::Send(SendMessage {
                request_id: r.u32("request id")?,
                key: IdempotencyKey(r.array("idempotency key")?),
                group: read_group(&mut r)?,
                expires_in: read_option(&mut r, "expires in", |r| r.u32("expires in"))?,
                recalls: read_option(&mut r, "recalls", |r| {
                    Ok(IdempotencyKey(r.array("recalled key")?))
                })?,
                attachments: {
                    let n = r.count("attachments", MAX_ATTACHMENTS)?;
                    (0..n)
                        .map(|_| Ok(BlobId::from_random(r.array("blob id")?)))
                        .collect::<Result<_, DecodeError>>()?
                },
                message: r.bytes("message", MAX_MESSAGE_BYTES)?.to_vec(),
            }),
            T_COMMIT => {
                let request_id = r.u32("request id")?;
                let key = IdempotencyKey(r.array("idempotency key")?);
                let group = read_group(&mut r)?;
                let epoch = r.u64("epoch")?;
                let create = match r.u8("create")? {
                    0 => None,
                    1 => Some(Create::Group),
                    2 => Some(Create::Direct {
                        peer: read_username(&mut r, "peer")?,
                    }),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "create",
                            tag,
                        });
                    }
                };
                let commit = r.bytes("commit", MAX_HANDSHAKE_BYTES)?.to_vec();
                let welcome = match r.u8("welcome flag")? {
                    0 => None,
                    1 => Some(r.bytes("welcome", MAX_HANDSHAKE_BYTES)?.to_vec()),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "welcome flag",
                            tag,
                        });
                    }
                };
                let group_info = r.bytes("group info", MAX_HANDSHAKE_BYTES)?.to_vec();
                let added = read_devices(&mut r, "added devices")?;
                let removed = read_devices(&mut r, "removed devices")?;
                ClientFrame::Commit(CommitBundle {
                    request_id,
                    key,
                    group,
                    epoch,
                    create,
                    commit,
                    welcome,
                    group_info,
                    added,
                    removed,
                })
            }
            T_ACK => ClientFrame::Ack {
                up_to: r.u64("ack")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "client frame",
                    tag,
                });
            }
        };
        r.finish()?;
        Ok(frame)
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.u8(FRAME_VERSION);
        match self {
            ClientFrame::Send(s) => {
                w.buf.reserve(s.message.len());
                w.u8(T_SEND);
                w.u32(s.request_id);
                w.raw(&s.key.0);
                w.raw(s.group.as_bytes());
                write_option(&mut w, s.expires_in, |w, v| w.u32(v));
                write_option(&mut w, s.recalls, |w, k| w.raw(&k.0));
                w.u32(s.attachments.len() as u32);
                for blob in &s.attachments {
                    w.raw(blob.as_bytes());
                }
                w.bytes(&s.message);
            }
            ClientFrame::Commit(c) => {
                w.u8(T_COMMIT);
                w.u32(c.request_id);
                w.raw(&c.key.0);
                w.raw(c.group.as_bytes());
                w.u64(c.epoch);
                match &c.create {
                    None => w.u8(0),
                    Some(Create::Group) => w.u8(1),
                    Some(Create::Direct { peer }) => {
                        w.u8(2);
                        w.string(peer.as_str());
                    }
                }
                w.bytes(&c.commit);
                match &c.welcome {
                    None => w.u8(0),
                    Some(welcome) => {
                        w.u8(1);
                        w.bytes(welcome);
                    }
                }
                w.bytes(&c.group_info);
                write_devices(&mut w, &c.added);
                write_devices(&mut w, &c.removed);
            }
            ClientFrame::Ack { up_to } => {
                w.u8(T_ACK);
                w.u64(*up_to);
            }
        }
        w.buf
    }
}

impl Delivery {
    /// Encodes a `Deliver` frame without building a [`ServerFrame`] first, so
    /// the server can fan one stored payload out without cloning it.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_frame(
        seq: u64,
        group: &GroupId,
        sender: &Username,
        sender_device: DeviceId,
        kind: DeliveryKind,
        epoch: u64,
        server_time: Millis,
        expires_at: Option<Millis>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + payload.len());
        w.u8(FRAME_VERSION);
        w.u8(T_DELIVER);
        w.u64(seq);
        w.raw(group.as_bytes());
        w.string(sender.as_str());
        w.u64(sender_device.get());
        w.u8(kind.to_u8());
        w.u64(epoch);
        w.u64(server_time);
        write_option(&mut w, expires_at, |w, t| w.u64(t));
        w.bytes(payload);
        w.buf
    }
}

impl ServerFrame {
    /// Decodes one frame, enforcing every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let frame = match read_header(&mut r)? {
            T_DELIVER => ServerFrame::Deliver(Delivery {
                seq: r.u64("seq")?,
                group: read_group(&mut r)?,
                sender: read_username(&mut r, "sender")?,
                sender_device: read_device(&mut r, "sender device")?,
                kind: DeliveryKind::from_u8(r.u8("delivery kind")?)?,
                epoch: r.u64("epoch")?,
                server_time: r.u64("server time")?,
                expires_at: read_option(&mut r, "expires at", |r| r.u64("expires at"))?,
                payload: r.bytes("payload", MAX_HANDSHAKE_BYTES)?.to_vec(),
            }),
            T_ACCEPTED => ServerFrame::Accepted {
                request_id: r.u32("request id")?,
                epoch: r.u64("epoch")?,
                duplicate: r.u8("duplicate")? != 0,
            },
            T_REJECTED => {
                let request_id = r.u32("request id")?;
                let code = ErrorCode::from_u16(r.u16("error code")?);
                let current_epoch = match r.u8("epoch flag")? {
                    0 => None,
                    _ => Some(r.u64("current epoch")?),
                };
                let message = r.string("message", MAX_ERROR_MESSAGE_LEN)?.to_owned();
                ServerFrame::Rejected {
                    request_id,
                    code,
                    current_epoch,
                    message,
                }
            }
            T_BACKLOG_DONE => ServerFrame::BacklogDone {
                up_to: r.u64("up to")?,
            },
            T_ERROR => ServerFrame::Error {
                code: ErrorCode::from_u16(r.u16("error code")?),
                message: r.string("message", MAX_ERROR_MESSAGE_LEN)?.to_owned(),
            },
            T_POLICY_CHANGED => ServerFrame::PolicyChanged {
                revision: r.u64("policy revision")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "server frame",
                    tag,
                });
            }
        };
        r.finish()?;
        Ok(frame)
    }

    /// Encodes the frame. Error messages longer than the limit are cut.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServerFrame::Deliver(d) => Delivery::encode_frame(
                d.seq,
                &d.group,
                &d.sender,
                d.sender_device,
                d.kind,
                d.epoch,
                d.server_time,
                d.expires_at,
                &d.payload,
            ),
            other => {
                let mut w = Writer::with_capacity(64);
                w.u8(FRAME_VERSION);
                match other {
                    ServerFrame::Deliver(_) => {}
                    ServerFrame::Accepted {
                        request_id,
                        epoch,
                        duplicate,
                    } => {
                        w.u8(T_ACCEPTED);
                        w.u32(*request_id);
                        w.u64(*epoch);
                        w.u8(u8::from(*duplicate));
                    }
                    ServerFrame::Rejected {
                        request_id,
                        code,
                        current_epoch,
                        message,
                    } => {
                        w.u8(T_REJECTED);
                        w.u32(*request_id);
                        w.u16(code.to_u16());
                        match current_epoch {
                            None => w.u8(0),
                            Some(e) => {
                                w.u8(1);
                                w.u64(*e);
                            }
                        }
                        w.string(truncate(message, MAX_ERROR_MESSAGE_LEN));
                    }
                    ServerFrame::BacklogDone { up_to } => {
                        w.u8(T_BACKLOG_DONE);
                        w.u64(*up_to);
                    }
                    ServerFrame::Error { code, message } => {
                        w.u8(T_ERROR);
                        w.u16(code.to_u16());
                        w.string(truncate(message, MAX_ERROR_MESSAGE_LEN));
                    }
                    ServerFrame::PolicyChanged { revision } => {
                        w.u8(T_POLICY_CHANGED);
                        w.u64(*revision);
                    }
                }
                w.buf
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u64) -> DeviceId {
        DeviceId::new(n).unwrap()
    }

    fn samples() -> (Vec<ClientFrame>, Vec<ServerFrame>) {
        let group = GroupId::new_group([3; 31]);
        let client = vec![
            ClientFrame::Send(SendMessage {
                request_id: 7,
                key: IdempotencyKey([1; 16]),
                group,
                expires_in: None,
                recalls: None,
                attachments: vec![],
                message: b"ciphertext".to_vec(),
            }),
            ClientFrame::Send(SendMessage {
                request_id: 9,
                key: IdempotencyKey([3; 16]),
                group,
                expires_in: Some(30),
                recalls: Some(IdempotencyKey([4; 16])),
                attachments: vec![BlobId::from_random([5; 32]), BlobId::from_random([6; 32])],
                message: b"recall".to_vec(),
            }),
            ClientFrame::Commit(CommitBundle {
                request_id: 8,
                key: IdempotencyKey([2; 16]),
                group,
                epoch: 4,
                create: Some(Create::Direct {
                    peer: Username::parse("bob").unwrap(),
                }),
                commit: vec![1, 2, 3],
                welcome: Some(vec![4, 5]),
                group_info: vec![6],
                added: vec![device(1), device(2)],
                removed: vec![device(3)],
            }),
            ClientFrame::Ack { up_to: 99 },
        ];
        let server = vec![
            ServerFrame::Deliver(Delivery {
                seq: 5,
                group,
                sender: Username::parse("alice").unwrap(),
                sender_device: device(9),
                kind: DeliveryKind::Welcome,
                epoch: 1,
                server_time: 1_700_000_000_000,
                expires_at: None,
                payload: vec![9; 300],
            }),
            ServerFrame::Deliver(Delivery {
                seq: 6,
                group,
                sender: Username::parse("alice").unwrap(),
                sender_device: device(9),
                kind: DeliveryKind::Application,
                epoch: 1,
                server_time: 1_700_000_000_000,
                expires_at: Some(1_700_000_030_000),
                payload: vec![8; 64],
            }),
            ServerFrame::Accepted {
                request_id: 1,
                epoch: 2,
                duplicate: true,
            },
            ServerFrame::Rejected {
                request_id: 2,
                code: ErrorCode::StaleEpoch,
                current_epoch: Some(7),
                message: "stale".into(),
            },
            ServerFrame::BacklogDone { up_to: 12 },
            ServerFrame::Error {
                code: ErrorCode::TooLarge,
                message: "frame too large".into(),
            },
            ServerFrame::PolicyChanged { revision: 1 },
            ServerFrame::PolicyChanged { revision: u64::MAX },
        ];
        (client, server)
    }

    #[test]
    fn frames_round_trip() {
        let (client, server) = samples();
        for f in client {
            assert_eq!(ClientFrame::decode(&f.encode()), Ok(f));
        }
        for f in server {
            assert_eq!(ServerFrame::decode(&f.encode()), Ok(f));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let (client, server) = samples();
        for f in client {
            let bytes = f.encode();
            for cut in 0..bytes.len() {
                assert!(ClientFrame::decode(&bytes[..cut]).is_err());
            }
        }
        for f in server {
            let bytes = f.encode();
            for cut in 0..bytes.len() {
                assert!(ServerFrame::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocation() {
        let mut bytes = vec![FRAME_VERSION, T_SEND, 0, 0, 0, 1];
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(GroupId::new_group([0; 31]).as_bytes());
        // No expiry, no recall.
        bytes.extend_from_slice(&[0, 0]);
        let mut too_many_attachments = bytes.clone();
        too_many_attachments.extend_from_slice(&(MAX_ATTACHMENTS as u32 + 1).to_be_bytes());
        assert!(matches!(
            ClientFrame::decode(&too_many_attachments),
            Err(DecodeError::TooLong {
                field: "attachments",
                ..
            })
        ));
        // No attachments.
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ClientFrame::decode(&bytes),
            Err(DecodeError::TooLong {
                field: "message",
                ..
            })
        ));
    }

    #[test]
    fn wrong_version_trailing_bytes_and_unknown_tags_are_refused() {
        assert_eq!(
            ClientFrame::decode(&[2, T_ACK]),
            Err(DecodeError::Version(2))
        );
        let mut ack = ClientFrame::Ack { up_to: 1 }.encode();
        ack.push(0);
        assert_eq!(ClientFrame::decode(&ack), Err(DecodeError::Trailing(1)));
        assert!(matches!(
            ClientFrame::decode(&[FRAME_VERSION, 0x77]),
            Err(DecodeError::UnknownTag { .. })
        ));
    }

    #[test]
    fn policy_changed_has_a_fixed_layout() {
        // Version, type, then the revision as a big-endian u64: other
        // clients (and older decoders, which refuse the unknown type) rely on it.
        let bytes = ServerFrame::PolicyChanged { revision: 0x0102 }.encode();
        assert_eq!(
            bytes,
            [FRAME_VERSION, T_POLICY_CHANGED, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(ServerFrame::decode(&longer), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        // A cheap deterministic fuzz pass over random frames with a valid version byte.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let mut buf = Vec::with_capacity(len % 200);
            for _ in 0..(len % 200) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if !buf.is_empty() {
                buf[0] = FRAME_VERSION;
            }
            let _ = ClientFrame::decode(&buf);
            let _ = ServerFrame::decode(&buf);
        }
    }
}
