//! What the audit log costs, for `rampart bench audit`: appending entries
//! (each in its own transaction, as actions append them), sealing them into
//! the chain, and walking the chain to verify it.

use super::{Actor, Audit, Entry, alerts::Alerts, append};
use crate::clock::Clock;
use rampart_proto::audit::{CheckpointReason, Outcome};
use std::path::Path;
use std::time::Instant;

/// Rates in entries per second, on one core.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditCost {
    pub entries: usize,
    /// Appended one per transaction (each a durable commit).
    pub append_per_sec: f64,
    /// Chained by the sealer (hashing and one transaction per 500).
    pub seal_per_sec: f64,
    /// Read back and verified against the signed checkpoint.
    pub verify_per_sec: f64,
}

/// Measures on a fresh database in `dir` (which must be empty).
pub async fn measure(dir: &Path, entries: usize) -> Result<AuditCost, crate::ServerError> {
    let pool = crate::db::open(dir).await?;
    let clock = Clock::system();
    let audit = Audit::new(pool.clone(), clock.clone(), &[42; 32], Alerts::none());
    let entry = Entry::new(
        "login_failed",
        Actor::Name("bench".into()),
        Outcome::Failure,
    )
    .ip(Some("192.0.2.1".into()))
    .detail("locked", "account");
    let started = Instant::now();
    for _ in 0..entries {
        let mut tx = pool.begin().await?;
        append(&mut *tx, clock.now_db(), &entry).await?;
        tx.commit().await?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    audit.seal().await?;
    let seal_secs = started.elapsed().as_secs_f64();
    audit.checkpoint(CheckpointReason::Requested).await?;
    let started = Instant::now();
    let report = audit
        .verify()
        .await?
        .map_err(|b| crate::ServerError::Internal(b.to_string()))?;
    let verify_secs = started.elapsed().as_secs_f64();
    pool.close().await;
    let rate = |secs: f64| report.entries as f64 / secs.max(1e-9);
    Ok(AuditCost {
        entries,
        append_per_sec: rate(append_secs),
        seal_per_sec: rate(seal_secs),
        verify_per_sec: rate(verify_secs),
    })
}
