//! Rampart's wire contract: identifiers, limits, error codes, the JSON bodies of
//! the REST API and the binary frames of the delivery WebSocket.
//!
//! This crate does no I/O and no cryptography. It only says what may travel
//! between a Rampart client and a Rampart server and how it is encoded, and it
//! refuses anything larger than [`limits`] allows with a typed error, so both
//! sides can parse untrusted bytes without fear of panics or unbounded memory.
//!
//! What travels inside the MLS messages (message text, group names) is not
//! defined here: the server never sees it. See `rampart-core`.

pub mod admin;
pub mod api;
pub mod audit;
pub mod codec;
pub mod error;
pub mod frame;
pub mod group;
pub mod ids;
pub mod limits;

pub use error::ErrorCode;
pub use ids::{BlobId, DeviceId, GroupId, GroupKind, IdError, IdempotencyKey, Username};

/// Milliseconds since the Unix epoch, as every timestamp on the wire.
pub type Millis = u64;

/// The bytes an identity key signs to certify a device (DESIGN.md, Identity).
///
/// Domain-separated and length-prefixed so that no two (user, device, key)
/// triples share an encoding. Both the client (which signs) and the server
/// (which checks before publishing a device) use this one function.
pub fn device_certificate_message(
    user: &Username,
    device: DeviceId,
    signature_key: &[u8],
) -> Vec<u8> {
    const DOMAIN: &[u8] = b"rampart device certificate v1\0";
    let mut out = Vec::with_capacity(DOMAIN.len() + 2 + user.as_str().len() + 8 + 2 + 32);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&(user.as_str().len() as u16).to_be_bytes());
    out.extend_from_slice(user.as_str().as_bytes());
    out.extend_from_slice(&device.get().to_be_bytes());
    out.extend_from_slice(&(signature_key.len() as u16).to_be_bytes());
    out.extend_from_slice(signature_key);
    out
}
