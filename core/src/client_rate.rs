//! How many frames one user may have handled per second, over all their connections:
//! a client that pipelines requests as fast as it can write them gets its share of the
//! gateway, not the gateway. An honest client sends a shake per throttle interval (2 s
//! and up), an open, a share or a grab now and then and a heartbeat every few minutes,
//! far below the rate; past it, the gateway stops reading that connection until the
//! user's next frame is due, so the kernel's flow control pushes back on the sender
//! and the flood costs the gateway nothing.
//!
//! governor's GCRA, keyed by user id, on a clock the caller sets.

use crate::set_clock::SetClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// Frame allowances of every user of one gateway.
#[derive(Debug)]
pub struct ClientRates {
    limiter: RateLimiter<u64, HashMapStateStore<u64>, SetClock, NoOpMiddleware<Duration>>,
    clock: SetClock,
}

impl ClientRates {
    /// `per_second` frames a second per user, with bursts of `burst` (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> ClientRates {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let clock = SetClock::default();
        ClientRates {
            limiter: RateLimiter::hashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                clock.clone(),
            ),
            clock,
        }
    }

    /// Takes one frame of `user`'s allowance at `now`; when there is none, how long
    /// until there is.
    pub fn take(&self, user: u64, now: Duration) -> Result<(), Duration> {
        self.clock.advance_to(now);
        self.limiter
            .check_key(&user)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets users whose allowance is full again (they cost nothing to recreate).
    pub fn forget_idle(&self, now: Duration) {
        self.clock.advance_to(now);
        self.limiter.retain_recent();
    }

    /// Users with state kept.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_then_the_rate() {
        let r = ClientRates::new(10, 5);
        for _ in 0..5 {
            assert_eq!(r.take(1, Duration::ZERO), Ok(()));
        }
        let wait = r.take(1, Duration::ZERO).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= 100 * MS, "{wait:?}");
        assert_eq!(
            r.take(1, 100 * MS),
            Ok(()),
            "one more a tenth of a second on"
        );
        assert!(r.take(1, 100 * MS).is_err());
    }

    #[test]
    fn users_do_not_share_an_allowance() {
        let r = ClientRates::new(1, 1);
        assert_eq!(r.take(1, Duration::ZERO), Ok(()));
        assert!(r.take(1, Duration::ZERO).is_err());
        assert_eq!(
            r.take(2, Duration::ZERO),
            Ok(()),
            "another user is not held back"
        );
    }

    #[test]
    fn idle_users_are_forgotten() {
        let r = ClientRates::new(10, 2);
        for u in 0..100 {
            r.take(u, Duration::ZERO).unwrap();
        }
        assert_eq!(r.len(), 100);
        r.forget_idle(Duration::from_secs(5));
        assert!(r.is_empty(), "{} kept", r.len());
    }
}
