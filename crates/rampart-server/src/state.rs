//! What every handler shares.

use crate::admin::AccessCache;
use crate::audit::Audit;
use crate::blobs::Blobs;
use crate::clock::Clock;
use crate::config::Registration;
use crate::delivery::DeliveryHandle;
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;
use crate::secrets::ServerKey;
use rampart_proto::admin::AccessPolicy;
use rampart_proto::api::MessagePolicy;
use sqlx::SqlitePool;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::{Semaphore, watch};

/// Cheap to clone: handles and `Arc`s only.
#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub registration: Registration,
    pub delivery: DeliveryHandle,
    /// One permit per open WebSocket (the connection cap).
    pub ws_slots: Arc<Semaphore>,
    /// Flips to `true` when the server shuts down; WebSockets close on it.
    pub shutdown: watch::Receiver<bool>,
    /// Verified against for unknown usernames (constant-time login failures).
    pub dummy_hash: Arc<str>,
    pub next_conn_id: Arc<AtomicU64>,
    /// "Now" for everything security-related (tests use a manual clock).
    pub clock: Clock,
    pub limiter: Arc<Limiter>,
    /// Encrypts TOTP secrets and keys the recovery-code HMAC.
    pub key: Arc<ServerKey>,
    /// The public key with which the server signs MLS proposals as the
    /// groups' external sender (served in `GET /v1/me`; clients pin it).
    pub delivery_key: Arc<[u8]>,
    /// Sessions unused for longer are refused.
    pub session_idle_ms: i64,
    /// Whether `X-Forwarded-For` is trusted (its last entry).
    pub behind_tls_proxy: bool,
    /// Served as `GET /v1/policy/messages`.
    pub message_policy: Arc<MessagePolicy>,
    /// The blob store and the file limits.
    pub blobs: Arc<Blobs>,
    /// The organisation's DLP policy revision; WebSockets watch it to send
    /// `PolicyChanged` (see `dlp`).
    pub policy_revision: watch::Receiver<u64>,
    /// The organisation's access policy (see `admin`): read at start,
    /// replaced when an administrator changes it over HTTP.
    pub(crate) access: AccessCache,
    /// Counters and histograms served at `GET /metrics`, and who may read them.
    pub metrics: Arc<Metrics>,
    /// The audit log: sealing, checkpoints, alerts.
    pub audit: Arc<Audit>,
}

impl AppState {
    /// Now, as SQLite stores timestamps.
    pub fn now(&self) -> i64 {
        self.clock.now_db()
    }

    /// The organisation's access policy as this server enforces it now.
    pub(crate) fn access(&self) -> Arc<AccessPolicy> {
        self.access.get()
    }

    /// The handle the admin API replaces the policy through.
    pub(crate) fn access_cache(&self) -> AccessCache {
        self.access.clone()
    }
}
