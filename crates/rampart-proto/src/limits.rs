//! Every size a peer controls, in one place. Both sides enforce these.

/// Shortest username.
pub const MIN_USERNAME_LEN: usize = 3;
/// Longest username.
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest device name shown to the user.
pub const MAX_DEVICE_NAME_LEN: usize = 64;
/// Shortest password accepted (in characters).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password: Argon2 cost grows with input, so cap it.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest invite code.
pub const MAX_INVITE_LEN: usize = 128;
/// Longest second-factor input: a 6-digit TOTP code or a recovery code.
pub const MAX_TOTP_INPUT_LEN: usize = 32;
/// Longest device-link code or poll secret.
pub const MAX_LINK_CODE_LEN: usize = 64;
/// Security events returned by one listing.
pub const MAX_SECURITY_EVENTS: usize = 200;
/// Ed25519 public keys.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Ed25519 signatures.
pub const SIGNATURE_LEN: usize = 64;

/// A sealed identity transfer of device linking (username and identity secret, encrypted).
pub const MAX_LINK_SEALED_BYTES: usize = 1024;

/// One serialised MLS KeyPackage (ciphersuite 0x0001 packages are ~300 bytes plus
/// our credential; post-quantum ones ~2.7 KB).
pub const MAX_KEY_PACKAGE_BYTES: usize = 8 * 1024;
/// KeyPackages in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;
/// KeyPackages a device may hold on the server at once (not counting its last resort).
pub const MAX_KEY_PACKAGES_STORED: usize = 500;
/// Users named in one KeyPackage claim.
pub const MAX_CLAIM_USERS: usize = 64;
/// Devices one user may have.
pub const MAX_DEVICES_PER_USER: usize = 16;

/// Member devices of one group (MLS leaves).
pub const MAX_GROUP_DEVICES: usize = 1024;
/// Devices added or removed by one commit.
pub const MAX_DEVICES_PER_COMMIT: usize = MAX_GROUP_DEVICES;

/// An application message or proposal (MLS PrivateMessage/PublicMessage).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// A commit, its Welcome or its GroupInfo (a Welcome for 1024 members is ~210 KB
/// with the ratchet tree; leave room for post-quantum suites).
pub const MAX_HANDSHAKE_BYTES: usize = 3 * 1024 * 1024;
/// One WebSocket frame, in either direction.
pub const MAX_FRAME_BYTES: usize = 10 * 1024 * 1024;
/// A JSON request body on the REST API.
pub const MAX_JSON_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest human-readable error message carried in a frame.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Longest plaintext of a text message (enforced by clients; the server sees
/// only [`MAX_MESSAGE_BYTES`] of ciphertext).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Shortest disappearing-message timer (and per-message expiry), in seconds.
pub const MIN_TIMER_SECS: u32 = 30;
/// Longest disappearing-message timer a user may choose: four weeks. An
/// organisation's maximum retention may be longer; then it is the bound.
pub const MAX_TIMER_SECS: u32 = 28 * 24 * 3600;
/// Times one message may be edited.
pub const MAX_EDITS: u32 = 10;
/// Default time after sending during which a sender may recall or edit.
pub const DEFAULT_RECALL_WINDOW_SECS: u32 = 24 * 3600;

/// Plaintext bytes per sealed chunk of an attachment (the STREAM construction;
/// each chunk adds a 16-byte tag).
pub const ATTACHMENT_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of blob per upload request: every `PUT /v1/blobs/{id}` carries
/// exactly this many bytes (the last one the rest), so an interrupted upload
/// resumes at a part boundary. At least 5 MiB, the smallest part S3 accepts.
pub const BLOB_PART_BYTES: usize = 8 * 1024 * 1024;
/// Files attached to one message.
pub const MAX_ATTACHMENTS: usize = 8;
/// Longest attachment file name, in bytes (enforced by clients; inside the encryption).
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest attachment media type, in bytes (enforced by clients).
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

/// The organisation's data-loss prevention policy as stored and served
/// (canonical JSON; blocklists can be long).
pub const MAX_POLICY_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;
/// DLP events in one `POST /v1/dlp/events`.
pub const MAX_DLP_EVENTS_PER_BATCH: usize = 100;
/// Longest DLP rule id (`card`, `custom.project-falcon`, …).
pub const MAX_RULE_ID_LEN: usize = 64;
/// The body of one `POST /v1/dlp/events`: a full batch of the longest
/// events is about 25 KiB, so this leaves room and little else.
pub const MAX_DLP_EVENTS_BODY_BYTES: usize = 64 * 1024;
