//! What every handler shares.

use crate::config::Registration;
use crate::delivery::DeliveryHandle;
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
}
