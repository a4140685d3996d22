//! Server configuration: what the operator chooses, checked before anything binds.

use crate::audit::AlertsConfig;
use rampart_proto::api::MessagePolicy;
use rampart_proto::limits::{
    BLOB_PART_BYTES, DEFAULT_RECALL_WINDOW_SECS, MAX_TIMER_SECS, MIN_TIMER_SECS,
};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Who may create an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Only holders of an invite code (`rampart admin invite`).
    #[default]
    Invite,
    /// Anyone who can reach the server.
    Open,
}

impl FromStr for Registration {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invite" => Ok(Self::Invite),
            "open" => Ok(Self::Open),
            other => Err(ConfigError::Registration(other.to_owned())),
        }
    }
}

/// Everything `rampart server` needs, read from a TOML file and/or flags.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the database lives; created if missing.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Who may register.
    pub registration: Registration,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy is in front, so plain HTTP on a public address
    /// is fine. The client address is then read from the last entry of
    /// `X-Forwarded-For`, which the proxy must set.
    pub behind_tls_proxy: bool,
    /// A session unused for this long is refused and deleted.
    pub session_idle_secs: u64,
    /// Lockouts and throttles (the `[rate_limits]` TOML section).
    pub rate_limits: RateLimits,
    /// Message lifetime: maximum retention, default timer, recall window
    /// (the `[messages]` TOML section).
    pub messages: MessagesConfig,
    /// File sharing: size limit, quota, orphan grace period and where
    /// blobs are stored (the `[files]` TOML section).
    pub files: FilesConfig,
    /// Who may scrape `GET /metrics`, and an optional separate address
    /// for it (the `[metrics]` TOML section).
    pub metrics: MetricsConfig,
    /// Audit log checkpoints and retention (the `[audit]` TOML section).
    pub audit: AuditConfig,
    /// Alert rules over the audit log and their webhook (the `[alerts]`
    /// TOML section; see [`crate::audit::alerts`]).
    pub alerts: AlertsConfig,
}

/// The audit log's signing interval and retention.
///
/// ```toml
/// [audit]
/// checkpoint_interval_secs = 600   # sign the chain's head every 10 minutes
/// retention_days = 400             # prune older entries (default: keep all)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often the chain's head is signed (if anything was appended);
    /// entries after the last checkpoint are only as safe as the database.
    pub checkpoint_interval_secs: u64,
    /// Entries older than this many days are pruned (hourly), with the
    /// per-account security and DLP events of that age. `None`: kept forever.
    pub retention_days: Option<u32>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval_secs: 600,
            retention_days: None,
        }
    }
}

impl AuditConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=86_400).contains(&self.checkpoint_interval_secs) {
            return Err(ConfigError::Audit(format!(
                "audit.checkpoint_interval_secs = {} is out of range: use 10 to 86400 (one day)",
                self.checkpoint_interval_secs
            )));
        }
        if self.retention_days == Some(0) {
            return Err(ConfigError::Audit(
                "audit.retention_days = 0 would delete the audit log as it is written: \
                 use at least 1, or leave it out to keep everything"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Default for [`ServerConfig::session_idle_secs`]: 30 days.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 30 * 24 * 3600;

/// How failed credential checks are throttled. Failures (wrong passwords,
/// wrong or replayed second-factor codes, bad invites, bad link poll secrets)
/// are counted per account and per client address. Past the free allowance,
/// each further failure locks the key for `lock_secs`, doubling with every
/// failure up to `max_lock_secs`. A success resets the account's count; a
/// key with no failure for `decay_secs` is forgotten.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Failures an account may have before it is locked.
    pub account_free_failures: u32,
    /// Failures one client address may have before it is locked.
    pub ip_free_failures: u32,
    /// The first lock, in seconds.
    pub lock_secs: u64,
    /// The longest lock, in seconds.
    pub max_lock_secs: u64,
    /// Seconds without a failure after which a key's count is forgotten.
    pub decay_secs: u64,
    /// Registrations (and device-link requests) one address may start per window.
    pub registrations_per_ip: u32,
    /// The registration window, in seconds.
    pub registration_window_secs: u64,
    /// Keys (accounts and addresses) tracked at once; the stalest are
    /// forgotten first when it is full.
    pub max_tracked_keys: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            account_free_failures: 5,
            ip_free_failures: 50,
            lock_secs: 30,
            max_lock_secs: 3600,
            decay_secs: 3600,
            registrations_per_ip: 60,
            registration_window_secs: 600,
            max_tracked_keys: 100_000,
        }
    }
}

/// How long messages live, the organisation's side of disappearing messages
/// and recall. Served to clients as `GET /v1/policy/messages`.
///
/// ```toml
/// [messages]
/// max_retention_secs = 604800   # 7 days: every message must expire within this
/// default_timer_secs = 86400    # new conversations start with a 1-day timer
/// recall_window_secs = 86400    # senders may recall for 24 hours (the default)
/// ```
///
/// What the server enforces: with a maximum retention, an application
/// message without an expiry, or with a longer one, is refused
/// (`retention_exceeded`); every stored copy of a message is deleted when it
/// expires (SQLite `secure_delete`, then a WAL checkpoint, so the ciphertext
/// is overwritten on disk); a recall deletes the copies not yet delivered,
/// if it comes from the sender within the window or from a group admin. What
/// it cannot enforce: deletion on the recipients' devices, which the
/// official clients do and a modified client may skip.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// The longest any message may be kept, in seconds. `None`: no maximum.
    /// At least [`MIN_TIMER_SECS`].
    pub max_retention_secs: Option<u32>,
    /// The disappearing-messages timer new conversations start with, in
    /// seconds. `None`: off. Between [`MIN_TIMER_SECS`] and
    /// [`MAX_TIMER_SECS`], and at most `max_retention_secs`.
    pub default_timer_secs: Option<u32>,
    /// How long after sending a sender may recall (or edit) a message, in
    /// seconds: between 60 s and 365 days. Group admins may recall at any time.
    pub recall_window_secs: u32,
}

/// Shortest [`MessagesConfig::recall_window_secs`]: one minute.
pub const MIN_RECALL_WINDOW_SECS: u32 = 60;
/// Longest [`MessagesConfig::recall_window_secs`]: 365 days.
pub const MAX_RECALL_WINDOW_SECS: u32 = 365 * 24 * 3600;

impl Default for MessagesConfig {
    fn default() -> Self {
        Self {
            max_retention_secs: None,
            default_timer_secs: None,
            recall_window_secs: DEFAULT_RECALL_WINDOW_SECS,
        }
    }
}

impl MessagesConfig {
    /// What `GET /v1/policy/messages` answers.
    pub fn policy(&self) -> MessagePolicy {
        MessagePolicy {
            max_retention_secs: self.max_retention_secs,
            default_timer_secs: self.default_timer_secs,
            recall_window_secs: self.recall_window_secs,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(max) = self.max_retention_secs
            && max < MIN_TIMER_SECS
        {
            return Err(ConfigError::Messages(format!(
                "messages.max_retention_secs = {max} is too short: messages must be kept at least {MIN_TIMER_SECS} s, \
                 the shortest disappearing-messages timer"
            )));
        }
        if let Some(default) = self.default_timer_secs {
            if !(MIN_TIMER_SECS..=MAX_TIMER_SECS).contains(&default) {
                return Err(ConfigError::Messages(format!(
                    "messages.default_timer_secs = {default} is out of range: use {MIN_TIMER_SECS} to {MAX_TIMER_SECS} \
                     ({}), or leave it out for no timer",
                    crate::delivery::lifetime::human_duration(MAX_TIMER_SECS)
                )));
            }
            if let Some(max) = self.max_retention_secs
                && default > max
            {
                return Err(ConfigError::Messages(format!(
                    "messages.default_timer_secs = {default} is longer than messages.max_retention_secs = {max}: \
                     new conversations would start with a timer the organisation refuses"
                )));
            }
        }
        let window = self.recall_window_secs;
        if !(MIN_RECALL_WINDOW_SECS..=MAX_RECALL_WINDOW_SECS).contains(&window) {
            return Err(ConfigError::Messages(format!(
                "messages.recall_window_secs = {window} is out of range: use {MIN_RECALL_WINDOW_SECS} (one minute) \
                 to {MAX_RECALL_WINDOW_SECS} (365 days)"
            )));
        }
        Ok(())
    }
}

/// File sharing: how large an upload may be, how much one account may hold,
/// how long an upload that was never sent is kept, and where blobs live.
/// Served to clients (with the caller's usage) as `GET /v1/policy/files`.
///
/// ```toml
/// [files]
/// max_file_bytes = 1073741824     # 1 GiB, the default
/// quota_bytes = 5368709120        # 5 GiB per account, the default
/// orphan_grace_secs = 86400       # uploads never sent are deleted after 24 hours
/// store = "s3"                    # "files" (the default): under data_dir/blobs
///
/// [files.s3]                      # only with store = "s3"
/// bucket = "rampart-blobs"
/// endpoint = "https://s3.eu-central-1.amazonaws.com"  # or MinIO, Ceph, R2, ...
/// region = "eu-central-1"
/// access_key_id = "AKIA..."       # both keys, or neither: then the standard
/// secret_access_key = "..."       # AWS_* environment variables or instance role
/// allow_http = false              # plain http:// endpoints only when true
/// ```
///
/// What the server enforces: the size declared when an upload starts (at
/// most `max_file_bytes`) and every byte received against it; the sum of
/// the sizes an account holds (uploads in progress included) against
/// `quota_bytes`. A blob is deleted with the message that shares it (expiry
/// or recall); one never sent is deleted `orphan_grace_secs` after its
/// upload started. With S3, set a lifecycle rule on the bucket that aborts
/// incomplete multipart uploads after a few days: an upload the server
/// started but crashed before recording cannot be found from the server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// The largest blob accepted, in bytes: at least 1, at most
    /// [`MAX_FILE_BYTES_LIMIT`] (what S3 multipart uploads of
    /// [`BLOB_PART_BYTES`] parts can hold).
    pub max_file_bytes: u64,
    /// Bytes of blobs one account may hold at once (uploads in progress,
    /// unsent and sent files until they are deleted). At least 1.
    pub quota_bytes: u64,
    /// Seconds after its upload started that a blob never attached to a
    /// message is deleted, complete or not. At least 60.
    pub orphan_grace_secs: u64,
    /// Where blobs are stored.
    pub store: StoreKind,
    /// The S3-compatible object store (the `[files.s3]` section), required
    /// with `store = "s3"`.
    pub s3: Option<S3Config>,
}

/// Default for [`FilesConfig::max_file_bytes`]: 1 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// Default for [`FilesConfig::quota_bytes`]: 5 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 5 << 30;
/// Default for [`FilesConfig::orphan_grace_secs`]: 24 hours.
pub const DEFAULT_ORPHAN_GRACE_SECS: u64 = 24 * 3600;
/// Parts one S3 multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// The largest [`FilesConfig::max_file_bytes`]: [`MAX_PARTS`] parts of
/// [`BLOB_PART_BYTES`] (80 GiB less a little).
pub const MAX_FILE_BYTES_LIMIT: u64 = MAX_PARTS * BLOB_PART_BYTES as u64;

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            orphan_grace_secs: DEFAULT_ORPHAN_GRACE_SECS,
            store: StoreKind::Files,
            s3: None,
        }
    }
}

impl FilesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |text: String| Err(ConfigError::Files(text));
        if !(1..=MAX_FILE_BYTES_LIMIT).contains(&self.max_file_bytes) {
            return refuse(format!(
                "files.max_file_bytes = {} is out of range: use 1 to {MAX_FILE_BYTES_LIMIT} \
                 ({MAX_PARTS} upload parts of {BLOB_PART_BYTES} bytes)",
                self.max_file_bytes
            ));
        }
        if self.quota_bytes == 0 {
            return refuse(
                "files.quota_bytes = 0 would refuse every upload: use at least 1, \
                 typically a few times files.max_file_bytes"
                    .into(),
            );
        }
        if self.orphan_grace_secs < 60 {
            return refuse(format!(
                "files.orphan_grace_secs = {} is too short: an upload must have time to finish \
                 and be sent; use at least 60",
                self.orphan_grace_secs
            ));
        }
        match (self.store, &self.s3) {
            (StoreKind::Files, None) => Ok(()),
            (StoreKind::Files, Some(_)) => refuse(
                "[files.s3] is set but files.store is \"files\": add store = \"s3\" to [files] \
                 to use it, or remove [files.s3]"
                    .into(),
            ),
            (StoreKind::S3, None) => refuse(
                "files.store = \"s3\" needs a [files.s3] section with at least bucket = \"...\""
                    .into(),
            ),
            (StoreKind::S3, Some(s3)) => s3.validate(),
        }
    }
}

/// Prometheus metrics (`GET /metrics`): who may scrape them, and where.
///
/// ```toml
/// [metrics]
/// listen = "127.0.0.1:9448"   # also serve /metrics (plain HTTP) here; optional
/// token = "..."               # scrapers send Authorization: Bearer <token>
/// ```
///
/// With a `token`, every scrape must present it, from anywhere. Without
/// one, only loopback clients may scrape (the TCP peer's address, never
/// `X-Forwarded-For`); on the main address of a server behind a TLS
/// proxy not even those, since the proxy usually is one. `/metrics` is
/// always served on the main address too; `listen` adds a plain-HTTP
/// address for it alone, which must be a loopback address unless a token
/// is set (the token then crosses that network unencrypted: keep it to a
/// private one). The metrics never name a user, device, group or address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A separate address that serves only `/metrics`, over plain HTTP.
    pub listen: Option<SocketAddr>,
    /// The bearer token scrapers must send (at least
    /// [`MIN_METRICS_TOKEN_LEN`] visible ASCII characters). Never logged
    /// or shown (see [`Secret`]'s `Debug`).
    pub token: Option<Secret>,
}

/// Shortest [`MetricsConfig::token`].
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

impl MetricsConfig {
    fn validate(&self, main: SocketAddr) -> Result<(), ConfigError> {
        let refuse = |text: String| Err(ConfigError::Metrics(text));
        if let Some(token) = &self.token {
            let t = token.expose();
            if t.len() < MIN_METRICS_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return refuse(format!(
                    "metrics.token must be at least {MIN_METRICS_TOKEN_LEN} visible ASCII characters \
                     without spaces (scrapers send it as Authorization: Bearer <token>); generate one \
                     with `openssl rand -hex 32`"
                ));
            }
        }
        let Some(listen) = self.listen else {
            return Ok(());
        };
        if listen == main && listen.port() != 0 {
            return refuse(format!(
                "metrics.listen = {listen} is the server's own address: choose another port, or \
                 leave metrics.listen out and scrape /metrics on the server's address"
            ));
        }
        if !listen.ip().is_loopback() && self.token.is_none() {
            return refuse(format!(
                "metrics.listen = {listen} is not a loopback address and metrics.token is not set: \
                 anyone who can reach it could read the metrics. Add token = \"<secret>\" to \
                 [metrics] (scrapers send Authorization: Bearer <secret>), or listen on a loopback \
                 address such as 127.0.0.1:9448"
            ));
        }
        Ok(())
    }
}

/// Where blobs are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Files under `data_dir/blobs` (one machine).
    #[default]
    Files,
    /// An S3-compatible object store ([`S3Config`]).
    S3,
}

/// An S3-compatible object store for blobs (`[files.s3]`). Objects are
/// named `blobs/<id>` in the bucket, which must exist.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// The service URL, for anything but AWS itself (MinIO, Ceph, R2, ...).
    /// Requests use path-style addressing (`endpoint/bucket/key`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region to sign requests for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Static credentials. Without them, the standard `AWS_*` environment
    /// variables, web identity or instance metadata are used.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Never logged or shown (see the `Debug` impl).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Allow a plain `http://` endpoint (a store on the same host or
    /// network only: requests are signed but not encrypted).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |text: String| Err(ConfigError::Files(text));
        if self.bucket.trim().is_empty() {
            return refuse("files.s3.bucket is empty: name the bucket blobs go to".into());
        }
        if let Some(endpoint) = &self.endpoint {
            if endpoint.starts_with("http://") {
                if !self.allow_http {
                    return refuse(format!(
                        "files.s3.endpoint {endpoint:?} is plain HTTP: use https://, or add \
                         allow_http = true to [files.s3] if the store is on a trusted network"
                    ));
                }
            } else if !endpoint.starts_with("https://") {
                return refuse(format!(
                    "files.s3.endpoint {endpoint:?} is not a URL: write it as https://host[:port]"
                ));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return refuse(
                "files.s3.access_key_id and files.s3.secret_access_key go together: set both, \
                 or neither to use the AWS_* environment variables or instance role"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A secret from the configuration: never shown by `Debug`, zeroed on drop.
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./rampart-data"),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8448)),
            registration: Registration::Invite,
            tls_cert: None,
            tls_key: None,
            behind_tls_proxy: false,
            session_idle_secs: DEFAULT_SESSION_IDLE_SECS,
            rate_limits: RateLimits::default(),
            messages: MessagesConfig::default(),
            files: FilesConfig::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`ServerConfig`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// An unknown registration policy.
    #[error("unknown registration policy {0:?}: use \"invite\" or \"open\"")]
    Registration(String),
    /// Plain HTTP on a non-loopback address would expose passwords and tokens.
    #[error(
        "refusing to serve plain HTTP on {0}: tokens and passwords would cross the network unencrypted. \
         Add --tls-cert <PEM> and --tls-key <PEM> to serve TLS, or --behind-tls-proxy if a \
         TLS-terminating proxy is in front, or listen on a loopback address such as 127.0.0.1"
    )]
    PlainHttpNotLoopback(SocketAddr),
    /// Only one half of the TLS key pair was given.
    #[error("--tls-cert and --tls-key go together: add --{0}")]
    TlsHalf(&'static str),
    /// A numeric setting is out of its range.
    #[error("{name} {reason}")]
    OutOfRange {
        name: &'static str,
        reason: &'static str,
    },
    /// A `[messages]` setting is out of its range or contradicts another;
    /// the text names the setting, its value and the allowed range.
    #[error("{0}")]
    Messages(String),
    /// A `[files]` setting is out of its range, missing or contradicts
    /// another; the text names the setting and what to write instead.
    #[error("{0}")]
    Files(String),
    /// A `[metrics]` setting is unsafe or malformed; the text names the
    /// setting and what to write instead.
    #[error("{0}")]
    Metrics(String),
    /// An `[audit]` or `[alerts]` setting is out of range or unsafe.
    #[error("{0}")]
    Audit(String),
}

impl ServerConfig {
    /// Reads a TOML config file; missing keys take their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Refuses settings that would leak credentials: plain HTTP is for loopback
    /// only, unless TLS is configured or a TLS proxy is declared.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_limits()?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(ConfigError::TlsHalf("tls-key")),
            (None, Some(_)) => return Err(ConfigError::TlsHalf("tls-cert")),
            (Some(_), Some(_)) => return Ok(()),
            (None, None) => {}
        }
        if self.listen.ip().is_loopback() || self.behind_tls_proxy {
            Ok(())
        } else {
            Err(ConfigError::PlainHttpNotLoopback(self.listen))
        }
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        self.messages.validate()?;
        self.files.validate()?;
        self.metrics.validate(self.listen)?;
        self.audit.validate()?;
        self.alerts.validate().map_err(ConfigError::Audit)?;
        let r = &self.rate_limits;
        let checks = [
            (
                self.session_idle_secs < 60,
                "session_idle_secs",
                "must be at least 60",
            ),
            (
                r.lock_secs == 0,
                "rate_limits.lock_secs",
                "must be at least 1",
            ),
            (
                r.max_lock_secs < r.lock_secs,
                "rate_limits.max_lock_secs",
                "must be at least rate_limits.lock_secs",
            ),
            (
                r.registration_window_secs == 0,
                "rate_limits.registration_window_secs",
                "must be at least 1",
            ),
            (
                r.max_tracked_keys < 100,
                "rate_limits.max_tracked_keys",
                "must be at least 100",
            ),
        ];
        match checks.into_iter().find(|(bad, _, _)| *bad) {
            Some((_, name, reason)) => Err(ConfigError::OutOfRange { name, reason }),
            None => Ok(()),
        }
    }

    /// The TLS key pair, if TLS is configured.
    pub(crate) fn tls(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(addr: &str) -> ServerConfig {
        ServerConfig {
            listen: addr.parse().unwrap_or_else(|_| unreachable!()),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(on("127.0.0.1:8448").validate().is_ok());
        assert!(on("[::1]:8448").validate().is_ok());
        let err = on("0.0.0.0:8448").validate().err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(
            msg.contains("--tls-cert") && msg.contains("--behind-tls-proxy"),
            "{msg}"
        );
        let proxied = ServerConfig {
            behind_tls_proxy: true,
            ..on("0.0.0.0:8448")
        };
        assert!(proxied.validate().is_ok());
    }

    #[test]
    fn tls_needs_both_halves() {
        let cert_only = ServerConfig {
            tls_cert: Some("c.pem".into()),
            ..on("0.0.0.0:443")
        };
        assert!(matches!(
            cert_only.validate(),
            Err(ConfigError::TlsHalf("tls-key"))
        ));
        let key_only = ServerConfig {
            tls_key: Some("k.pem".into()),
            ..on("0.0.0.0:443")
        };
        assert!(matches!(
            key_only.validate(),
            Err(ConfigError::TlsHalf("tls-cert"))
        ));
        let both = ServerConfig {
            tls_key: Some("k.pem".into()),
            ..cert_only
        };
        assert!(both.validate().is_ok());
    }

    #[test]
    fn toml_defaults_and_unknown_keys() {
        let c: ServerConfig =
            toml::from_str("registration = \"open\"\nlisten = \"127.0.0.1:9000\"")
                .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.registration, Registration::Open);
        assert_eq!(c.data_dir, PathBuf::from("./rampart-data"));
        assert!(toml::from_str::<ServerConfig>("bogus = 1").is_err());
        assert_eq!(
            "open".parse::<Registration>().ok(),
            Some(Registration::Open)
        );
        assert!("closed".parse::<Registration>().is_err());
    }

    #[test]
    fn toml_security_settings() {
        let c: ServerConfig =
            toml::from_str("session_idle_secs = 600\n[rate_limits]\naccount_free_failures = 3\n")
                .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.session_idle_secs, 600);
        assert_eq!(c.rate_limits.account_free_failures, 3);
        assert_eq!(c.rate_limits.ip_free_failures, 50);
        let d = ServerConfig::default();
        assert_eq!(d.session_idle_secs, 30 * 24 * 3600);
        assert!(toml::from_str::<ServerConfig>("[rate_limits]\nbogus = 1").is_err());
    }

    fn messages(max: Option<u32>, default: Option<u32>, window: u32) -> Result<(), ConfigError> {
        ServerConfig {
            messages: MessagesConfig {
                max_retention_secs: max,
                default_timer_secs: default,
                recall_window_secs: window,
            },
            ..ServerConfig::default()
        }
        .validate()
    }

    #[test]
    fn message_settings_in_range() {
        let day = 24 * 3600;
        assert!(messages(None, None, DEFAULT_RECALL_WINDOW_SECS).is_ok());
        assert!(messages(Some(7 * day), Some(day), 60).is_ok());
        assert!(messages(Some(30), Some(30), 365 * day).is_ok());
        // An organisation may keep longer than a user's longest timer.
        assert!(messages(Some(u32::MAX), Some(MAX_TIMER_SECS), day).is_ok());
        for (max, default, window) in [
            (Some(0), None, day),
            (Some(29), None, day),
            (None, Some(0), day),
            (None, Some(29), day),
            (None, Some(MAX_TIMER_SECS + 1), day),
            (None, Some(u32::MAX), day),
            (Some(day), Some(2 * day), day),
            (None, None, 0),
            (None, None, 59),
            (None, None, 365 * day + 1),
            (None, None, u32::MAX),
        ] {
            let err = messages(max, default, window).err().map(|e| e.to_string());
            let msg = err.unwrap_or_default();
            assert!(
                msg.starts_with("messages."),
                "{max:?} {default:?} {window}: {msg:?}"
            );
        }
    }

    #[test]
    fn toml_messages_section() {
        let c: ServerConfig =
            toml::from_str("[messages]\nmax_retention_secs = 604800\ndefault_timer_secs = 86400\n")
                .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.messages.max_retention_secs, Some(604_800));
        assert_eq!(c.messages.default_timer_secs, Some(86_400));
        assert_eq!(c.messages.recall_window_secs, DEFAULT_RECALL_WINDOW_SECS);
        assert!(c.validate().is_ok());
        assert_eq!(
            c.messages.policy(),
            MessagePolicy {
                max_retention_secs: Some(604_800),
                default_timer_secs: Some(86_400),
                recall_window_secs: DEFAULT_RECALL_WINDOW_SECS,
            }
        );
        // Negative and overflowing numbers do not even parse.
        assert!(toml::from_str::<ServerConfig>("[messages]\nrecall_window_secs = -1").is_err());
        assert!(
            toml::from_str::<ServerConfig>("[messages]\nmax_retention_secs = 4294967296").is_err()
        );
        assert!(toml::from_str::<ServerConfig>("[messages]\nbogus = 1").is_err());
    }

    #[test]
    fn toml_files_section() {
        let d = ServerConfig::default().files;
        assert_eq!(
            (
                d.max_file_bytes,
                d.quota_bytes,
                d.orphan_grace_secs,
                d.store
            ),
            (1 << 30, 5 << 30, 24 * 3600, StoreKind::Files)
        );
        assert!(d.s3.is_none());
        let c: ServerConfig = toml::from_str(
            "[files]\nmax_file_bytes = 1048576\nstore = \"s3\"\n\
             [files.s3]\nbucket = \"blobs\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             allow_http = true\naccess_key_id = \"AKIAEXAMPLE\"\n\
             secret_access_key = \"very-secret-key\"\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.files.max_file_bytes, 1 << 20);
        assert_eq!(c.files.quota_bytes, DEFAULT_QUOTA_BYTES);
        assert_eq!(c.files.store, StoreKind::S3);
        let s3 = c.files.s3.clone().unwrap_or_else(|| unreachable!());
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(
            s3.secret_access_key.as_ref().map(Secret::expose),
            Some("very-secret-key")
        );
        assert!(c.validate().is_ok());
        // The secret never shows in logs.
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        for bad in [
            "[files]\nbogus = 1",
            "[files]\nstore = \"ftp\"",
            "[files.s3]\nbucket = \"b\"\nbogus = 1",
            "[files]\nmax_file_bytes = -1",
        ] {
            assert!(toml::from_str::<ServerConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_metrics_section() {
        let c: ServerConfig = toml::from_str(
            "[metrics]\nlisten = \"0.0.0.0:9448\"\ntoken = \"0123456789abcdef-metrics\"\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.metrics.listen, "0.0.0.0:9448".parse().ok());
        assert_eq!(
            c.metrics.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-metrics")
        );
        assert!(c.validate().is_ok());
        // The token never shows in logs.
        let shown = format!("{c:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(ServerConfig::default().metrics, MetricsConfig::default());
        assert!(toml::from_str::<ServerConfig>("[metrics]\nbogus = 1").is_err());
        assert!(toml::from_str::<ServerConfig>("[metrics]\nlisten = \"nowhere\"").is_err());
    }

    #[test]
    fn metrics_settings_are_checked() {
        let metrics = |listen: Option<&str>, token: Option<&str>| ServerConfig {
            metrics: MetricsConfig {
                listen: listen.map(|l| l.parse().unwrap_or_else(|_| unreachable!())),
                token: token.map(Secret::new),
            },
            ..ServerConfig::default()
        };
        let token = Some("0123456789abcdef");
        for ok in [
            metrics(None, None),
            metrics(Some("127.0.0.1:9448"), None),
            metrics(Some("[::1]:9448"), None),
            metrics(Some("127.0.0.1:0"), None),
            metrics(Some("0.0.0.0:9448"), token),
            metrics(None, token),
        ] {
            assert!(ok.validate().is_ok(), "{:?}", ok.metrics);
        }
        let refused = |c: ServerConfig| {
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let msg = refused(metrics(Some("0.0.0.0:9448"), None));
        assert!(
            msg.contains("metrics.token") && msg.contains("127.0.0.1"),
            "{msg}"
        );
        let msg = refused(metrics(Some("127.0.0.1:8448"), None));
        assert!(msg.contains("another port"), "{msg}");
        for bad in ["short", "sixteen chars ok?", "0123456789abcdé"] {
            let msg = refused(metrics(None, Some(bad)));
            assert!(msg.starts_with("metrics.token"), "{bad}: {msg}");
        }
    }

    #[test]
    fn file_settings_in_range() {
        let s3 = |endpoint: &str, allow_http: bool| S3Config {
            bucket: "b".into(),
            endpoint: Some(endpoint.into()),
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            allow_http,
        };
        let files = |f: FilesConfig| ServerConfig {
            files: f,
            ..ServerConfig::default()
        };
        let s3_store = |c: S3Config| FilesConfig {
            store: StoreKind::S3,
            s3: Some(c),
            ..FilesConfig::default()
        };
        assert!(
            files(s3_store(s3("https://s3.example", false)))
                .validate()
                .is_ok()
        );
        assert!(
            files(s3_store(s3("http://minio:9000", true)))
                .validate()
                .is_ok()
        );
        let max = FilesConfig {
            max_file_bytes: MAX_FILE_BYTES_LIMIT,
            ..FilesConfig::default()
        };
        assert!(files(max).validate().is_ok());
        for bad in [
            FilesConfig {
                max_file_bytes: 0,
                ..FilesConfig::default()
            },
            FilesConfig {
                max_file_bytes: MAX_FILE_BYTES_LIMIT + 1,
                ..FilesConfig::default()
            },
            FilesConfig {
                quota_bytes: 0,
                ..FilesConfig::default()
            },
            FilesConfig {
                orphan_grace_secs: 59,
                ..FilesConfig::default()
            },
            FilesConfig {
                store: StoreKind::S3,
                ..FilesConfig::default()
            },
            FilesConfig {
                s3: Some(s3("https://s3.example", false)),
                ..FilesConfig::default()
            },
            s3_store(s3("http://minio:9000", false)),
            s3_store(s3("minio:9000", true)),
            s3_store(S3Config {
                bucket: " ".into(),
                ..s3("https://s3.example", false)
            }),
            s3_store(S3Config {
                access_key_id: Some("k".into()),
                ..s3("https://s3.example", false)
            }),
        ] {
            let err = files(bad.clone()).validate().err().map(|e| e.to_string());
            let msg = err.unwrap_or_default();
            assert!(
                msg.starts_with("files.") || msg.starts_with("[files.s3]"),
                "{bad:?}: {msg:?}"
            );
        }
    }
}
