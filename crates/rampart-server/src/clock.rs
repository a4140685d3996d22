//! The server's notion of "now": the system clock in production, a manual
//! clock in tests so that TOTP steps, lockouts, session expiry, link codes,
//! message timestamps, expiry and recall windows can be exercised without
//! sleeping.
//!
//! The delivery actor stamps messages with this clock, the WebSocket skips
//! messages expired by it, and the purge deletes what it says has expired.
//! Only the schedules stay in real time: the purge runs every few seconds
//! and the cleanup hourly, whatever this clock says. Invite codes are still
//! stamped with the system time (`db::insert_invite`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in milliseconds since the Unix epoch.
/// Cheap to clone; clones of a manual clock share one time.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that starts at the current system time and moves only when
    /// [`Clock::advance`] is called.
    pub fn manual() -> Self {
        Self(Source::Manual(Arc::new(AtomicU64::new(system_ms()))))
    }

    /// Moves a manual clock forward. The system clock cannot be moved: this
    /// does nothing on it.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual(ms) = &self.0 {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Whole seconds since the Unix epoch (what TOTP counts in).
    pub fn unix_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// [`Clock::now_ms`] as SQLite stores timestamps.
    pub(crate) fn now_db(&self) -> i64 {
        i64::try_from(self.now_ms()).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(ms) => write!(f, "Clock::Manual({})", ms.load(Ordering::SeqCst)),
        }
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_is_shared() {
        let clock = Clock::manual();
        let copy = clock.clone();
        let start = clock.now_ms();
        assert!(start > 1_600_000_000_000);
        copy.advance(Duration::from_secs(30));
        assert_eq!(clock.now_ms(), start + 30_000);
        assert_eq!(clock.unix_secs(), (start + 30_000) / 1000);
    }

    #[test]
    fn system_clock_ignores_advance() {
        let clock = Clock::system();
        let before = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() < before + 3_600_000);
    }
}
