//! The Rampart server: accounts, the user directory, MLS KeyPackages and the
//! delivery service, over HTTPS (REST + one WebSocket per device) with SQLite.
//!
//! What it does **not** do: it never sees a key or a plaintext. It parses only
//! MLS framing (wire format, content type, group id, epoch) to enforce
//! membership and commit ordering; everything else it stores is ciphertext.
//! The routes and frames are defined in `rampart-proto`.
//!
//! Account security lives here too:
//!
//! - passwords: Argon2id, a minimum length, and a bundled list of leaked
//!   passwords that are refused (`password`);
//! - two-factor authentication: TOTP (RFC 6238, [`totp`]) with replay
//!   protection and single-use recovery codes (`twofactor`); TOTP secrets
//!   are encrypted at rest with the server key in `data_dir/server.key`
//!   (`secrets`) — keep that file out of database backups;
//! - lockouts: failed passwords and codes are counted per account and per
//!   client address in memory, with doubling locks ([`RateLimits`]);
//! - sessions that expire when unused ([`ServerConfig::session_idle_secs`]);
//! - the caller's device list, revocation (which closes the device's
//!   WebSocket and empties its queue at once), and device linking approved
//!   by an existing device (`devices`, `link`);
//! - a security event log per account (`security_events`), which never
//!   holds a password, code, token or secret.
//!
//! Message lifetime ([`MessagesConfig`], served as `GET /v1/policy/messages`):
//! an organisation's maximum retention is enforced on every application
//! message; expired messages are never delivered and are purged every few
//! seconds ([`Purger`]); a recall from the sender (within the recall window)
//! or a group admin deletes the copies not yet delivered. The database runs
//! with `secure_delete` and the WAL is checkpointed after deletions, so
//! purged ciphertext is overwritten on disk. Deleting delivered copies is
//! up to the clients: a modified client may keep them.
//!
//! File sharing ([`FilesConfig`], `GET /v1/policy/files`): clients upload
//! encrypted files as opaque blobs of a declared size, in parts of
//! `BLOB_PART_BYTES` at the offset the server confirmed, so an interrupted
//! upload resumes; downloads stream and resume with `Range: bytes=N-`. The
//! size limit and the per-account quota are checked when an upload starts,
//! and every part against the declared size. Blobs live under
//! `data_dir/blobs` (uploads in progress in `uploads/`, complete ones in
//! `complete/`, so a half-written blob is never readable) or in an
//! S3-compatible bucket. A blob becomes readable by a conversation's member
//! devices once a message there lists it; until then only its uploader can
//! read it. It is deleted when that message expires or is recalled, and
//! one never sent after a grace period. The server never sees a file's
//! name, type, key or plaintext.
//!
//! Data-loss prevention (`GET /v1/policy/dlp`, `POST /v1/dlp/events`): the
//! organisation's policy is an opaque JSON document stored with a revision
//! ([`set_dlp_policy`], or a [`PolicyHandle`] in process); a running server
//! notices a new revision within [`POLICY_POLL_INTERVAL`] and sends
//! `PolicyChanged` to every connected device. Clients scan before
//! encrypting and report which rule fired and what they did, never the
//! content; the server stores those events ([`dlp_events`]) and nothing
//! else from them. A modified client can skip DLP altogether.
//!
//! Organisation administration ([`admin`], `/v1/admin/…`, described with
//! every other route in the OpenAPI document served at
//! `GET /v1/openapi.json`): roles (owner, admin, member, guest, bot),
//! invites with a role and an expiry, disabling (every device revoked,
//! login and old tokens refused with `account_disabled`), re-enabling,
//! deleting (data purged, the name never reusable), 2FA resets, sessions,
//! a content-free view of groups, and the access policy: who may create
//! groups, group sizes, guests, allowed usernames and forced two-factor
//! enrolment. The same operations run on a stopped server's data directory
//! through [`admin::Console`]; a running server holds
//! `data_dir/server.lock`, so the two never meet. Administrators never see
//! content: no route returns any.
//!
//! Monitoring: Prometheus metrics at `GET /metrics` (text format 0.0.4,
//! names prefixed `rampart_`): open WebSockets, relayed messages, accepted
//! handshakes, queue depth, stored blob bytes, logins by outcome, rate-limit
//! refusals, DLP events by action and request latencies by route template.
//! Loopback clients only, unless `[metrics] token` is set
//! ([`MetricsConfig`]); `[metrics] listen` adds an address that serves
//! nothing else. Requests are logged (`tracing`) with their method, route
//! template, status and latency — never a raw path, a body, a header or a
//! token; installing a subscriber is up to the binary.
//!
//! Audit ([`audit`], `/v1/admin/audit…`): every security-relevant event
//! is appended, in the transaction of the action it records, to a
//! hash-chained log whose head the server signs at intervals, on shutdown
//! and before pruning; it can be listed, exported as JSON Lines and
//! verified. Alert rules over it call a signed webhook. It holds no
//! content, password, code or token.
//!
//! Every time-dependent check reads a [`Clock`], which tests replace with a
//! manual one ([`Server::open_with_clock`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_server::ServerError> {
//! let server = rampart_server::Server::open(rampart_server::ServerConfig::default()).await?;
//! if let Some(code) = server.first_invite() {
//!     println!("first account invite: {code}");
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8448").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Limits: a single process with SQLite; at most
//! [`MAX_WEBSOCKETS`] WebSockets; plain HTTP only on loopback
//! unless a TLS proxy is declared. Lockout counters live in memory, so a
//! restart forgets them. At most 16 upload parts (8 MiB each) are held in
//! memory at once, whatever the number of clients.

pub mod admin;
mod attempt;
pub mod audit;
mod auth;
mod blobs;
mod client_ip;
mod clock;
pub mod config;
mod db;
mod delivery;
mod devices;
mod directory;
mod dlp;
mod error;
mod groups;
pub mod handshake_cost;
mod keypackages;
mod link;
mod metrics;
mod password;
mod policy;
mod ratelimit;
mod secrets;
mod security_events;
mod state;
mod tls;
pub mod totp;
mod twofactor;

pub use admin::Console as AdminConsole;
pub use auth::AuthDevice;
pub use clock::Clock;
pub use config::{
    ConfigError, FilesConfig, MessagesConfig, MetricsConfig, RateLimits, Registration, S3Config,
    ServerConfig, StoreKind,
};
pub use delivery::lifetime::Purger;
pub use delivery::ws::MAX_WEBSOCKETS;
pub use dlp::{
    DlpEventRecord, POLICY_POLL_INTERVAL, PolicyDocumentError, PolicyHandle, events as dlp_events,
    policy as dlp_policy, set_policy as set_dlp_policy,
};
pub use error::{ApiError, ServerError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use rampart_proto::api::Health;
use rampart_proto::audit::Outcome;
use rampart_proto::limits::{BLOB_PART_BYTES, MAX_DLP_EVENTS_BODY_BYTES, MAX_JSON_BODY_BYTES};
use sqlx::SqlitePool;
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument as _;

/// How often expired idempotency keys and fully delivered messages are purged.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);
/// How often expired messages are purged (real time; their expiry is read
/// from the server clock). Until then the WebSocket already skips them.
const PURGE_INTERVAL: Duration = Duration::from_secs(5);
/// How long open WebSockets get to close after shutdown begins.
const WS_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server's state: database, delivery actor, configuration.
pub struct Server {
    state: AppState,
    config: ServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    first_invite: Option<String>,
    shutdown_tx: watch::Sender<bool>,
    purger: Purger,
    policy: PolicyHandle,
    policy_poll: Duration,
    /// The `[metrics] listen` address, bound at open, served by `serve`.
    metrics_listener: Option<tokio::net::TcpListener>,
    /// `data_dir/server.lock`, held while this server lives, so a second
    /// server or an admin console refuses to open the same directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field(
                "first_invite",
                &self.first_invite.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Creates the data dir, opens/creates SQLite (WAL, synchronous=FULL,
    /// foreign keys, busy timeout), runs the embedded migrations, reads (or
    /// creates) the server key, loads the delivery caches and spawns the
    /// delivery actor. On the very first start (no users and no unused
    /// invite) creates an owner invite code. Uses the system clock.
    pub async fn open(config: ServerConfig) -> Result<Server, ServerError> {
        Self::open_with_clock(config, Clock::system()).await
    }

    /// [`Server::open`] with the clock that 2FA, lockouts, session expiry,
    /// link codes, message timestamps, expiry and recall windows read (a
    /// [`Clock::manual`] in tests).
    pub async fn open_with_clock(
        config: ServerConfig,
        clock: Clock,
    ) -> Result<Server, ServerError> {
        config.validate()?;
        let tls = match config.tls() {
            Some((cert, key)) => Some(tls::load(cert, key)?),
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = admin::console::lock_data_dir(&config.data_dir)?;
        let pool = db::open(&config.data_dir).await?;
        let access = admin::AccessCache::new(admin::try_load_access(&pool).await?);
        let key = secrets::ServerKey::load_or_create(&config.data_dir)?;
        let first_invite = first_start_invite(&pool, &clock).await?;
        let dummy_hash = password::dummy_hash()
            .await
            .map_err(|e| ServerError::Internal(e.message))?;
        let blobs = Arc::new(blobs::Blobs::open(&config.files, &config.data_dir).await?);
        let metrics = Arc::new(metrics::Metrics::new(
            &config.metrics,
            config.behind_tls_proxy,
        ));
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::MetricsListen { addr, source })?,
            ),
            None => None,
        };
        let purger = Purger::new(pool.clone(), clock.clone(), blobs.clone());
        let signer = Arc::new(delivery::external::DeliverySigner::from_seed(
            key.delivery_seed(),
        ));
        let (delivery, _actor) = delivery::actor::start(
            pool.clone(),
            clock.clone(),
            config.messages.clone(),
            purger.clone(),
            blobs.clone(),
            signer.clone(),
            metrics.clone(),
        )
        .await?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let policy = PolicyHandle::new(pool.clone(), clock.clone()).await?;
        let audit = Arc::new(audit::Audit::new(
            pool.clone(),
            clock.clone(),
            key.audit_seed(),
            audit::alerts::Alerts::start(&config.alerts),
        ));
        // Seal what an earlier run or an admin command left unsealed, and
        // say in the log when the server started.
        audit.seal().await?;
        let started = audit::Entry::new("server_started", audit::Actor::Server, Outcome::Success)
            .detail("version", env!("CARGO_PKG_VERSION"));
        audit::append(&pool, clock.now_db(), &started).await?;
        let state = AppState {
            pool,
            registration: config.registration,
            delivery,
            ws_slots: Arc::new(Semaphore::new(delivery::ws::MAX_WEBSOCKETS)),
            shutdown,
            dummy_hash: dummy_hash.into(),
            next_conn_id: Arc::new(AtomicU64::new(1)),
            clock,
            limiter: Arc::new(ratelimit::Limiter::new(
                config.rate_limits.clone(),
                metrics.clone(),
            )),
            key: Arc::new(key),
            delivery_key: signer.public_key().into(),
            session_idle_ms: i64::try_from(config.session_idle_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            behind_tls_proxy: config.behind_tls_proxy,
            message_policy: Arc::new(config.messages.policy()),
            blobs,
            policy_revision: policy.subscribe(),
            access,
            metrics,
            audit,
        };
        tokio::spawn(cleanup_loop(
            state.clone(),
            purger.clone(),
            config.audit.retention_days,
        ));
        tokio::spawn(state.audit.clone().run(
            Duration::from_secs(config.audit.checkpoint_interval_secs),
            state.shutdown.clone(),
        ));
        Ok(Server {
            state,
            config,
            tls,
            first_invite,
            shutdown_tx,
            purger,
            policy,
            policy_poll: POLICY_POLL_INTERVAL,
            metrics_listener,
            _lock: lock,
        })
    }

    /// Sets the DLP policy in this process and tells connected devices at
    /// once; it stays usable while the server runs (take it before
    /// [`Server::serve`]). Another process uses [`set_dlp_policy`].
    pub fn policy_handle(&self) -> PolicyHandle {
        self.policy.clone()
    }

    /// How often the running server reads the stored policy revision to
    /// notice a policy set by another process ([`POLICY_POLL_INTERVAL`]
    /// unless changed; tests use it to tell the two paths apart).
    pub fn set_policy_poll_interval(&mut self, every: Duration) {
        self.policy_poll = every.max(Duration::from_millis(10));
    }

    /// A handle that purges expired messages now rather than at the next
    /// scheduled purge (for tests and operators). Take it before
    /// [`Server::serve`], which consumes the server; it stays usable while
    /// the server runs.
    pub fn purger(&self) -> Purger {
        self.purger.clone()
    }

    /// The address the separate metrics listener is bound to (`[metrics]
    /// listen`, with its port if 0 was asked for), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The audit log (sealing, checkpoints, pruning, verification); take it
    /// before [`Server::serve`], it stays usable while the server runs.
    pub fn audit(&self) -> Arc<audit::Audit> {
        self.state.audit.clone()
    }

    /// The invite created by this start for the first account (it becomes the owner), if any.
    pub fn first_invite(&self) -> Option<&str> {
        self.first_invite.as_deref()
    }

    /// The axum Router with all routes (state inside). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that rate
    /// limits see client addresses; without, all clients share one
    /// "unknown" address.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics::scrape))
            .route("/v1/register", post(auth::register))
            .route("/v1/login", post(auth::login))
            .route("/v1/logout", post(auth::logout))
            .route("/v1/me", get(auth::me))
            .route("/v1/password", post(password::change))
            .route("/v1/2fa", get(twofactor::status))
            .route("/v1/2fa/setup", post(twofactor::setup))
            .route("/v1/2fa/activate", post(twofactor::activate))
            .route("/v1/2fa/disable", post(twofactor::disable))
            .route("/v1/2fa/recovery-codes", post(twofactor::regenerate))
            .route("/v1/devices", get(devices::list))
            .route("/v1/devices/{device_id}/revoke", post(devices::revoke))
            .route("/v1/security-events", get(security_events::list))
            .route("/v1/link", post(link::start))
            .route("/v1/link/{link_id}", get(link::get))
            .route("/v1/link/{link_id}/approve", post(link::approve))
            .route("/v1/link/{link_id}/poll", post(link::poll))
            .route("/v1/users/{username}", get(directory::user))
            .route("/v1/key-packages", post(keypackages::upload))
            .route("/v1/key-packages/count", get(keypackages::get_count))
            .route("/v1/key-packages/claim", post(keypackages::claim))
            .route("/v1/groups", get(groups::list))
            .route("/v1/groups/{group_id}", get(groups::get))
            .route("/v1/policy/messages", get(policy::messages))
            .route("/v1/policy/files", get(blobs::routes::policy))
            .route("/v1/policy/dlp", get(dlp::get_policy))
            .route(
                "/v1/dlp/events",
                post(dlp::report).layer(DefaultBodyLimit::max(MAX_DLP_EVENTS_BODY_BYTES)),
            )
            .route("/v1/blobs", post(blobs::routes::create))
            .route(
                "/v1/blobs/{blob_id}",
                // The handler reads the body itself, capped at one part;
                // the limit here says the same to anything else.
                put(blobs::routes::put)
                    .layer(DefaultBodyLimit::max(BLOB_PART_BYTES))
                    .get(blobs::routes::download)
                    .delete(blobs::routes::delete),
            )
            .route("/v1/blobs/{blob_id}/status", get(blobs::routes::status))
            .route("/v1/ws", get(delivery::ws::upgrade))
            .route("/v1/openapi.json", get(admin::routes::openapi))
            .route("/v1/admin/users", get(admin::routes::list_users))
            .route("/v1/admin/invites", post(admin::routes::invite))
            .route("/v1/admin/users/{username}", delete(admin::routes::delete))
            .route(
                "/v1/admin/users/{username}/role",
                post(admin::routes::set_role),
            )
            .route(
                "/v1/admin/users/{username}/disable",
                post(admin::routes::disable),
            )
            .route(
                "/v1/admin/users/{username}/enable",
                post(admin::routes::enable),
            )
            .route(
                "/v1/admin/users/{username}/2fa-reset",
                post(admin::routes::reset_two_factor),
            )
            .route("/v1/admin/groups", get(admin::routes::list_groups))
            .route(
                "/v1/admin/access",
                get(admin::routes::get_access).put(admin::routes::set_access),
            )
            .route("/v1/admin/sessions", get(admin::routes::list_sessions))
            .route(
                "/v1/admin/sessions/{session_id}/revoke",
                post(admin::routes::revoke_session),
            )
            .route("/v1/admin/audit", get(audit::routes::list))
            .route(
                "/v1/admin/audit/checkpoints",
                get(audit::routes::checkpoints),
            )
            .route(
                "/v1/admin/audit/checkpoint",
                post(audit::routes::checkpoint),
            )
            .route("/v1/admin/audit/key", get(audit::routes::key))
            .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                audit::routes::audit_admin_calls,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.state.metrics.clone(),
                trace_request,
            ))
            .with_state(self.state.clone())
    }

    /// What the `[metrics] listen` address serves: `/metrics` alone.
    fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics::scrape_dedicated))
            .layer(axum::middleware::from_fn_with_state(
                self.state.metrics.clone(),
                trace_request,
            ))
            .with_state(self.state.clone())
    }

    /// Serves on the listener (plain HTTP, or TLS when configured) until
    /// `shutdown` resolves; then stops accepting, closes WebSockets, flushes
    /// the delivery actor's pending batch and closes the database.
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let router = self.router();
        // The separate metrics address stops with everything else.
        let metrics = self.metrics_listener.take().map(|metrics_listener| {
            let service = self
                .metrics_router()
                .into_make_service_with_connect_info::<SocketAddr>();
            let mut stop = self.state.shutdown.clone();
            tokio::spawn(
                axum::serve(metrics_listener, service)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopping| *stopping).await;
                    })
                    .into_future(),
            )
        });
        // Only while serving: the revision matters to connected sockets.
        tokio::spawn(
            self.policy
                .clone()
                .poll(self.policy_poll, self.state.shutdown.clone()),
        );
        let shutdown_tx = self.shutdown_tx.clone();
        // One signal for everyone: HTTP stops accepting and WebSockets close.
        let signal = async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
        };
        let served = match &self.tls {
            // Small frames must leave at once: without TCP_NODELAY, Nagle's
            // algorithm and delayed ACKs add ~40 ms to a lone message.
            None => axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(signal)
            .await
            .map_err(ServerError::from),
            Some(config) => tls::serve(listener, router, config.clone(), signal).await,
        };
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = metrics {
            match tokio::time::timeout(WS_DRAIN_TIMEOUT, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "serving metrics failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener's task failed"),
                Err(_) => tracing::warn!("the metrics listener did not stop in time"),
            }
        }
        // Every WebSocket holds a permit until it has closed.
        let all = u32::try_from(delivery::ws::MAX_WEBSOCKETS).unwrap_or(u32::MAX);
        if tokio::time::timeout(WS_DRAIN_TIMEOUT, self.state.ws_slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("some WebSockets did not close in time");
        }
        self.state.delivery.flush().await;
        // Last: the stop itself is audited and the chain's head signed.
        let stopped = audit::Entry::new("server_stopped", audit::Actor::Server, Outcome::Success);
        audit::append_logged(&self.state.pool, self.state.now(), &stopped).await;
        if let Err(e) = self
            .state
            .audit
            .checkpoint(rampart_proto::audit::CheckpointReason::Shutdown)
            .await
        {
            tracing::error!(error = %e, "signing the final audit checkpoint failed");
        }
        self.state.pool.close().await;
        served
    }
}

/// Opens the data dir's database (the server may be running or stopped) and
/// creates a single-use member invite code, audited as the operator's
/// `invite_created` (its role and lifetime, never the code).
pub async fn create_invite(data_dir: &Path) -> Result<String, ServerError> {
    let pool = db::open(data_dir).await?;
    let role = rampart_proto::api::Role::Member;
    let code = audited_invite(&pool, role, audit::Actor::Operator, db::now_ms()).await;
    pool.close().await;
    Ok(code?)
}

/// A single-use invite for `role` (valid for the default lifetime), and its
/// audit entry: its role and lifetime, never the code.
async fn audited_invite(
    pool: &SqlitePool,
    role: rampart_proto::api::Role,
    actor: audit::Actor,
    now: i64,
) -> Result<String, sqlx::Error> {
    let role = role.as_str();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let code = db::insert_invite_at(&mut tx, role, now, now + db::INVITE_LIFETIME_MS).await?;
    let entry = audit::Entry::new("invite_created", actor, Outcome::Success)
        .detail("role", role)
        .detail("expires_in_secs", db::INVITE_LIFETIME_MS / 1000);
    audit::append(&mut *tx, now, &entry).await?;
    tx.commit().await?;
    Ok(code)
}

async fn first_start_invite(
    pool: &SqlitePool,
    clock: &Clock,
) -> Result<Option<String>, ServerError> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    let unused: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM invites WHERE used_by IS NULL AND expires_at > ?")
            .bind(clock.now_db())
            .fetch_one(pool)
            .await?;
    if users > 0 || unused > 0 {
        return Ok(None);
    }
    let owner = rampart_proto::api::Role::Owner;
    Ok(Some(
        audited_invite(pool, owner, audit::Actor::Server, clock.now_db()).await?,
    ))
}

async fn cleanup_loop(state: AppState, purger: Purger, audit_retention_days: Option<u32>) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(CLEANUP_INTERVAL);
    tick.tick().await;
    let mut purge = tokio::time::interval(PURGE_INTERVAL);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = purge.tick() => {
                if let Err(e) = purger.purge_scheduled().await {
                    tracing::warn!(error = %e, "purging expired messages failed");
                }
            }
            _ = tick.tick() => {
                // On its own task: listing a large object store takes a while.
                let collector = purger.clone();
                tokio::spawn(async move {
                    if let Err(e) = collector.collect_orphans().await {
                        tracing::warn!(error = %e, "collecting orphaned blobs failed");
                    }
                });
                if let Err(e) = delivery::actor::cleanup(&state.pool, state.now()).await {
                    tracing::warn!(error = %e, "cleanup failed");
                }
                if let Err(e) = expire_sessions(&state).await {
                    tracing::warn!(error = %e, "expiring idle sessions failed");
                }
                if let Err(e) = link::cleanup(&state.pool, state.now()).await {
                    tracing::warn!(error = %e, "deleting expired link requests failed");
                }
                if let Err(e) = admin::collect_deleted(&state.pool).await {
                    tracing::warn!(error = %e, "dropping deleted accounts' rows failed");
                }
                if let Some(days) = audit_retention_days {
                    let cutoff = state.now().saturating_sub(i64::from(days) * 86_400_000);
                    if let Err(e) = state.audit.prune_before(cutoff).await {
                        tracing::warn!(error = %e, "pruning the audit log failed");
                    }
                }
                state.limiter.evict_stale(state.clock.now_ms());
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes sessions unused for longer than the idle limit, recording a
/// `session_expired` event for each (the same as when one is presented).
async fn expire_sessions(state: &AppState) -> Result<(), sqlx::Error> {
    let now = state.now();
    let cutoff = now.saturating_sub(state.session_idle_ms);
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO security_events (at, user_id, device_id, kind, ip)          SELECT ?, d.user_id, s.device_id, 'session_expired', NULL          FROM sessions s JOIN devices d ON d.id = s.device_id WHERE s.last_used < ?",
    )
    .bind(now)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO audit_log (at, actor, device_id, action, outcome) \
         SELECT ?, u.username, s.device_id, 'session_expired', 'success' \
         FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = d.user_id \
         WHERE s.last_used < ?",
    )
    .bind(now)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE last_used < ?")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// One span per request with its method and route template; logs the
/// status and latency, and counts them in the latency histogram. The route
/// is the router's template (`/v1/users/{username}`), never the path: a
/// path carries usernames typed for accounts that may not exist, blob and
/// link ids. Never bodies, headers or tokens either.
async fn trace_request(
    axum::extract::State(metrics): axum::extract::State<Arc<metrics::Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let route = route
        .as_ref()
        .map_or(metrics::UNMATCHED_ROUTE, |r| r.as_str());
    let method = req.method().clone();
    let span = tracing::info_span!("request", method = %method, route = %route);
    async move {
        let start = std::time::Instant::now();
        let response = next.run(req).await;
        let elapsed = start.elapsed();
        let status = response.status();
        tracing::info!(
            status = status.as_u16(),
            ms = elapsed.as_millis() as u64,
            "handled"
        );
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        metrics.http_request(&method, route, status, micros);
        response
    }
    .instrument(span)
    .await
}
