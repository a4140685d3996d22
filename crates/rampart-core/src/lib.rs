//! Rampart's client logic, free of I/O.
//!
//! This crate knows how a device proves who it is (an identity key certifies
//! each device's MLS signature key, see [`identity`]), how conversations map
//! onto MLS groups (every conversation, 1:1 included, is a group whose leaves
//! are devices, see [`engine`]), and what travels inside the encrypted messages
//! ([`content`]), including the sealing of shared files ([`attachment`]). It
//! does not open sockets, read clocks or touch files: the
//! driver (`rampart-client`) hands it bytes, the current time and a storage
//! transaction, and sends what it returns. Storage comes in through two traits,
//! OpenMLS's `StorageProvider` and this crate's [`store::AppStore`], so the
//! driver can commit both in one transaction and a crash never tears a group.
//!
//! What it does not do: enforce anything on a modified client's behalf. A peer
//! running other software can keep what it was sent; Rampart only guarantees
//! what the official clients and the server do.

pub mod attachment;
pub mod content;
pub mod engine;
pub mod error;
pub mod guard;
pub mod identity;
pub mod lifetime;
pub mod link;
pub mod provider;
pub mod store;
pub mod trust;

pub use engine::{CIPHERSUITE, Engine, Event, Outgoing, PendingCommit, VerifiedKeyPackage};
pub use error::CoreError;
pub use identity::{DeviceCredential, IdentityKey};
pub use provider::Provider;
pub use store::{AppStore, Conversation, ConversationState, MessageId, StoredMessage};
pub use trust::{IdentityPin, SafetyNumber, Trust};
