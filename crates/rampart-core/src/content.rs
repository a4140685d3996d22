//! What travels inside an MLS application message. Only members can read it;
//! the server sees ciphertext of padded length.

use crate::store::MessageId;
use rampart_proto::Millis;
use rampart_proto::codec::{DecodeError, Reader, Writer};
use rampart_proto::limits::{MAX_MESSAGE_BYTES, MAX_TEXT_LEN};

/// The body of one application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A text message.
    Text(String),
    /// The group's display name, sent by whoever created or renamed the group and
    /// after every add, so names never reach the server.
    GroupName(String),
}

/// An application message: a sender-chosen random id (receivers deduplicate
/// by it), the sender's clock, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    pub id: MessageId,
    pub sent_at: Millis,
    pub body: Body,
}

/// Longest group name.
pub const MAX_GROUP_NAME_LEN: usize = 64;
const VERSION: u8 = 1;
const T_TEXT: u8 = 1;
const T_GROUP_NAME: u8 = 2;

impl AppMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32 + MAX_GROUP_NAME_LEN);
        w.u8(VERSION);
        w.raw(&self.id.0);
        w.u64(self.sent_at);
        match &self.body {
            Body::Text(t) => {
                w.u8(T_TEXT);
                w.string(t);
            }
            Body::GroupName(n) => {
                w.u8(T_GROUP_NAME);
                w.string(n);
            }
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let id = MessageId(r.array("message id")?);
        let sent_at = r.u64("sent at")?;
        let body = match r.u8("body")? {
            T_TEXT => Body::Text(r.string("text", MAX_TEXT_LEN)?.to_owned()),
            T_GROUP_NAME => Body::GroupName(r.string("group name", MAX_GROUP_NAME_LEN)?.to_owned()),
            tag => return Err(DecodeError::UnknownTag { what: "body", tag }),
        };
        r.finish()?;
        debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES);
        Ok(Self { id, sent_at, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        for body in [
            Body::Text("héllo".into()),
            Body::GroupName("team".into()),
            Body::Text(String::new()),
        ] {
            let m = AppMessage {
                id: MessageId([5; 16]),
                sent_at: 123,
                body,
            };
            let bytes = m.encode();
            assert_eq!(AppMessage::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(AppMessage::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
