//! The SQLite database: opening it safely, and the small conversions every
//! module shares.

use crate::error::ServerError;
use rampart_proto::DeviceId;
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row as _, Sqlite};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "rampart.db";
/// How long an invite code stays valid.
pub const INVITE_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// Creates the data directory and opens (or creates) the database: WAL so
/// readers never block the single writer, `synchronous=FULL` so a committed
/// transaction survives power loss, foreign keys on, and a busy timeout so
/// concurrent writers wait instead of failing, and `secure_delete` so that
/// deleted rows (expired or recalled ciphertext) are overwritten with zeros
/// rather than left in free pages. Runs the embedded migrations.
pub async fn open(data_dir: &Path) -> Result<SqlitePool, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let options = SqliteConnectOptions::new()
        .filename(data_dir.join(DB_FILE))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("secure_delete", "ON");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A device id as stored: the u64 reinterpreted as i64 (SQLite integers are signed).
pub fn device_to_db(d: DeviceId) -> i64 {
    d.get() as i64
}

/// Inverse of [`device_to_db`]; `None` only for a corrupt row (zero).
pub fn device_from_db(n: i64) -> Option<DeviceId> {
    DeviceId::new(n as u64)
}

/// Sequence numbers and epochs are u64 on the wire and i64 in SQLite; they
/// start at 0 and grow by one, so they never reach the sign bit.
pub fn u64_to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn u64_from_db(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Creates a single-use invite code for `role`, valid until `expires_at`,
/// and stores only its hash.
pub async fn insert_invite_at(
    conn: &mut sqlx::SqliteConnection,
    role: &str,
    now: i64,
    expires_at: i64,
) -> Result<String, sqlx::Error> {
    let mut raw = [0u8; 20];
    OsRng.fill_bytes(&mut raw);
    let code = hex::encode(raw);
    sqlx::query(
        "INSERT INTO invites (code_hash, role, created_at, expires_at, used_by) VALUES (?, ?, ?, ?, NULL)",
    )
    .bind(sha256(code.as_bytes()))
    .bind(role)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(code)
}

/// The hash under which an invite code typed by a person is stored.
pub fn invite_hash(code: &str) -> Vec<u8> {
    sha256(code.trim().to_ascii_lowercase().as_bytes())
}

/// The registered MLS signature keys of these devices (by which the
/// delivery service finds them in a group's ratchet tree); a device the
/// server does not know is left out.
pub async fn signature_keys(
    pool: &SqlitePool,
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, Vec<u8>>, sqlx::Error> {
    let mut out = HashMap::with_capacity(devices.len());
    for chunk in devices.chunks(500) {
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT id, signature_key FROM devices WHERE id IN (");
        let mut list = q.separated(", ");
        for d in chunk {
            list.push_bind(device_to_db(*d));
        }
        q.push(")");
        for row in q.build().fetch_all(pool).await? {
            if let Some(id) = device_from_db(row.try_get("id")?) {
                out.insert(id, row.try_get("signature_key")?);
            }
        }
    }
    Ok(out)
}
