//! The administration API: organisation roles, the user lifecycle, the
//! organisation's access policy, sessions and a view of groups that never
//! includes content. Every route needs the session of an `owner` or
//! `admin` (see [`Role`]); the server describes them all in the OpenAPI
//! document it serves at `GET /v1/openapi.json`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/admin/users` | – | [`UserList`] |
//! | `POST /v1/admin/invites` | [`NewInvite`] | [`Invite`] |
//! | `POST /v1/admin/users/{username}/role` | [`RoleChange`] | [`UserSummary`] |
//! | `POST /v1/admin/users/{username}/disable` | – | [`UserSummary`] |
//! | `POST /v1/admin/users/{username}/enable` | – | [`UserSummary`] |
//! | `DELETE /v1/admin/users/{username}` | – | `204` |
//! | `POST /v1/admin/users/{username}/2fa-reset` | – | [`UserSummary`] |
//! | `GET /v1/admin/groups` | – | [`AdminGroupList`] |
//! | `GET /v1/admin/access` | – | [`AccessPolicy`] |
//! | `PUT /v1/admin/access` | [`AccessPolicy`] | [`AccessPolicy`] |
//! | `GET /v1/admin/sessions?user=NAME` | – | [`SessionList`] |
//! | `POST /v1/admin/sessions/{session_id}/revoke` | – | `204` |
//!
//! Who may do what:
//!
//! - owners may do everything, to anyone;
//! - admins manage members, guests and bots (invite, role among those
//!   three, disable, enable, delete, reset 2FA, revoke sessions) but never
//!   touch an owner or another admin, and never grant `admin` or `owner`;
//!   they read the access policy, and only owners change it;
//! - the last owner can be neither demoted, disabled nor deleted;
//! - nobody changes their own role or disables or deletes themselves here.
//!
//! Refusals answer `403 forbidden` with the reason, and are recorded as
//! `access_denied` security events of the caller.

use crate::api::Role;
use crate::{DeviceId, GroupId, Millis, Username};
use serde::{Deserialize, Serialize};

/// Longest access-policy username pattern (a regular expression).
pub const MAX_USERNAME_PATTERN_LEN: usize = 256;
/// Longest invite lifetime an admin may choose: 30 days.
pub const MAX_INVITE_SECS: u64 = 30 * 24 * 3600;
/// Invite lifetime when none is given: 7 days.
pub const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 3600;

/// Whether an account may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// Disabled by an administrator: login refused, every session revoked,
    /// every device removed from its groups.
    Disabled,
}

/// One account as administrators see it: never keys, secrets or content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: Username,
    pub role: Role,
    pub status: AccountStatus,
    pub two_factor: bool,
    /// Live (not revoked) devices.
    pub devices: u32,
    pub created_at: Millis,
    /// The latest time any of its devices was seen; `None` if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
}

/// `GET /v1/admin/users`, sorted by username.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserSummary>,
}

/// `POST /v1/admin/invites`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewInvite {
    pub role: Role,
    /// Seconds until the code expires; [`DEFAULT_INVITE_SECS`] if absent,
    /// at most [`MAX_INVITE_SECS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A new single-use invite code: shown once, stored only as a hash.
#[derive(Clone, Serialize, Deserialize)]
pub struct Invite {
    pub code: String,
    pub role: Role,
    pub expires_at: Millis,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("code", &"<redacted>")
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `POST /v1/admin/users/{username}/role`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoleChange {
    pub role: Role,
}

/// Whose accounts must have two-factor authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactorRequirement {
    #[default]
    Off,
    /// Owners and admins.
    Admins,
    /// Everyone but bots.
    All,
}

/// The organisation's rules for who may do what with conversations. The
/// server enforces them on every commit and registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// Whether members (not just admins and owners) may create groups.
    /// Guests never may.
    #[serde(default = "yes")]
    pub members_may_create_groups: bool,
    /// Most distinct users in one group.
    #[serde(default = "default_max_group_users")]
    pub max_group_users: u32,
    /// Whether guests may be added to groups at all.
    #[serde(default = "yes")]
    pub guests_may_be_added: bool,
    /// A regular expression every new username must match in full (e.g.
    /// `[a-z]+\.[a-z]+`); `None` allows every valid username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_pattern: Option<String>,
    #[serde(default)]
    pub require_two_factor: TwoFactorRequirement,
}

fn yes() -> bool {
    true
}

fn default_max_group_users() -> u32 {
    DEFAULT_MAX_GROUP_USERS
}

/// [`AccessPolicy::max_group_users`] unless set.
pub const DEFAULT_MAX_GROUP_USERS: u32 = 256;

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            members_may_create_groups: true,
            max_group_users: DEFAULT_MAX_GROUP_USERS,
            guests_may_be_added: true,
            username_pattern: None,
            require_two_factor: TwoFactorRequirement::Off,
        }
    }
}

impl AccessPolicy {
    /// Whether an account of `role` needs two-factor authentication.
    pub fn requires_two_factor(&self, role: Role) -> bool {
        match self.require_two_factor {
            TwoFactorRequirement::Off => false,
            TwoFactorRequirement::Admins => matches!(role, Role::Owner | Role::Admin),
            TwoFactorRequirement::All => role != Role::Bot,
        }
    }

    /// Whether an account of `role` may create a group.
    pub fn may_create_groups(&self, role: Role) -> bool {
        match role {
            Role::Owner | Role::Admin => true,
            Role::Member | Role::Bot => self.members_may_create_groups,
            Role::Guest => false,
        }
    }
}

/// One group as administrators see it: sizes and admins, never its name
/// (which is encrypted) or messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminGroup {
    pub group_id: GroupId,
    /// `"group"` or `"direct"`.
    pub kind: String,
    pub users: u32,
    pub devices: u32,
    /// From the group's settings, as its latest commit declared them.
    pub admins: Vec<Username>,
    pub epoch: u64,
    pub created_at: Millis,
}

/// `GET /v1/admin/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminGroupList {
    pub groups: Vec<AdminGroup>,
}

/// One session: who, which device, since when. `session_id` names it for
/// revocation (a prefix of the stored hash, never the token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub username: Username,
    pub device_id: DeviceId,
    pub created_at: Millis,
    pub last_used: Millis,
}

/// `GET /v1/admin/sessions`, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_policy_defaults_and_unknown_fields() {
        let p: AccessPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, AccessPolicy::default());
        assert!(serde_json::from_str::<AccessPolicy>(r#"{"max_group_user": 3}"#).is_err());
        let p: AccessPolicy = serde_json::from_str(
            r#"{"require_two_factor": "admins", "members_may_create_groups": false}"#,
        )
        .unwrap();
        assert!(p.requires_two_factor(Role::Admin) && !p.requires_two_factor(Role::Member));
        assert!(!p.may_create_groups(Role::Member) && p.may_create_groups(Role::Owner));
        assert!(!AccessPolicy::default().may_create_groups(Role::Guest));
    }
}
