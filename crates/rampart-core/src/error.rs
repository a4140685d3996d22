//! Errors of the client core. Peer misbehaviour, API misuse and storage failures
//! are separate variants; no variant carries message text or key material.

use crate::store::MessageId;
use rampart_proto::{DeviceId, GroupId, Username};

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a core operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[source] Source),
    /// OpenMLS refused or failed an operation.
    #[error("MLS {op} failed: {source}")]
    Mls {
        op: &'static str,
        #[source]
        source: Source,
    },
    /// No conversation with this id exists on this device.
    #[error("no conversation {0:?} on this device")]
    UnknownGroup(GroupId),
    /// The device is not (or no longer) a member of the group.
    #[error("this device is no longer a member of {0:?}")]
    NotMember(GroupId),
    /// A leaf's device certificate is missing, malformed or does not verify.
    #[error("device certificate of {user} is invalid: {reason}")]
    BadCertificate { user: String, reason: &'static str },
    /// A contact's identity key changed after the user verified it: nothing is
    /// sent to them until the user compares safety numbers and confirms.
    #[error(
        "the identity key of @{0} changed after you verified it; compare safety numbers with `rampart verify @{0}`, then confirm with `rampart verify @{0} --confirm`"
    )]
    VerificationRequired(Username),
    /// A KeyPackage or message from a peer could not be parsed.
    #[error("malformed {0} from a peer")]
    Malformed(&'static str),
    /// A device presents another identity key than its account: not made by
    /// the account's owner (a device injected by the server, or a forgery).
    #[error("a device of @{0} is not certified by the account's identity key; refusing it")]
    ForeignDevice(Username),
    /// A KeyPackage belongs to someone else than the directory said.
    #[error("key package for {expected} carries the credential of another device")]
    WrongKeyPackage { expected: DeviceId },
    /// Device linking failed (wrong code, tampered request or approval).
    #[error("device link: {0}")]
    Link(&'static str),
    /// Caller error: e.g. removing a device that is not in the group.
    #[error("{0}")]
    Invalid(&'static str),
    /// A disappearing-message timer outside the allowed range.
    #[error(
        "a timer of {0} seconds is not allowed; timers run from 30 seconds to 4 weeks (e.g. 30s, 5m, 1h, 4w)"
    )]
    TimerOutOfRange(u32),
    /// The organisation keeps messages at most this long.
    #[error(
        "your organisation keeps messages at most {}: choose a timer up to that",
        crate::lifetime::describe(*max_secs)
    )]
    RetentionExceeded { max_secs: u32 },
    /// No message with this id on this device.
    #[error("no message {0} on this device; `rampart inbox --all --ids` lists message ids")]
    UnknownMessage(MessageId),
    /// The user may not do this here.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// Too late to recall or edit.
    #[error(
        "messages can be recalled or edited only within {} of sending",
        crate::lifetime::describe(*window_secs)
    )]
    WindowClosed { window_secs: u32 },
    /// The edit limit was reached.
    #[error("a message can be edited at most {max} times", max = rampart_proto::limits::MAX_EDITS)]
    TooManyEdits,
    /// A text longer than the protocol allows.
    #[error("message is {0} bytes; the limit is {max}", max = rampart_proto::limits::MAX_TEXT_LEN)]
    TextTooLong(usize),
}

impl CoreError {
    pub(crate) fn mls<E: std::error::Error + Send + Sync + 'static>(
        op: &'static str,
    ) -> impl FnOnce(E) -> CoreError {
        move |e| CoreError::Mls {
            op,
            source: Box::new(e),
        }
    }

    pub(crate) fn store<E: std::error::Error + Send + Sync + 'static>(e: E) -> CoreError {
        CoreError::Store(Box::new(e))
    }
}
