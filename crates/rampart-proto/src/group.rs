//! Group settings: who administers a group and who may change what. They
//! travel as an MLS group-context extension, so every member holds the same
//! copy, changes only through a commit, and cannot be forged by the server.
//! The server reads them from the GroupInfo a committer uploads, to enforce
//! what it can (recall of undelivered copies).

use crate::Username;
use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{MAX_GROUP_DEVICES, MAX_USERNAME_LEN};

/// The MLS extension type of [`GroupSettings`] (from the private-use range).
pub const GROUP_SETTINGS_EXTENSION: u16 = 0xF0A1;

const VERSION: u8 = 1;

/// Who may do something in a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Allowed {
    /// Every member.
    #[default]
    Members,
    /// Only the group's admins.
    Admins,
}

impl Allowed {
    fn to_u8(self) -> u8 {
        match self {
            Self::Members => 0,
            Self::Admins => 1,
        }
    }

    fn from_u8(tag: u8) -> Result<Self, DecodeError> {
        match tag {
            0 => Ok(Self::Members),
            1 => Ok(Self::Admins),
            tag => Err(DecodeError::UnknownTag {
                what: "allowed",
                tag,
            }),
        }
    }
}

/// The settings of a named group. A 1:1 conversation has none: both people
/// may do everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// Admins may recall any message at any time. The creator is the first.
    pub admins: Vec<Username>,
    /// Who may change the disappearing-messages timer.
    pub timer: Allowed,
}

impl GroupSettings {
    /// Settings of a new group: its creator is the only admin.
    pub fn created_by(creator: &Username) -> Self {
        Self {
            admins: vec![creator.clone()],
            timer: Allowed::Members,
        }
    }

    pub fn is_admin(&self, user: &Username) -> bool {
        self.admins.contains(user)
    }

    /// Whether `user` may change the timer.
    pub fn may_set_timer(&self, user: &Username) -> bool {
        self.timer == Allowed::Members || self.is_admin(user)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(8 + 16 * self.admins.len());
        w.u8(VERSION);
        w.u32(self.admins.len() as u32);
        for admin in &self.admins {
            w.string(admin.as_str());
        }
        w.u8(self.timer.to_u8());
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let n = r.count("admins", MAX_GROUP_DEVICES)?;
        let mut admins = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string("admin", MAX_USERNAME_LEN)?;
            admins.push(Username::parse(name).map_err(|_| DecodeError::Invalid("admin"))?);
        }
        let timer = Allowed::from_u8(r.u8("timer")?)?;
        r.finish()?;
        Ok(Self { admins, timer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let s = GroupSettings {
            admins: vec![
                Username::parse("alice").unwrap(),
                Username::parse("bob").unwrap(),
            ],
            timer: Allowed::Admins,
        };
        let bytes = s.encode();
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(GroupSettings::decode(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(GroupSettings::decode(&long).is_err());
    }

    #[test]
    fn permissions() {
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let mut s = GroupSettings::created_by(&alice);
        assert!(s.is_admin(&alice) && !s.is_admin(&bob));
        assert!(s.may_set_timer(&bob));
        s.timer = Allowed::Admins;
        assert!(s.may_set_timer(&alice) && !s.may_set_timer(&bob));
    }
}
