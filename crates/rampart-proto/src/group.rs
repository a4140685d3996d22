//! Group settings: who has which role in a group and who may change what.
//! They travel as an MLS group-context extension, so every member holds the
//! same copy, they change only through a commit (a GroupContextExtensions
//! proposal), and the server cannot forge them: every member's client
//! checks each commit and message against the settings of its epoch. The
//! server mirrors them from the GroupInfo a committer uploads and enforces
//! them too, so a modified client is refused before anything is stored.

use crate::Username;
use crate::codec::{DecodeError, Reader, Writer};
use crate::limits::{MAX_GROUP_DEVICES, MAX_USERNAME_LEN};

/// The MLS extension type of [`GroupSettings`] (from the private-use range).
pub const GROUP_SETTINGS_EXTENSION: u16 = 0xF0A1;

/// Version 1 had admins and the timer rule only; it still decodes.
const VERSION_1: u8 = 1;
const VERSION: u8 = 2;

/// Who may do something in a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Allowed {
    /// Every member who may post (read-only members never change anything).
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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::Admins => "admins",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "members" | "everyone" => Some(Self::Members),
            "admins" => Some(Self::Admins),
            _ => None,
        }
    }
}

/// A user's role in one group. Users the settings do not name are members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupRole {
    /// Changes settings and roles, recalls anyone's messages, and does
    /// whatever the settings reserve for admins.
    Admin,
    #[default]
    Member,
    /// Reads, never posts or changes anything (but may leave).
    ReadOnly,
}

impl GroupRole {
    fn to_u8(self) -> u8 {
        match self {
            Self::Admin => 0,
            Self::Member => 1,
            Self::ReadOnly => 2,
        }
    }

    fn from_u8(tag: u8) -> Result<Self, DecodeError> {
        match tag {
            0 => Ok(Self::Admin),
            1 => Ok(Self::Member),
            2 => Ok(Self::ReadOnly),
            tag => Err(DecodeError::UnknownTag {
                what: "group role",
                tag,
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::ReadOnly => "read-only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "read-only" | "readonly" | "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// Something a member may or may not do in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message (text, file, edit, recall of one's own).
    Post,
    /// Add or remove other members.
    AddRemove,
    /// Change the group's name.
    Rename,
    /// Change the disappearing-messages timer.
    SetTimer,
    /// Change roles or these settings.
    ChangeSettings,
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::AddRemove => "add or remove members",
            Self::Rename => "rename the group",
            Self::SetTimer => "change the disappearing-messages timer",
            Self::ChangeSettings => "change roles or settings",
        }
    }
}

/// The settings of a named group. A 1:1 conversation has none: both people
/// may do everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// Users whose role is not [`GroupRole::Member`], sorted by name, each
    /// once. The creator starts as the only admin.
    pub roles: Vec<(Username, GroupRole)>,
    /// Who may add and remove other members (anyone may leave).
    pub add_remove: Allowed,
    /// Who may rename the group.
    pub rename: Allowed,
    /// Who may change the disappearing-messages timer.
    pub timer: Allowed,
    /// Who may post: `Admins` makes an announcement group.
    pub post: Allowed,
}

impl GroupSettings {
    /// Settings of a new group: its creator is the only admin, and every
    /// member may post, add, rename and set the timer.
    pub fn created_by(creator: &Username) -> Self {
        Self {
            roles: vec![(creator.clone(), GroupRole::Admin)],
            ..Self::default()
        }
    }

    pub fn role_of(&self, user: &Username) -> GroupRole {
        self.roles
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }

    /// Sets `user`'s role (a member is simply not listed).
    pub fn set_role(&mut self, user: &Username, role: GroupRole) {
        self.roles.retain(|(u, _)| u != user);
        if role != GroupRole::Member {
            self.roles.push((user.clone(), role));
            self.roles.sort();
        }
    }

    /// Forgets the roles of users who are no longer in the group.
    pub fn retain_users(&mut self, mut keep: impl FnMut(&Username) -> bool) {
        self.roles.retain(|(u, _)| keep(u));
    }

    pub fn is_admin(&self, user: &Username) -> bool {
        self.role_of(user) == GroupRole::Admin
    }

    pub fn admins(&self) -> impl Iterator<Item = &Username> {
        self.roles
            .iter()
            .filter(|(_, r)| *r == GroupRole::Admin)
            .map(|(u, _)| u)
    }

    /// Whether `user` may do `action`, by these settings.
    pub fn allows(&self, user: &Username, action: Action) -> bool {
        let rule = match action {
            Action::Post => self.post,
            Action::AddRemove => self.add_remove,
            Action::Rename => self.rename,
            Action::SetTimer => self.timer,
            Action::ChangeSettings => Allowed::Admins,
        };
        match (self.role_of(user), rule) {
            (GroupRole::Admin, _) => true,
            (GroupRole::Member, Allowed::Members) => true,
            (GroupRole::Member, Allowed::Admins) | (GroupRole::ReadOnly, _) => false,
        }
    }

    /// Whether `user` may change the timer.
    pub fn may_set_timer(&self, user: &Username) -> bool {
        self.allows(user, Action::SetTimer)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(8 + 24 * self.roles.len());
        w.u8(VERSION);
        w.u32(self.roles.len() as u32);
        for (user, role) in &self.roles {
            w.string(user.as_str());
            w.u8(role.to_u8());
        }
        for rule in [self.add_remove, self.rename, self.timer, self.post] {
            w.u8(rule.to_u8());
        }
        w.buf
    }

    /// Decodes either version; refuses a user listed twice.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != VERSION && version != VERSION_1 {
            return Err(DecodeError::Version(version));
        }
        let n = r.count("roles", MAX_GROUP_DEVICES)?;
        let mut roles: Vec<(Username, GroupRole)> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string("user", MAX_USERNAME_LEN)?;
            let user = Username::parse(name).map_err(|_| DecodeError::Invalid("user"))?;
            let role = if version == VERSION_1 {
                GroupRole::Admin
            } else {
                GroupRole::from_u8(r.u8("role")?)?
            };
            if roles.iter().any(|(u, _)| *u == user) {
                return Err(DecodeError::Invalid("user listed twice"));
            }
            roles.push((user, role));
        }
        roles.sort();
        let settings = if version == VERSION_1 {
            Self {
                roles,
                timer: Allowed::from_u8(r.u8("timer")?)?,
                ..Self::default()
            }
        } else {
            Self {
                roles,
                add_remove: Allowed::from_u8(r.u8("add_remove")?)?,
                rename: Allowed::from_u8(r.u8("rename")?)?,
                timer: Allowed::from_u8(r.u8("timer")?)?,
                post: Allowed::from_u8(r.u8("post")?)?,
            }
        };
        r.finish()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn round_trip_and_truncation() {
        let mut s = GroupSettings::created_by(&user("alice"));
        s.set_role(&user("bob"), GroupRole::ReadOnly);
        s.set_role(&user("carol"), GroupRole::Admin);
        s.post = Allowed::Admins;
        s.rename = Allowed::Admins;
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
    fn version_1_still_decodes() {
        let mut w = Writer::with_capacity(32);
        w.u8(1);
        w.u32(1);
        w.string("alice");
        w.u8(1);
        let s = GroupSettings::decode(&w.buf).unwrap();
        assert!(s.is_admin(&user("alice")));
        assert_eq!(s.timer, Allowed::Admins);
        assert_eq!(s.post, Allowed::Members);
    }

    #[test]
    fn a_user_listed_twice_is_refused() {
        let mut w = Writer::with_capacity(32);
        w.u8(2);
        w.u32(2);
        for _ in 0..2 {
            w.string("alice");
            w.u8(0);
        }
        for _ in 0..4 {
            w.u8(0);
        }
        assert!(GroupSettings::decode(&w.buf).is_err());
    }

    #[test]
    fn permissions() {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let mut s = GroupSettings::created_by(&alice);
        s.set_role(&carol, GroupRole::ReadOnly);
        assert!(s.is_admin(&alice) && !s.is_admin(&bob));
        assert!(s.allows(&bob, Action::Post) && s.allows(&bob, Action::SetTimer));
        assert!(!s.allows(&bob, Action::ChangeSettings));
        assert!(!s.allows(&carol, Action::Post) && !s.allows(&carol, Action::AddRemove));
        s.post = Allowed::Admins;
        s.timer = Allowed::Admins;
        assert!(s.allows(&alice, Action::Post) && !s.allows(&bob, Action::Post));
        assert!(s.may_set_timer(&alice) && !s.may_set_timer(&bob));
        s.set_role(&carol, GroupRole::Member);
        assert_eq!(s.roles.len(), 1);
        assert_eq!(s.admins().collect::<Vec<_>>(), vec![&alice]);
    }
}
