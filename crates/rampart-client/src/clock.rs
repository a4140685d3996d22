//! The client's notion of "now": the system clock, or a manual one in tests
//! so that disappearing messages and recall windows can be exercised without
//! sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch. Cheap to clone; clones of a manual
/// clock share one time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock starting at the current system time that moves only when
    /// [`Clock::advance`] is called.
    pub fn manual() -> Self {
        Self(Some(Arc::new(AtomicU64::new(crate::now_millis()))))
    }

    /// Moves a manual clock forward; does nothing on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.0 {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::SeqCst);
        }
    }

    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            None => crate::now_millis(),
            Some(ms) => ms.load(Ordering::SeqCst),
        }
    }
}
