//! The application state the core reads and writes besides OpenMLS's own:
//! conversations, message history and pinned identity keys. The driver
//! implements [`AppStore`] on the same transaction it gives OpenMLS.

use crate::content::Body;
use crate::trust::IdentityPin;
use rampart_proto::{DeviceId, GroupId, GroupKind, Millis, Username};

/// A message's id, chosen at random by its sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Where this device stands in a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationState {
    /// Created locally; the creating commit is not yet accepted by the server.
    Pending,
    /// A member.
    Active,
    /// Left or removed; history is kept, nothing can be sent.
    Left,
}

/// A conversation as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub group: GroupId,
    pub kind: GroupKind,
    /// Display name of a group (learned from an encrypted `GroupName` message).
    pub name: Option<String>,
    /// The other person of a 1:1 conversation.
    pub peer: Option<Username>,
    pub state: ConversationState,
    pub created_at: Millis,
    /// When this device last refreshed its leaf (post-compromise security).
    pub last_self_update: Millis,
    /// Disappearing-messages timer in seconds (`None`: off), as last set by a member.
    pub timer: Option<u32>,
}

/// One message in the history: a text, or a conversation line such as a
/// timer change ([`Body::Timer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub group: GroupId,
    pub sender: Username,
    pub sender_device: DeviceId,
    /// The sender's clock.
    pub sent_at: Millis,
    /// This device's clock when it arrived (or was sent).
    pub received_at: Millis,
    pub body: Body,
    pub outgoing: bool,
    /// Seconds its sender gave it to live.
    pub expires_in: Option<u32>,
    /// When this device deletes it, by this device's clock.
    pub expires_at: Option<Millis>,
    /// Times its text was edited.
    pub edits: u32,
    /// Recalled ("message deleted"): its text is gone from the store.
    pub recalled: bool,
}

/// Application storage used by the [`crate::Engine`]. All calls of one engine
/// operation happen inside the driver's transaction.
pub trait AppStore {
    type Error: std::error::Error + Send + Sync + 'static;

    fn conversation(&self, group: &GroupId) -> Result<Option<Conversation>, Self::Error>;
    fn put_conversation(&self, conversation: &Conversation) -> Result<(), Self::Error>;
    fn delete_conversation(&self, group: &GroupId) -> Result<(), Self::Error>;
    /// Stores a message; returns `false` (and stores nothing) if its id is
    /// already in this conversation's history.
    fn insert_message(&self, message: &StoredMessage) -> Result<bool, Self::Error>;
    fn message(
        &self,
        group: &GroupId,
        id: &MessageId,
    ) -> Result<Option<StoredMessage>, Self::Error>;
    /// Replaces a message's text and counts the edit.
    fn edit_message(&self, group: &GroupId, id: &MessageId, text: &str) -> Result<(), Self::Error>;
    /// Erases a message's content for good (overwritten, not flagged) and
    /// marks it recalled.
    fn recall_message(&self, group: &GroupId, id: &MessageId) -> Result<(), Self::Error>;
    /// Deletes, for good, every message whose `expires_at` is at or before
    /// `now`; returns how many.
    fn delete_expired(&self, now: Millis) -> Result<u64, Self::Error>;
    fn identity_pin(&self, user: &Username) -> Result<Option<IdentityPin>, Self::Error>;
    /// Inserts or replaces the pin of `user`.
    fn put_identity_pin(&self, user: &Username, pin: &IdentityPin) -> Result<(), Self::Error>;
    /// Users whose pin is [`crate::trust::Trust::Broken`] (usually none): read
    /// once per send, so it must be cheap.
    fn broken_pins(&self) -> Result<Vec<Username>, Self::Error>;
}
