//! The Rampart server: accounts, the user directory, MLS KeyPackages and the
//! delivery service, over HTTPS (REST + one WebSocket per device) with SQLite.
//!
//! What it does **not** do: it never sees a key or a plaintext. It parses only
//! MLS framing (wire format, content type, group id, epoch) to enforce
//! membership and commit ordering; everything else it stores is ciphertext.
//! The routes and frames are defined in `rampart-proto`.
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
//! unless a TLS proxy is declared.

mod auth;
pub mod config;
mod db;
mod delivery;
mod directory;
mod error;
mod groups;
mod keypackages;
mod state;
mod tls;

pub use auth::AuthDevice;
pub use config::{ConfigError, Registration, ServerConfig};
pub use delivery::ws::MAX_WEBSOCKETS;
pub use error::{ApiError, ServerError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use rampart_proto::api::Health;
use rampart_proto::limits::MAX_JSON_BODY_BYTES;
use sqlx::SqlitePool;
use state::AppState;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument as _;

/// How often expired idempotency keys and fully delivered messages are purged.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);
/// How long open WebSockets get to close after shutdown begins.
const WS_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server's state: database, delivery actor, configuration.
pub struct Server {
    state: AppState,
    config: ServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    first_invite: Option<String>,
    shutdown_tx: watch::Sender<bool>,
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
    /// foreign keys, busy timeout), runs the embedded migrations, loads the
    /// delivery caches and spawns the delivery actor. On the very first start
    /// (no users and no unused invite) creates an owner invite code.
    pub async fn open(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        let tls = match config.tls() {
            Some((cert, key)) => Some(tls::load(cert, key)?),
            None => None,
        };
        let pool = db::open(&config.data_dir).await?;
        let first_invite = first_start_invite(&pool).await?;
        let dummy_hash = auth::dummy_hash()
            .await
            .map_err(|e| ServerError::Internal(e.message))?;
        let (delivery, _actor) = delivery::actor::start(pool.clone()).await?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let state = AppState {
            pool,
            registration: config.registration,
            delivery,
            ws_slots: Arc::new(Semaphore::new(delivery::ws::MAX_WEBSOCKETS)),
            shutdown,
            dummy_hash: dummy_hash.into(),
            next_conn_id: Arc::new(AtomicU64::new(1)),
        };
        tokio::spawn(cleanup_loop(state.pool.clone(), state.shutdown.clone()));
        Ok(Server {
            state,
            config,
            tls,
            first_invite,
            shutdown_tx,
        })
    }

    /// The invite created by this start for the first account (it becomes the owner), if any.
    pub fn first_invite(&self) -> Option<&str> {
        self.first_invite.as_deref()
    }

    /// The axum Router with all routes (state inside).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/v1/register", post(auth::register))
            .route("/v1/login", post(auth::login))
            .route("/v1/logout", post(auth::logout))
            .route("/v1/me", get(auth::me))
            .route("/v1/users/{username}", get(directory::user))
            .route("/v1/key-packages", post(keypackages::upload))
            .route("/v1/key-packages/count", get(keypackages::get_count))
            .route("/v1/key-packages/claim", post(keypackages::claim))
            .route("/v1/groups", get(groups::list))
            .route("/v1/groups/{group_id}", get(groups::get))
            .route("/v1/ws", get(delivery::ws::upgrade))
            .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
            .layer(axum::middleware::from_fn(trace_request))
            .with_state(self.state.clone())
    }

    /// Serves on the listener (plain HTTP, or TLS when configured) until
    /// `shutdown` resolves; then stops accepting, closes WebSockets, flushes
    /// the delivery actor's pending batch and closes the database.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let router = self.router();
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
                router,
            )
            .with_graceful_shutdown(signal)
            .await
            .map_err(ServerError::from),
            Some(config) => tls::serve(listener, router, config.clone(), signal).await,
        };
        let _ = self.shutdown_tx.send(true);
        // Every WebSocket holds a permit until it has closed.
        let all = u32::try_from(delivery::ws::MAX_WEBSOCKETS).unwrap_or(u32::MAX);
        if tokio::time::timeout(WS_DRAIN_TIMEOUT, self.state.ws_slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("some WebSockets did not close in time");
        }
        self.state.delivery.flush().await;
        self.state.pool.close().await;
        served
    }
}

/// Opens the data dir's database (the server may be running or stopped) and
/// creates a single-use member invite code.
pub async fn create_invite(data_dir: &Path) -> Result<String, ServerError> {
    let pool = db::open(data_dir).await?;
    let code = db::insert_invite(&pool, auth::role_to_db(rampart_proto::api::Role::Member)).await;
    pool.close().await;
    Ok(code?)
}

async fn first_start_invite(pool: &SqlitePool) -> Result<Option<String>, ServerError> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    let unused: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM invites WHERE used_by IS NULL AND expires_at > ?")
            .bind(db::now_ms())
            .fetch_one(pool)
            .await?;
    if users > 0 || unused > 0 {
        return Ok(None);
    }
    let role = auth::role_to_db(rampart_proto::api::Role::Owner);
    Ok(Some(db::insert_invite(pool, role).await?))
}

async fn cleanup_loop(pool: SqlitePool, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CLEANUP_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = delivery::actor::cleanup(&pool).await {
                    tracing::warn!(error = %e, "cleanup failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// One span per request with method and path; logs the status and latency.
/// Never bodies, headers or tokens.
async fn trace_request(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let start = std::time::Instant::now();
        let response = next.run(req).await;
        tracing::info!(
            status = response.status().as_u16(),
            ms = start.elapsed().as_millis() as u64,
            "handled"
        );
        response
    }
    .instrument(span)
    .await
}
