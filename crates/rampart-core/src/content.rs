//! What travels inside an MLS application message. Only members can read it;
//! the server sees ciphertext of padded length.

use crate::attachment::Attachment;
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
    /// The conversation's disappearing-messages timer changed (seconds; `None`:
    /// off). Shown to every member as a line in the conversation.
    Timer(Option<u32>),
    /// Delete that message for everyone ("message deleted").
    Recall(MessageId),
    /// Replace the text of that message (shown as "edited").
    Edit { target: MessageId, text: String },
    /// A shared file: where its blob is and the key that opens it.
    File(Box<Attachment>),
}

/// An application message: a sender-chosen random id (receivers deduplicate
/// by it), the sender's clock, how long it lives, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    pub id: MessageId,
    pub sent_at: Millis,
    /// Seconds after sending at which every copy is deleted. Inside the
    /// encryption so the server cannot lengthen it for the recipients.
    pub expires_in: Option<u32>,
    pub body: Body,
}

/// Longest group name.
pub const MAX_GROUP_NAME_LEN: usize = 64;
const VERSION: u8 = 1;
const T_TEXT: u8 = 1;
const T_GROUP_NAME: u8 = 2;
const T_TIMER: u8 = 3;
const T_RECALL: u8 = 4;
const T_EDIT: u8 = 5;
const T_FILE: u8 = 6;

impl AppMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32 + MAX_GROUP_NAME_LEN);
        w.u8(VERSION);
        w.raw(&self.id.0);
        w.u64(self.sent_at);
        write_seconds(&mut w, self.expires_in);
        match &self.body {
            Body::Text(t) => {
                w.u8(T_TEXT);
                w.string(t);
            }
            Body::GroupName(n) => {
                w.u8(T_GROUP_NAME);
                w.string(n);
            }
            Body::Timer(timer) => {
                w.u8(T_TIMER);
                write_seconds(&mut w, *timer);
            }
            Body::Recall(target) => {
                w.u8(T_RECALL);
                w.raw(&target.0);
            }
            Body::Edit { target, text } => {
                w.u8(T_EDIT);
                w.raw(&target.0);
                w.string(text);
            }
            Body::File(attachment) => {
                w.u8(T_FILE);
                attachment.write(&mut w);
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
        let expires_in = read_seconds(&mut r, "expires in")?;
        let body = match r.u8("body")? {
            T_TEXT => Body::Text(r.string("text", MAX_TEXT_LEN)?.to_owned()),
            T_GROUP_NAME => Body::GroupName(r.string("group name", MAX_GROUP_NAME_LEN)?.to_owned()),
            T_TIMER => Body::Timer(read_seconds(&mut r, "timer")?),
            T_RECALL => Body::Recall(MessageId(r.array("recalled id")?)),
            T_EDIT => Body::Edit {
                target: MessageId(r.array("edited id")?),
                text: r.string("text", MAX_TEXT_LEN)?.to_owned(),
            },
            T_FILE => Body::File(Box::new(Attachment::read(&mut r)?)),
            tag => return Err(DecodeError::UnknownTag { what: "body", tag }),
        };
        r.finish()?;
        debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES);
        Ok(Self {
            id,
            sent_at,
            expires_in,
            body,
        })
    }
}

/// A duration in seconds, zero standing for none (a zero timer is no timer).
fn write_seconds(w: &mut Writer, secs: Option<u32>) {
    w.u32(secs.unwrap_or(0));
}

fn read_seconds(r: &mut Reader<'_>, what: &'static str) -> Result<Option<u32>, DecodeError> {
    Ok(Some(r.u32(what)?).filter(|s| *s > 0))
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
            Body::Timer(Some(30)),
            Body::Timer(None),
            Body::Recall(MessageId([7; 16])),
            Body::Edit {
                target: MessageId([8; 16]),
                text: "fixed".into(),
            },
            Body::File(Box::new(Attachment {
                blob: rampart_proto::BlobId::from_random([1; 32]),
                key: crate::attachment::FileKey::generate(),
                sha256: [2; 32],
                size: 3,
                name: "a.txt".into(),
                media_type: "text/plain".into(),
                caption: String::new(),
            })),
        ] {
            let m = AppMessage {
                id: MessageId([5; 16]),
                sent_at: 123,
                expires_in: Some(3600),
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
