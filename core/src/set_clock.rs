//! The clock governor's limiters read in this crate: whatever time the caller last
//! told it, never the system's, so the limits are deterministic under test.

use governor::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A clock that reads whatever time it was last told; it never goes backwards.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetClock(Arc<AtomicU64>);

impl SetClock {
    pub(crate) fn advance_to(&self, now: Duration) {
        let nanos = now.as_nanos().min(u64::MAX as u128) as u64;
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl Clock for SetClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}
