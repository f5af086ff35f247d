//! When a supervisor restarts a part that exited without being told to (as a service
//! manager's restart-on-failure does): at once the first time, then after a backoff that
//! doubles with each crash in the window, and not at all once a part crashes
//! `max_crashes` times within `window` (a crash loop: restarting again would only hide
//! it, so the whole system stops and says why).

use std::collections::VecDeque;
use std::time::Duration;

/// How crashes are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub max_crashes: u32,
    pub window: Duration,
    /// The backoff after the second crash in the window; it doubles from there.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_crashes: 5,
            window: Duration::from_secs(60),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What to do about one crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start the part again after this long.
    Restart { after: Duration },
    /// `crashes` within the window: a crash loop.
    GiveUp { crashes: u32 },
}

/// One part's recent crashes, by the time (since any fixed origin) they happened.
#[derive(Debug, Clone, Default)]
pub struct Crashes {
    at: VecDeque<Duration>,
}

impl Crashes {
    /// Records a crash at `now` and decides.
    pub fn crashed(&mut self, now: Duration, policy: &RestartPolicy) -> AfterCrash {
        while self
            .at
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= policy.window)
        {
            self.at.pop_front();
        }
        self.at.push_back(now);
        let n = self.at.len() as u32;
        if n >= policy.max_crashes.max(1) {
            return AfterCrash::GiveUp { crashes: n };
        }
        let after = match n {
            1 => Duration::ZERO,
            _ => policy
                .first_backoff
                .saturating_mul(1 << (n - 2).min(16))
                .min(policy.max_backoff),
        };
        AfterCrash::Restart { after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn restarts_with_a_growing_backoff_then_gives_up_on_a_loop() {
        let p = RestartPolicy::default();
        let mut c = Crashes::default();
        let after = |a| match a {
            AfterCrash::Restart { after } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(after(c.crashed(S, &p)), Duration::ZERO);
        assert_eq!(after(c.crashed(2 * S, &p)), Duration::from_millis(200));
        assert_eq!(after(c.crashed(3 * S, &p)), Duration::from_millis(400));
        assert_eq!(after(c.crashed(4 * S, &p)), Duration::from_millis(800));
        assert_eq!(c.crashed(5 * S, &p), AfterCrash::GiveUp { crashes: 5 });
    }

    #[test]
    fn crashes_out_of_the_window_are_forgiven() {
        let p = RestartPolicy::default();
        let mut c = Crashes::default();
        for i in 0..100u64 {
            // One crash a minute is not a loop.
            assert!(matches!(
                c.crashed(Duration::from_secs(60 * i), &p),
                AfterCrash::Restart { after } if after == Duration::ZERO
            ));
        }
    }
}
