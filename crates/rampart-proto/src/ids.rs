//! Identifiers. Each is parsed once at the edge and carried as its own type, so
//! code past the parser never sees an unchecked name or id.

use crate::limits::{MAX_USERNAME_LEN, MIN_USERNAME_LEN};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Usernames are 3–32 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
    #[error(
        "usernames are {MIN_USERNAME_LEN}-{MAX_USERNAME_LEN} characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    Username,
    /// Device ids are 16 hexadecimal digits, not all zero.
    #[error("a device id is 16 hexadecimal digits and not zero")]
    Device,
    /// Group ids are 64 hexadecimal digits with a known kind prefix.
    #[error("a group id is 64 hexadecimal digits starting with 00 (group) or 01 (direct chat)")]
    Group,
    /// Blob ids are 64 hexadecimal digits.
    #[error("a file id is 64 hexadecimal digits")]
    Blob,
}

/// An account name, lower-case, stable for the life of the account. It is also
/// the user's id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// Parses a username. Upper-case ASCII is folded to lower-case so that
    /// `Alice` and `alice` cannot be two accounts.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.strip_prefix('@').unwrap_or(s);
        if s.len() < MIN_USERNAME_LEN || s.len() > MAX_USERNAME_LEN {
            return Err(IdError::Username);
        }
        let lower = s.to_ascii_lowercase();
        let mut chars = lower.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if first_ok && rest_ok {
            Ok(Self(lower))
        } else {
            Err(IdError::Username)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A device: one leaf in every MLS group its user is in. Chosen at random by the
/// device itself (so its certificate can be signed before it ever talks to the
/// server), never zero. Written as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(u64);

impl DeviceId {
    /// Wraps a raw id; zero is refused.
    pub fn new(n: u64) -> Option<Self> {
        (n != 0).then_some(Self(n))
    }

    /// The raw id.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Parses the 16-hex-digit form.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != 16 {
            return Err(IdError::Device);
        }
        let n = u64::from_str_radix(s, 16).map_err(|_| IdError::Device)?;
        Self::new(n).ok_or(IdError::Device)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DeviceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What kind of conversation a group id names. The first byte of the id says it,
/// so nobody can claim a direct-chat id for a group of their own choosing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// A named group with any members; the id is random.
    Group,
    /// A 1:1 conversation; the id is derived from the two usernames.
    Direct,
}

/// The id of an MLS group (= a conversation), 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId([u8; 32]);

impl GroupId {
    /// Length in bytes.
    pub const LEN: usize = 32;
    const GROUP_PREFIX: u8 = 0x00;
    const DIRECT_PREFIX: u8 = 0x01;

    /// A group id from 31 random bytes (the caller brings the randomness).
    pub fn new_group(random: [u8; 31]) -> Self {
        let mut id = [0u8; 32];
        id[0] = Self::GROUP_PREFIX;
        id[1..].copy_from_slice(&random);
        Self(id)
    }

    /// The id of the 1:1 conversation between two users, the same whichever of
    /// them computes it, so two people starting a chat at once end in one group.
    pub fn direct(a: &Username, b: &Username) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = Sha256::new();
        h.update(b"rampart direct conversation v1\0");
        h.update([lo.as_str().len() as u8]);
        h.update(lo.as_str());
        h.update([hi.as_str().len() as u8]);
        h.update(hi.as_str());
        let digest = h.finalize();
        let mut id = [0u8; 32];
        id[0] = Self::DIRECT_PREFIX;
        id[1..].copy_from_slice(&digest[..31]);
        Self(id)
    }

    /// Parses raw bytes; the kind prefix must be known.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let id: [u8; 32] = bytes.try_into().map_err(|_| IdError::Group)?;
        match id[0] {
            Self::GROUP_PREFIX | Self::DIRECT_PREFIX => Ok(Self(id)),
            _ => Err(IdError::Group),
        }
    }

    /// Parses the 64-hex-digit form.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = hex::decode(s).map_err(|_| IdError::Group)?;
        Self::from_slice(&bytes)
    }

    /// The raw bytes (the MLS group id).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Which kind of conversation this is.
    pub fn kind(&self) -> GroupKind {
        if self.0[0] == Self::DIRECT_PREFIX {
            GroupKind::Direct
        } else {
            GroupKind::Group
        }
    }

    /// The first 12 hex digits: enough to tell groups apart on screen.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.short())
    }
}

impl Serialize for GroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GroupId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The id of an uploaded file (an encrypted blob): 32 random bytes chosen by
/// the server, so ids are unguessable and never collide. Shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A blob id from 32 random bytes (the caller brings the randomness).
    pub fn from_random(random: [u8; 32]) -> Self {
        Self(random)
    }

    /// Parses raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        bytes.try_into().map(Self).map_err(|_| IdError::Blob)
    }

    /// Parses the 64-hex-digit form.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = hex::decode(s).map_err(|_| IdError::Blob)?;
        Self::from_slice(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Only a prefix: a blob id is a capability-like secret in logs.
impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({}…)", hex::encode(&self.0[..4]))
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BlobId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Chosen by the sender for each send; a resend with the same key is answered
/// with the first answer and not delivered twice.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IdempotencyKey(pub [u8; 16]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_reject_bad_characters() {
        assert_eq!(Username::parse("Alice").map(|u| u.0), Ok("alice".into()));
        assert_eq!(Username::parse("@bob_1").map(|u| u.0), Ok("bob_1".into()));
        for bad in [
            "ab",
            "-abc",
            "a b c",
            "al/ice",
            "ålice",
            &"x".repeat(33),
            "",
        ] {
            assert_eq!(Username::parse(bad), Err(IdError::Username), "{bad:?}");
        }
    }

    #[test]
    fn direct_ids_are_symmetric_and_distinct() {
        let (a, b, c) = (
            Username::parse("alice").unwrap_or_else(|_| unreachable!()),
            Username::parse("bob").unwrap_or_else(|_| unreachable!()),
            Username::parse("carol").unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(GroupId::direct(&a, &b), GroupId::direct(&b, &a));
        assert_ne!(GroupId::direct(&a, &b), GroupId::direct(&a, &c));
        assert_eq!(GroupId::direct(&a, &b).kind(), GroupKind::Direct);
        assert_eq!(GroupId::new_group([7; 31]).kind(), GroupKind::Group);
    }

    #[test]
    fn ids_round_trip_through_text() {
        let g = GroupId::new_group([9; 31]);
        assert_eq!(GroupId::parse(&g.to_string()), Ok(g));
        assert_eq!(GroupId::parse(&"02".repeat(32)), Err(IdError::Group));
        let d = DeviceId::new(0xabc).unwrap_or_else(|| unreachable!());
        assert_eq!(DeviceId::parse(&d.to_string()), Ok(d));
        assert_eq!(DeviceId::parse("0000000000000000"), Err(IdError::Device));
        assert_eq!(DeviceId::parse("xyz"), Err(IdError::Device));
        let b = BlobId::from_random([0xab; 32]);
        assert_eq!(BlobId::parse(&b.to_string()), Ok(b));
        assert_eq!(BlobId::parse("ab"), Err(IdError::Blob));
    }
}
