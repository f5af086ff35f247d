//! A gateway's share of a round's global issuance rate (seed mechanism 2: "the rate is
//! controlled precisely, divided per server").
//!
//! Wraps governor's GCRA limiter with a clock that the caller sets, so the shake core
//! stays free of clock reads and is deterministic under test.

use crate::set_clock::SetClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// Issuance tokens for one gateway in one round.
#[derive(Debug)]
pub struct RateBudget {
    limiter: RateLimiter<NotKeyed, InMemoryState, SetClock, NoOpMiddleware<Duration>>,
    clock: SetClock,
}

/// The burst a gateway may take on top of its steady rate: 50 ms worth, at least one.
/// The audit allows exactly this much per gateway above the global rate.
pub fn burst_for(per_second: f64) -> u32 {
    (per_second * 0.05).ceil().clamp(1.0, u32::MAX as f64) as u32
}

impl RateBudget {
    /// `per_second` must be positive (the timeline checks it). The budget starts empty
    /// at `now`: a gateway that restarts does not get a fresh burst on top of what its
    /// previous life just issued, so a restart never pushes the rate over its allowance.
    pub fn new(per_second: f64, now: Duration) -> Self {
        let period =
            Duration::from_secs_f64(1.0 / per_second.max(1e-9)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst_for(per_second)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = SetClock::default();
        let budget = RateBudget {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        };
        while budget.try_take(now) {}
        budget
    }

    /// Takes one token at time `now` (time never goes backwards here).
    pub fn try_take(&self, now: Duration) -> bool {
        self.clock.advance_to(now);
        self.limiter.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_plus_burst() {
        let r = RateBudget::new(100.0, Duration::ZERO); // burst 5
        let t = Duration::from_secs(10);
        let granted = (0..50).filter(|_| r.try_take(t)).count();
        assert_eq!(granted, 5);
        // Over one more second, 100 more (at most burst ahead).
        let mut n = 0;
        for ms in 1..=1000 {
            if r.try_take(t + Duration::from_millis(ms)) {
                n += 1;
            }
        }
        assert!((99..=101).contains(&n), "{n}");
    }

    #[test]
    fn slow_rates_still_get_one_token() {
        assert_eq!(burst_for(0.5), 1);
        let r = RateBudget::new(0.5, Duration::ZERO);
        assert!(!r.try_take(Duration::ZERO), "starts empty");
        assert!(r.try_take(Duration::from_secs(2)));
        assert!(!r.try_take(Duration::from_secs(3)));
        assert!(r.try_take(Duration::from_secs(4)));
    }
}
