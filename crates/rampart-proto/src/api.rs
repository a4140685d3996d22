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
//! | `GET /v1/2fa` | – | [`TwoFactorStatus`] |
//! | `POST /v1/2fa/setup` | [`TotpSetupRequest`] | [`TotpSetup`] (not active yet) |
//! | `POST /v1/2fa/activate` | [`TotpCode`] | [`RecoveryCodes`] |
//! | `POST /v1/2fa/disable` | [`TotpDisable`] | `204` |
//! | `POST /v1/2fa/recovery-codes` | [`TotpCode`] | [`RecoveryCodes`] |
//! | `POST /v1/password` | [`PasswordChange`] | `204` (other sessions revoked) |
//! | `GET /v1/devices` | – | [`DeviceList`] |
//! | `POST /v1/devices/{device_id}/revoke` | – | `204` |
//! | `GET /v1/security-events` | – | [`SecurityEventList`] (own account) |
//! | `POST /v1/link` | [`LinkStart`] (no session) | [`LinkTicket`] |
//! | `GET /v1/link/{link_id}` | – | [`LinkRequest`] |
//! | `POST /v1/link/{link_id}/approve` | [`LinkApproval`] | `204` |
//! | `POST /v1/link/{link_id}/poll` | [`LinkPoll`] (no session) | [`LinkStatus`] |
//! | `GET /v1/policy/messages` | – | [`MessagePolicy`] |
//! | `GET /v1/policy/files` | – | [`FilePolicy`] |
//! | `GET /v1/policy/dlp` | – | [`OrgPolicy`] |
//! | `POST /v1/dlp/events` | [`DlpEventBatch`] | `204` |
//! | `POST /v1/blobs` | [`NewBlob`] | `201` [`BlobStatus`] |
//! | `PUT /v1/blobs/{blob_id}?offset=N` | raw bytes, one part | [`BlobStatus`] |
//! | `GET /v1/blobs/{blob_id}/status` | – | [`BlobStatus`] (uploader only) |
//! | `GET /v1/blobs/{blob_id}` | – (`Range: bytes=N-` resumes) | the blob's bytes, `200` or `206` |
//! | `DELETE /v1/blobs/{blob_id}` | – | `204` (uploader only, before it is sent) |
//! | `GET /v1/openapi.json` | – (no session) | the OpenAPI 3.1 document of every route |
//! | `/v1/admin/…` | see [`crate::admin`] | owners and admins only |
//!
//! Blobs (file attachments) are opaque ciphertext to the server. An upload
//! declares its conversation and exact size, then sends parts of
//! [`crate::limits::BLOB_PART_BYTES`] in order, each at the offset the
//! server has confirmed; it is complete when the last byte arrives. Only
//! a complete blob attached to a message (see
//! [`crate::frame::SendMessage::attachments`]) can be downloaded, and only
//! by member devices of that conversation; the uploader always can. An id
//! that does not exist and one the caller may not read answer the same
//! `404`.
//!
//! Data-loss prevention runs in the sending client, before encryption. The
//! server only hands out the organisation's policy ([`OrgPolicy`], an opaque
//! document to it) and records what clients report ([`DlpEvent`]: which rule
//! fired and what was done, never the content). When an administrator
//! changes the policy, every connected device gets
//! [`crate::frame::ServerFrame::PolicyChanged`] and fetches it again.
//!
//! Every request but `/health`, the OpenAPI document, register, login, link
//! start and link poll needs `Authorization: Bearer <token>`. Errors are
//! [`crate::error::ErrorBody`]; login, the 2FA routes and registration
//! answer `429` with `Retry-After` after repeated failures. A token of a
//! disabled account is answered `account_disabled`; while the organisation
//! requires two-factor authentication of an account that has none, every
//! route but `GET /v1/me`, `POST /v1/logout`, `GET /v1/2fa`,
//! `POST /v1/2fa/setup` and `POST /v1/2fa/activate` answers
//! `two_factor_enrolment_required`.

use crate::{BlobId, DeviceId, GroupId, Millis, Username};
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
    /// A current TOTP code or an unused recovery code; required when the
    /// account has two-factor authentication (else `two_factor_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// Signs in as this new device (its id is `device_id`), certified by the
    /// account's identity key. Only for an account with no live device left
    /// (re-enabled after being disabled, or every device revoked); otherwise
    /// a live device approves new ones (`/v1/link`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_device: Option<NewDevice>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("device_id", &self.device_id)
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Writes `<redacted>` for every field: for bodies that are all secrets.
macro_rules! redacted_debug {
    ($name:ident) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

/// `GET /v1/2fa`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    /// Unused recovery codes left (0 when disabled).
    pub recovery_codes_left: u32,
}

/// `POST /v1/2fa/setup`: starts enrolment; the password proves it is the
/// account holder at the keyboard, not just a stolen session.
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpSetupRequest {
    pub password: String,
}
redacted_debug!(TotpSetupRequest);

/// A new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s). Not active until a
/// code computed from it is sent to `/v1/2fa/activate`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpSetup {
    /// Base32 (RFC 4648, no padding), as authenticator apps expect.
    pub secret: String,
    /// `otpauth://totp/Rampart:<user>?secret=…&issuer=Rampart&…`, for a QR code.
    pub otpauth_uri: String,
}
redacted_debug!(TotpSetup);

/// A current TOTP code (6 digits).
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpCode {
    pub code: String,
}
redacted_debug!(TotpCode);

/// `POST /v1/2fa/disable`: needs both factors.
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpDisable {
    pub password: String,
    /// A current TOTP code or an unused recovery code.
    pub code: String,
}
redacted_debug!(TotpDisable);

/// Single-use recovery codes, shown once; the server keeps only their hashes.
#[derive(Clone, Serialize, Deserialize)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}
redacted_debug!(RecoveryCodes);

/// `POST /v1/password`: all other sessions are revoked on success.
#[derive(Clone, Serialize, Deserialize)]
pub struct PasswordChange {
    pub old_password: String,
    pub new_password: String,
    /// Required when the account has two-factor authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
}
redacted_debug!(PasswordChange);

/// One device of the caller's account, as `GET /v1/devices` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountDevice {
    pub device_id: DeviceId,
    pub name: String,
    pub created_at: Millis,
    pub last_seen: Millis,
    /// The device whose session made this request.
    pub current: bool,
    #[serde(with = "b64")]
    pub signature_key: Vec<u8>,
    /// Clients check it against their own identity key: a device the server
    /// lists without a valid certificate was not added by the user.
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
}

/// `GET /v1/devices`: live (not revoked) devices of the caller's account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<AccountDevice>,
}

/// What kind of security event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecurityEventKind {
    Registered,
    LoginSucceeded,
    LoginFailed,
    TwoFactorFailed,
    Locked,
    TwoFactorEnabled,
    TwoFactorDisabled,
    RecoveryCodesRegenerated,
    RecoveryCodeUsed,
    PasswordChanged,
    DeviceAdded,
    DeviceRevoked,
    SessionExpired,
    /// A request this account may not make (an administrative action
    /// beyond its role, a disabled account's old token); `subject` names
    /// the account it aimed at, if any.
    AccessDenied,
    /// An administrator changed the account's organisation role.
    RoleChanged,
    /// An administrator disabled the account.
    AccountDisabled,
    /// An administrator enabled the account again.
    AccountEnabled,
    /// An administrator deleted an account (recorded for the
    /// administrator only: the account's own log goes with it).
    AccountDeleted,
    /// An administrator removed the account's second factor.
    TwoFactorReset,
    /// An administrator revoked one of the account's sessions.
    SessionRevoked,
    /// An administrator created an invite code.
    InviteCreated,
    /// An owner changed the organisation's access policy.
    AccessPolicyChanged,
}

/// One entry of the security event table (never a password, code or token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub at: Millis,
    pub kind: SecurityEventKind,
    /// The device the event is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// The client address, as the server saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The other account an administrative event concerns: the account
    /// acted on in the administrator's log, the administrator in the
    /// account's log. Absent when the server's operator acted, and once
    /// that account is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Username>,
}

/// `GET /v1/security-events`: the caller's account, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecurityEventList {
    pub events: Vec<SecurityEvent>,
}

/// `POST /v1/link`: a new device asks to join an existing account. It has
/// no session and no certificate yet; an existing device of the account
/// approves it with the code the new device shows (see `rampart-core::link`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkStart {
    pub device_id: DeviceId,
    pub name: String,
    #[serde(with = "b64")]
    pub signature_key: Vec<u8>,
    /// X25519 public key the approver encrypts the identity key to.
    #[serde(with = "b64")]
    pub ephemeral_key: Vec<u8>,
    /// HMAC, keyed by the secret in the code, over the fields above: the
    /// approver checks it, so the server cannot swap in its own keys.
    #[serde(with = "b64")]
    pub mac: Vec<u8>,
}

/// Answer to [`LinkStart`]. The request expires after ten minutes.
#[derive(Clone, Serialize, Deserialize)]
pub struct LinkTicket {
    /// Public half of the code shown to the user.
    pub link_id: String,
    /// Lets only this new device collect the result.
    pub poll_secret: String,
    pub expires_at: Millis,
}
redacted_debug!(LinkTicket);

/// `GET /v1/link/{link_id}`: the pending request, for the approving device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkRequest {
    pub device_id: DeviceId,
    pub name: String,
    #[serde(with = "b64")]
    pub signature_key: Vec<u8>,
    #[serde(with = "b64")]
    pub ephemeral_key: Vec<u8>,
    #[serde(with = "b64")]
    pub mac: Vec<u8>,
    pub expires_at: Millis,
}

/// `POST /v1/link/{link_id}/approve`, by a device of the account: the new
/// device's certificate (which the server checks against the account's
/// identity key) and the identity key sealed to the new device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkApproval {
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
    /// The approver's X25519 public key for this transfer.
    #[serde(with = "b64")]
    pub ephemeral_key: Vec<u8>,
    /// Encrypted for the new device; opaque to the server.
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

/// `POST /v1/link/{link_id}/poll`, by the new device.
#[derive(Clone, Serialize, Deserialize)]
pub struct LinkPoll {
    pub poll_secret: String,
}
redacted_debug!(LinkPoll);

/// Answer to [`LinkPoll`]: `approved` is empty until an existing device
/// approved. The result is handed out once, then deleted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<LinkResult>,
}

/// An approved link: the new device's session and the sealed identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkResult {
    pub session: SessionResponse,
    #[serde(with = "b64")]
    pub certificate: Vec<u8>,
    #[serde(with = "b64")]
    pub ephemeral_key: Vec<u8>,
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

/// Organisation role of an account (see [`crate::admin`] for what each
/// may administer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including other admins and the access policy.
    Owner,
    /// Manages members, guests and bots.
    Admin,
    Member,
    /// Talks only in conversations it was invited to: creates no group and
    /// starts direct chats only with people it shares a group with.
    Guest,
    /// Reserved for integrations.
    Bot,
}

impl Role {
    /// The name on the wire, in the database and in the CLI (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Guest => "guest",
            Role::Bot => "bot",
        }
    }
}

impl Role {
    /// Owners and admins.
    pub fn administers(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
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
    /// The Ed25519 key with which the server signs MLS proposals as every
    /// group's external sender (removing revoked devices). Clients list it
    /// in the groups they create and pin it on first use.
    #[serde(with = "b64", default)]
    pub delivery_key: Vec<u8>,
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
    /// When given, only these devices (of the named users) are claimed: used to
    /// add one newly linked device without using up its siblings' packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceId>>,
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

/// `GET /v1/policy/messages`: the organisation's rules for message lifetime,
/// which clients apply before sending and the server enforces on what it sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePolicy {
    /// Longest any message may exist, in seconds: every message must carry an
    /// expiry no later than this, and longer timers are refused. `None`: no maximum.
    pub max_retention_secs: Option<u32>,
    /// The timer new conversations start with. `None`: off.
    pub default_timer_secs: Option<u32>,
    /// How long after sending a sender may recall or edit a message.
    pub recall_window_secs: u32,
}

impl Default for MessagePolicy {
    fn default() -> Self {
        Self {
            max_retention_secs: None,
            default_timer_secs: None,
            recall_window_secs: crate::limits::DEFAULT_RECALL_WINDOW_SECS,
        }
    }
}

/// `POST /v1/blobs`: start an upload to a conversation the caller's device is
/// a member of. `size` is the exact length of the blob (ciphertext, padded);
/// it counts against the uploader's quota from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBlob {
    pub group: GroupId,
    pub size: u64,
}

/// Where an upload stands. `received` is the length the server has stored
/// durably: the next part goes at that offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStatus {
    pub id: BlobId,
    pub size: u64,
    pub received: u64,
    pub complete: bool,
}

/// `GET /v1/policy/files`: the limits on uploads and the caller's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePolicy {
    /// Largest blob accepted, in bytes.
    pub max_file_bytes: u64,
    /// Bytes of blobs one account may hold at once.
    pub quota_bytes: u64,
    /// Bytes the caller's account holds now (uploads in progress included).
    pub used_bytes: u64,
}

/// `GET /v1/policy/dlp`: the organisation's data-loss prevention policy.
///
/// The server does not interpret `document`: it is the canonical JSON that
/// `rampart admin policy set` produced from the administrator's file (see
/// `rampart-policy`), and clients parse it. `revision` grows by one with every
/// change; it is 0, with no document, while none was ever set (clients then
/// apply their built-in defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPolicy {
    pub revision: u64,
    /// At most [`crate::limits::MAX_POLICY_DOCUMENT_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// When this revision was stored (server clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Millis>,
}

/// The actions a DLP event may report. `off` is not one: a rule that is off
/// does not fire.
pub const DLP_EVENT_ACTIONS: [&str; 4] = ["block", "warn", "redact", "audit"];

/// One DLP rule that fired in a sending client: which rule, what the client
/// did, in which conversation, and when (the client's clock).
///
/// Deliberately nothing else: not the text, not what matched, not a hash of
/// it. The server stores exactly these four fields and ignores any other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlpEvent {
    /// `card`, `custom.project-falcon`, `file.executable`, … (see
    /// [`is_valid_rule_id`]).
    pub rule: String,
    /// One of [`DLP_EVENT_ACTIONS`].
    pub action: String,
    /// The conversation the message was for (it may not exist on the server
    /// yet: a blocked first message never created it).
    pub group_id: GroupId,
    pub at: Millis,
}

/// `POST /v1/dlp/events`: at most [`crate::limits::MAX_DLP_EVENTS_PER_BATCH`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlpEventBatch {
    pub events: Vec<DlpEvent>,
}

/// Why a [`DlpEvent`] is refused. The texts never repeat the refused value:
/// a broken client might have put message content there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DlpEventError {
    #[error("rule ids are 1 to 64 characters: lowercase ASCII letters, digits, '.', '-' and '_'")]
    RuleId,
    #[error("the action must be one of block, warn, redact, audit")]
    Action,
}

/// 1 to [`crate::limits::MAX_RULE_ID_LEN`] bytes of `a-z`, `0-9`, `.`, `-`, `_`.
pub fn is_valid_rule_id(rule: &str) -> bool {
    !rule.is_empty()
        && rule.len() <= crate::limits::MAX_RULE_ID_LEN
        && rule.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

impl DlpEvent {
    /// Checks the rule id and the action (both sides do: the client before
    /// queueing, the server before storing).
    pub fn validate(&self) -> Result<(), DlpEventError> {
        if !is_valid_rule_id(&self.rule) {
            return Err(DlpEventError::RuleId);
        }
        if !DLP_EVENT_ACTIONS.contains(&self.action.as_str()) {
            return Err(DlpEventError::Action);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rule: &str, action: &str) -> DlpEvent {
        DlpEvent {
            rule: rule.into(),
            action: action.into(),
            group_id: GroupId::new_group([1; 31]),
            at: 1_700_000_000_000,
        }
    }

    #[test]
    fn dlp_events_accept_rule_ids_and_actions_of_the_policy() {
        for rule in [
            "card",
            "custom.project-falcon",
            "file.executable",
            "link.blocklisted",
            "a_1",
            &"x".repeat(64),
        ] {
            for action in DLP_EVENT_ACTIONS {
                assert_eq!(event(rule, action).validate(), Ok(()), "{rule} {action}");
            }
        }
    }

    #[test]
    fn dlp_events_refuse_bad_rule_ids_and_actions() {
        for rule in [
            "",
            "Card",
            "card number",
            "card/1",
            "carte\u{301}",
            &"x".repeat(65),
        ] {
            assert_eq!(event(rule, "block").validate(), Err(DlpEventError::RuleId));
        }
        for action in ["", "off", "Block", "delete", "block "] {
            assert_eq!(event("card", action).validate(), Err(DlpEventError::Action));
        }
    }

    #[test]
    fn org_policy_without_a_document_is_just_a_revision() {
        let none = OrgPolicy {
            revision: 0,
            document: None,
            updated_at: None,
        };
        let json = serde_json::to_string(&none).unwrap();
        assert_eq!(json, r#"{"revision":0}"#);
        assert_eq!(serde_json::from_str::<OrgPolicy>(&json).unwrap(), none);
    }

    #[test]
    fn dlp_events_ignore_unknown_fields() {
        // A newer client may add fields; they are dropped, never kept.
        let batch: DlpEventBatch = serde_json::from_value(serde_json::json!({
            "events": [{
                "rule": "card",
                "action": "block",
                "group_id": GroupId::new_group([1; 31]),
                "at": 5,
                "text": "4111 1111 1111 1111",
            }]
        }))
        .unwrap();
        assert_eq!(batch.events.len(), 1);
    }
}
