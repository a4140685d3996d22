//! In-memory lockouts and throttles for credential checks.
//!
//! Failures are counted per [`Key`] (an account, or a client address). Past
//! the free allowance a key is locked, and every further failure doubles the
//! lock up to a cap (see [`RateLimits`]). Starts of registrations and device
//! links are counted per address in fixed windows, successful or not, and
//! DLP event reports per device.
//!
//! The tables are bounded ([`RateLimits::max_tracked_keys`] each): stale
//! entries are dropped first, then the least recently failed. One
//! `std::sync::Mutex` guards them; it is held for a few hash-map operations
//! and never across an `.await`. A restart forgets everything, which is the
//! price of not writing to the database on every failed login.
//!
//! Every refusal (a locked key, an action past its allowance) is counted in
//! the server's metrics, by limit.

use crate::config::RateLimits;
use crate::metrics::{Limit, Metrics};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// An account, by username (known or not: unknown names are locked
    /// just the same, so a lock reveals nothing).
    Account(String),
    /// A client address (an IPv6 address by its /64), see `ClientIp::key`.
    Ip(String),
}

/// Throttled actions, counted per address (or per device for reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Link,
    /// `POST /v1/dlp/events`, keyed by device id.
    DlpReport,
    /// Commits and proposals, keyed by device id: each costs the server a
    /// verification of the group's tree (one signature per member).
    Handshake,
}

impl Action {
    /// The metrics label of this action's allowance.
    fn limit(self) -> Limit {
        match self {
            Self::Register => Limit::Register,
            Self::Link => Limit::Link,
            Self::DlpReport => Limit::DlpReport,
            Self::Handshake => Limit::Handshake,
        }
    }
}

/// Commits and proposals one device may send per [`HANDSHAKE_WINDOW_MS`]:
/// people add, remove and change settings at human pace, and a client's
/// own self-updates and retries after a lost race are a handful, so this
/// only stops a device from keeping the server busy verifying trees.
pub const HANDSHAKES_PER_WINDOW: u32 = 120;
/// See [`HANDSHAKES_PER_WINDOW`].
pub const HANDSHAKE_WINDOW_MS: u64 = 60_000;

/// Batches of DLP events one device may send per [`DLP_REPORT_WINDOW_MS`].
/// A rule firing is a rare, human-paced thing; a client that was offline
/// sends its queue in batches of 100, so this is generous for real use
/// and caps what a rogue device can write to the database.
pub const DLP_REPORTS_PER_WINDOW: u32 = 30;
/// See [`DLP_REPORTS_PER_WINDOW`].
pub const DLP_REPORT_WINDOW_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last_failure_ms: u64,
    locked_until_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: u64,
    /// Its action's window length: actions have different ones, and stale
    /// windows are dropped without knowing which action they count.
    len_ms: u64,
    count: u32,
}

impl Window {
    fn stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.start_ms) >= self.len_ms
    }
}

#[derive(Default)]
struct Tables {
    failures: HashMap<Key, Failures>,
    windows: HashMap<(Action, String), Window>,
}

/// The limiter shared by every handler (behind an `Arc`).
pub struct Limiter {
    policy: RateLimits,
    tables: Mutex<Tables>,
    /// Where refusals are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Whole seconds until `until_ms`, rounded up, at least 1.
fn secs_until(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

impl Limiter {
    pub fn new(policy: RateLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            policy,
            tables: Mutex::new(Tables::default()),
            metrics,
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters more than losing the lockouts.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn free_failures(&self, key: &Key) -> u32 {
        match key {
            Key::Account(_) => self.policy.account_free_failures,
            Key::Ip(_) => self.policy.ip_free_failures,
        }
    }

    fn decayed(&self, f: &Failures, now_ms: u64) -> bool {
        now_ms >= f.locked_until_ms
            && now_ms.saturating_sub(f.last_failure_ms) >= self.policy.decay_secs * 1000
    }

    /// If any of `keys` is locked, the seconds until all of them are free.
    pub fn locked(&self, keys: &[&Key], now_ms: u64) -> Option<u64> {
        let locked = {
            let tables = self.tables();
            keys.iter()
                .filter_map(|k| tables.failures.get(*k))
                .filter(|f| f.locked_until_ms > now_ms)
                .map(|f| secs_until(f.locked_until_ms, now_ms))
                .max()
        };
        if locked.is_some() {
            self.metrics.rate_limited(Limit::Lockout);
        }
        locked
    }

    /// Counts one failure against each key. Returns the keys whose lock
    /// started with this failure (for the security log).
    pub fn failed(&self, keys: &[&Key], now_ms: u64) -> Vec<Key> {
        let mut started = Vec::new();
        let mut tables = self.tables();
        for key in keys {
            if !tables.failures.contains_key(*key) {
                make_room(
                    &mut tables.failures,
                    self.policy.max_tracked_keys,
                    |f| self.decayed(f, now_ms),
                    |f| f.last_failure_ms,
                );
            }
            let entry = tables.failures.entry((*key).clone()).or_insert(Failures {
                count: 0,
                last_failure_ms: now_ms,
                locked_until_ms: 0,
            });
            if self.decayed(entry, now_ms) {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last_failure_ms = now_ms;
            let free = self.free_failures(key);
            if entry.count >= free {
                let doublings = (entry.count - free).min(32);
                let lock_secs = self
                    .policy
                    .lock_secs
                    .saturating_mul(1u64 << doublings)
                    .min(self.policy.max_lock_secs);
                entry.locked_until_ms = now_ms.saturating_add(lock_secs.saturating_mul(1000));
                started.push((*key).clone());
            }
        }
        started
    }

    /// A success: the key's failures are forgotten.
    pub fn succeeded(&self, key: &Key) {
        self.tables().failures.remove(key);
    }

    /// The allowance of `action` and its window in milliseconds.
    fn allowance(&self, action: Action) -> (u32, u64) {
        match action {
            Action::Register | Action::Link => (
                self.policy.registrations_per_ip,
                self.policy.registration_window_secs.saturating_mul(1000),
            ),
            Action::DlpReport => (DLP_REPORTS_PER_WINDOW, DLP_REPORT_WINDOW_MS),
            Action::Handshake => (HANDSHAKES_PER_WINDOW, HANDSHAKE_WINDOW_MS),
        }
    }

    /// Counts one start of `action` by `who` (a client address, or a device
    /// for reports); `Err(seconds)` once the window's allowance is used up.
    pub fn admit(&self, action: Action, who: &str, now_ms: u64) -> Result<(), u64> {
        let (limit, window_ms) = self.allowance(action);
        let fresh = Window {
            start_ms: now_ms,
            len_ms: window_ms,
            count: 0,
        };
        let mut tables = self.tables();
        let key = (action, who.to_owned());
        if !tables.windows.contains_key(&key) {
            make_room(
                &mut tables.windows,
                self.policy.max_tracked_keys,
                |w| w.stale(now_ms),
                |w| w.start_ms,
            );
        }
        let window = tables.windows.entry(key).or_insert(fresh);
        if window.stale(now_ms) {
            *window = fresh;
        }
        if window.count >= limit {
            let wait = secs_until(window.start_ms.saturating_add(window_ms), now_ms);
            drop(tables);
            self.metrics.rate_limited(action.limit());
            return Err(wait);
        }
        window.count += 1;
        Ok(())
    }

    /// Drops every entry that no longer matters (called periodically).
    pub fn evict_stale(&self, now_ms: u64) {
        let mut tables = self.tables();
        tables.failures.retain(|_, f| !self.decayed(f, now_ms));
        tables.windows.retain(|_, w| !w.stale(now_ms));
    }

    /// Entries tracked (failure keys, window keys).
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let tables = self.tables();
        (tables.failures.len(), tables.windows.len())
    }
}

/// Makes room for one more entry: drops stale ones, and if the map is still
/// full, the oldest tenth (by `age`), so a flood of fresh keys costs one
/// linear sweep per tenth of the table rather than one per insert.
fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    stale: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> u64,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() < cap {
        return;
    }
    let mut by_age: Vec<(u64, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    let drop = (cap / 10).max(1).min(by_age.len());
    by_age.select_nth_unstable_by_key(drop - 1, |(a, _)| *a);
    for (_, k) in by_age.into_iter().take(drop) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::new(RateLimits::default(), Arc::default())
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn account_locks_after_free_failures_and_doubles() {
        let l = limiter();
        let alice = Key::Account("alice".into());
        for _ in 0..4 {
            assert!(l.failed(&[&alice], T0).is_empty());
            assert_eq!(l.locked(&[&alice], T0), None);
        }
        assert_eq!(l.failed(&[&alice], T0), vec![alice.clone()]);
        assert_eq!(l.locked(&[&alice], T0), Some(30));
        assert_eq!(l.locked(&[&alice], T0 + 29_500), Some(1));
        assert_eq!(l.locked(&[&alice], T0 + 30_000), None);
        l.failed(&[&alice], T0 + 30_000);
        assert_eq!(l.locked(&[&alice], T0 + 30_000), Some(60));
        l.failed(&[&alice], T0 + 90_000);
        assert_eq!(l.locked(&[&alice], T0 + 90_000), Some(120));
        // Other keys are untouched.
        assert_eq!(l.locked(&[&Key::Account("bob".into())], T0), None);
        // A success resets.
        l.succeeded(&alice);
        assert_eq!(l.locked(&[&alice], T0 + 90_000), None);
    }

    #[test]
    fn lock_is_capped_and_counts_decay() {
        let l = limiter();
        let k = Key::Ip("10.0.0.1".into());
        let mut now = T0;
        for _ in 0..80 {
            l.failed(&[&k], now);
            now += 1000;
        }
        let left = l.locked(&[&k], now).unwrap_or(0);
        assert!(left <= 3600 && left > 3500, "{left}");
        // An hour after the lock ended and the last failure, all is forgotten.
        now += 2 * 3600 * 1000;
        assert!(l.failed(&[&k], now).is_empty());
        assert_eq!(l.locked(&[&k], now), None);
    }

    #[test]
    fn registration_window() {
        let l = limiter();
        for _ in 0..60 {
            assert!(l.admit(Action::Register, "1.2.3.4", T0).is_ok());
        }
        assert_eq!(l.admit(Action::Register, "1.2.3.4", T0 + 1000), Err(599));
        assert!(l.admit(Action::Link, "1.2.3.4", T0).is_ok());
        assert!(l.admit(Action::Register, "5.6.7.8", T0).is_ok());
        assert!(l.admit(Action::Register, "1.2.3.4", T0 + 600_000).is_ok());
    }

    #[test]
    fn dlp_reports_have_their_own_per_device_window() {
        let l = limiter();
        for _ in 0..DLP_REPORTS_PER_WINDOW {
            assert!(l.admit(Action::DlpReport, "7", T0).is_ok());
        }
        assert_eq!(l.admit(Action::DlpReport, "7", T0 + 1000), Err(59));
        assert!(l.admit(Action::DlpReport, "8", T0).is_ok());
        assert!(l.admit(Action::Register, "7", T0).is_ok());
        assert!(
            l.admit(Action::DlpReport, "7", T0 + DLP_REPORT_WINDOW_MS)
                .is_ok()
        );
        // The one-minute windows go long before the ten-minute ones.
        l.evict_stale(T0 + 2 * DLP_REPORT_WINDOW_MS);
        assert_eq!(l.len().1, 1);
    }

    #[test]
    fn handshakes_have_a_per_device_allowance() {
        let l = limiter();
        for _ in 0..HANDSHAKES_PER_WINDOW {
            assert!(l.admit(Action::Handshake, "9", T0).is_ok());
        }
        assert_eq!(l.admit(Action::Handshake, "9", T0 + 30_000), Err(30));
        assert!(l.admit(Action::Handshake, "10", T0).is_ok());
        assert!(l.admit(Action::DlpReport, "9", T0).is_ok());
        assert!(
            l.admit(Action::Handshake, "9", T0 + HANDSHAKE_WINDOW_MS)
                .is_ok()
        );
    }

    #[test]
    fn refusals_are_counted_by_limit() {
        let metrics = Arc::new(Metrics::default());
        let l = Limiter::new(RateLimits::default(), metrics.clone());
        let alice = Key::Account("alice".into());
        for _ in 0..5 {
            assert_eq!(l.locked(&[&alice], T0), None);
            l.failed(&[&alice], T0);
        }
        assert!(l.locked(&[&alice], T0).is_some());
        for _ in 0..=HANDSHAKES_PER_WINDOW {
            let _ = l.admit(Action::Handshake, "9", T0);
        }
        let text = metrics.render(&Default::default());
        for want in [
            "rampart_rate_limited_total{limit=\"lockout\"} 1",
            "rampart_rate_limited_total{limit=\"handshake\"} 1",
            "rampart_rate_limited_total{limit=\"register\"} 0",
        ] {
            assert!(text.lines().any(|line| line == want), "{want}\n{text}");
        }
    }

    #[test]
    fn tables_stay_bounded() {
        let l = Limiter::new(
            RateLimits {
                max_tracked_keys: 1000,
                ..RateLimits::default()
            },
            Arc::default(),
        );
        for i in 0..5000u64 {
            l.failed(&[&Key::Ip(format!("ip{i}"))], T0 + i);
            let _ = l.admit(Action::Register, &format!("ip{i}"), T0 + i);
        }
        let (f, w) = l.len();
        assert!(f <= 1000 && w <= 1000, "{f} {w}");
        // The most recent keys survive.
        l.evict_stale(T0 + 5000);
        assert!(l.len().0 > 0);
        l.evict_stale(T0 + 10 * 3600 * 1000);
        assert_eq!(l.len(), (0, 0));
    }
}
