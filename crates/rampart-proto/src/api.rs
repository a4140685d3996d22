//! JSON bodies of the REST API. Binary fields (keys, KeyPackages, certificates)
//! travel as standard base64.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /health` | – | `200 ok` |
//! | `POST /v1/register` | [`RegisterRequest`] | [`SessionResponse`] |
//! | `POST /v1/login` | [`LoginRequest`] | [`SessionResponse`] |
//! | `POST /v1/logout` | – | `204` |
//! | `GET /v1/me` | – | [`WhoAmI`] |
//! | `GET /v1/users/{username}` | – | [`UserInfo`] |
//! | `POST /v1/key-packages` | [`UploadKeyPackages`] | [`KeyPackageCount`] |
//! | `GET /v1/key-packages/count` | – | [`KeyPackageCount`] |
//! | `POST /v1/key-packages/claim` | [`ClaimRequest`] | [`ClaimResponse`] |
//! | `GET /v1/groups` | – | [`GroupList`] |
//! | `GET /v1/groups/{group_id}` | – | [`GroupState`] (members only) |
//! | `GET /v1/ws` | WebSocket upgrade | frames of [`crate::frame`] |
//!
//! Every request but `/health`, register and login needs
//! `Authorization: Bearer <token>`. Errors are [`crate::error::ErrorBody`].

use crate::{DeviceId, GroupId, Millis, Username};
use serde::{Deserialize, Serialize};

/// Serde adapter: `Vec<u8>` as standard base64.
pub mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: `Vec<Vec<u8>>` as a list of base64 strings.
pub mod b64_list {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&STANDARD.encode(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.into_iter()
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A device as it introduces itself: the id it chose, a name for people, its
/// MLS signature key, and the identity key's signature over
/// [`crate::device_certificate_message`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewDevice {
    pub device_id: DeviceId,
    pub name: String,
    #[serde(with = "b64")]
    pub signature_key: Vec<u8>,
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
}

/// Create an account and its first device, and log that device in.
#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub username: Username,
    pub password: String,
    /// Required unless the server's registration policy is `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    /// The user's long-term Ed25519 identity public key.
    #[serde(with = "b64")]
    pub identity_key: Vec<u8>,
    pub device: NewDevice,
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("invite", &self.invite.as_ref().map(|_| "<redacted>"))
            .field("device", &self.device.device_id)
            .finish()
    }
}

/// Log an existing device in again (after logout or an expired session).
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: Username,
    pub password: String,
    pub device_id: DeviceId,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("device_id", &self.device_id)
            .finish()
    }
}

/// Organisation role of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// A new session: the bearer token is shown once and stored by the server only as a hash.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionResponse {
    pub token: String,
    pub username: Username,
    pub device_id: DeviceId,
    pub role: Role,
}

impl std::fmt::Debug for SessionResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionResponse")
            .field("token", &"<redacted>")
            .field("username", &self.username)
            .field("device_id", &self.device_id)
            .finish()
    }
}

/// `GET /v1/me`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhoAmI {
    pub username: Username,
    pub device_id: DeviceId,
    pub role: Role,
}

/// A published device of a user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: DeviceId,
    pub name: String,
    #[serde(with = "b64")]
    pub signature_key: Vec<u8>,
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
    pub created_at: Millis,
}

/// `GET /v1/users/{username}`: the directory entry of a user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: Username,
    #[serde(with = "b64")]
    pub identity_key: Vec<u8>,
    pub devices: Vec<DeviceInfo>,
}

/// `POST /v1/key-packages`: MLS KeyPackages (TLS-serialised) of the calling device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadKeyPackages {
    #[serde(with = "b64_list")]
    pub key_packages: Vec<Vec<u8>>,
    /// Replaces the device's last-resort package, handed out (and kept) when
    /// the others run out.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_b64")]
    pub last_resort: Option<Vec<u8>>,
}

/// Serde adapter: `Option<Vec<u8>>` as base64 or null.
pub mod opt_b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&STANDARD.encode(v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// How many KeyPackages the calling device has left on the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyPackageCount {
    pub count: u32,
    pub has_last_resort: bool,
}

/// `POST /v1/key-packages/claim`: one KeyPackage for every device of each user.
/// The calling device itself is skipped; the caller's other devices are included.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub users: Vec<Username>,
}

/// One claimed KeyPackage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    pub device_id: DeviceId,
    #[serde(with = "b64")]
    pub key_package: Vec<u8>,
}

/// Claimed KeyPackages of one user, with the identity key the server holds for
/// them (clients pin it on first use and compare it afterwards).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimedUser {
    pub username: Username,
    #[serde(with = "b64")]
    pub identity_key: Vec<u8>,
    pub key_packages: Vec<ClaimedKeyPackage>,
}

/// Answer to [`ClaimRequest`], in request order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub users: Vec<ClaimedUser>,
}

/// A member device of a group, as the server routes to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub username: Username,
    pub device_id: DeviceId,
}

/// `GET /v1/groups/{group_id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupState {
    pub group_id: GroupId,
    pub epoch: u64,
    pub members: Vec<GroupMember>,
}

/// `GET /v1/groups`: groups the calling device is a member of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupState>,
}

/// `GET /health`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}
