//! Admission: how many shakes a second an overloaded gateway decides; the rest are
//! answered "come back later" without work ([`crate::shedding`]).
//!
//! Tiers act on the clients, an interval later; admission acts on the gateway at once.
//! It is a rate, not a share of what arrives. What a gateway can decide in a second is
//! steady (its CPU); what its clients send is not: after they hear of a raised tier,
//! their next shakes bunch, and the offered load pulses. A share cut for a pulse turns
//! away work the gateway could have done in the lull after it; a rate near what the loop
//! sustains decides about as much in either.
//!
//! The rate is found from the loop's queueing delay, which the gateway probes every few
//! milliseconds:
//! - A probe late past the overload threshold, later than the probe before it (work is
//!   queueing faster than it is done), sets the rate to 90 % of what the loop admitted
//!   since that probe, or keeps a lower one; never below three quarters of the rate
//!   before, nor, when admission starts, below 90 % of what the last window admitted.
//!   While the queue drains the probes are still late but less so each time, and the
//!   rate stays.
//! - Each calm window (mean delay at or below the calm threshold) raises it by a tenth,
//!   so it climbs back past what the loop sustains, and the next growing queue cuts it
//!   again. A calm window that turned nothing away ends admission: all shakes again.
//!
//! No I/O and no clock: the gateway shell passes the time since it started.

use std::time::Duration;

/// Decisions a second admission never cuts below, so that some shakes always get decided.
const RATE_FLOOR: f64 = 20.0;
/// A growing queue sets the rate to this share of what the loop admitted meanwhile.
const CUT: f64 = 0.9;
/// One probe cuts the rate by a quarter at most: a probe's span is a few milliseconds,
/// and one spent on other work (shedding a backlog, a slow write) says little.
const DEEPEST_CUT: f64 = 0.75;
/// A calm window raises the rate by this factor.
const RECOVER: f64 = 1.1;
/// Tokens kept through an idle moment: this long of decisions at the rate (and at least
/// one), so that a burst after a lull is not admitted all at once.
const BURST: Duration = Duration::from_millis(10);

/// A window's counts: shakes admitted and turned away by admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub admitted: u64,
    pub turned_away: u64,
}

impl WindowCounts {
    /// The share of the window's shakes that admission turned away (0 when none came).
    pub fn turned_away_share(&self) -> f64 {
        let all = self.admitted + self.turned_away;
        if all == 0 {
            0.0
        } else {
            self.turned_away as f64 / all as f64
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission {
    /// Overloaded when a probe is this late.
    overloaded_at: Duration,
    /// Calm when a window's mean delay is at most this.
    calm_at: Duration,
    /// Decisions a second; `None`: every shake.
    rate: Option<f64>,
    tokens: f64,
    /// When the tokens were last topped up.
    refilled: Duration,
    /// The last probe: when it ran and how late it was.
    probed: Option<(Duration, Duration)>,
    /// Admitted since that probe.
    since_probe: u64,
    window: WindowCounts,
    /// When this window started, and the decisions a second the last one admitted.
    window_started: Duration,
    last_window_rate: f64,
}

impl Admission {
    /// Admission that counts a probe `overloaded_at` late or more as overloaded and a
    /// window whose mean delay is `calm_at` or less as calm (the tier's thresholds).
    pub fn new(overloaded_at: Duration, calm_at: Duration) -> Admission {
        Admission {
            overloaded_at,
            calm_at,
            rate: None,
            tokens: 0.0,
            refilled: Duration::ZERO,
            probed: None,
            since_probe: 0,
            window: WindowCounts::default(),
            window_started: Duration::ZERO,
            last_window_rate: 0.0,
        }
    }

    /// Decisions a second admitted now; `None` while every shake is.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Whether a shake now gets a decision; counted either way. The time is asked of
    /// `now` only while admission holds a rate (the shell's clock read is spared
    /// otherwise).
    pub fn admit(&mut self, now: impl FnOnce() -> Duration) -> bool {
        let admitted = match self.rate {
            None => true,
            Some(rate) => {
                let now = now();
                let elapsed = now.saturating_sub(self.refilled).as_secs_f64();
                self.refilled = self.refilled.max(now);
                let burst = (rate * BURST.as_secs_f64()).max(1.0);
                self.tokens = (self.tokens + rate * elapsed).min(burst);
                if self.tokens >= 1.0 {
                    self.tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        if admitted {
            self.window.admitted += 1;
            self.since_probe += 1;
        } else {
            self.window.turned_away += 1;
        }
        admitted
    }

    /// A probe of the loop ran at `now`, `lateness` late (the gateway's own share, see
    /// [`crate::throttle_tier::TierController::own_lateness`]).
    pub fn probe(&mut self, now: Duration, lateness: Duration) {
        if let Some((then, was_late)) = self.probed {
            let span = now.saturating_sub(then).as_secs_f64();
            if lateness >= self.overloaded_at && lateness > was_late && span > 0.0 {
                let cut = self.since_probe as f64 / span * CUT;
                let rate = match self.rate {
                    None => {
                        self.tokens = 0.0;
                        self.refilled = now;
                        cut.max(self.last_window_rate * CUT)
                    }
                    Some(rate) => rate.min(cut).max(rate * DEEPEST_CUT),
                };
                self.rate = Some(rate.max(RATE_FLOOR));
            }
        }
        self.probed = Some((now, lateness));
        self.since_probe = 0;
    }

    /// A window ended at `now` with this mean queueing delay: a calm one raises the rate
    /// (or ends admission if it turned nothing away). Returns the window's counts.
    pub fn window(&mut self, now: Duration, queue_delay: Duration) -> WindowCounts {
        let counts = std::mem::take(&mut self.window);
        let span = now.saturating_sub(self.window_started).as_secs_f64();
        self.last_window_rate = if span > 0.0 {
            counts.admitted as f64 / span
        } else {
            0.0
        };
        self.window_started = now;
        if queue_delay <= self.calm_at {
            self.rate = match self.rate {
                Some(rate) if counts.turned_away > 0 => Some(rate * RECOVER),
                _ => None,
            };
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn admission() -> Admission {
        Admission::new(ms(20), ms(5))
    }

    /// Admission started by a probe `late` after 30 decisions in 30 ms (1,000 a second,
    /// so a rate of 900), at 30 ms.
    fn admitting(late: u64) -> Admission {
        let mut a = admission();
        a.probe(ms(0), ms(0));
        offer(&mut a, ms(0), ms(30), 30);
        a.probe(ms(30), ms(late));
        a
    }

    /// Offers `n` shakes evenly over `over` from `start`; returns how many were admitted.
    fn offer(a: &mut Admission, start: Duration, over: Duration, n: u32) -> u32 {
        (0..n).filter(|i| a.admit(|| start + over * *i / n)).count() as u32
    }

    #[test]
    fn a_calm_gateway_admits_every_shake() {
        let mut a = admission();
        for i in 0..100 {
            a.probe(ms(5 * i), ms(1));
        }
        assert_eq!(offer(&mut a, ms(500), ms(250), 1_000), 1_000);
        assert_eq!(a.rate(), None);
        assert_eq!(a.window(ms(750), ms(1)).turned_away_share(), 0.0);
    }

    #[test]
    fn a_growing_queue_sets_the_rate_to_nine_tenths_of_what_the_loop_admitted() {
        // 30 decided in the 30 ms before a probe 25 ms late: 1,000 a second.
        let mut a = admitting(25);
        let rate = a.rate().expect("admission on");
        assert!((rate - 900.0).abs() < 1e-6, "{rate}");
        // Over the next second (with tokens for 10 ms at most after an idle moment)
        // about 900 of 4,000 get a decision.
        let got = offer(&mut a, ms(30), ms(1_000), 4_000);
        assert!((890..=910).contains(&got), "{got}");
    }

    #[test]
    fn a_draining_queue_is_not_cut_again() {
        let mut a = admitting(40);
        let first = a.rate().unwrap();
        // Still late, but less each time: the queue drains; the rate holds.
        for (i, late) in [35, 30, 25, 20].into_iter().enumerate() {
            let at = ms(30 + 10 * (i as u64 + 1));
            offer(&mut a, at - ms(10), ms(10), 5);
            a.probe(at, ms(late));
        }
        assert_eq!(a.rate(), Some(first));
        // Growing again: cut again, to nine tenths of what it admitted (8 in 10 ms).
        offer(&mut a, ms(70), ms(10), 8);
        a.probe(ms(80), ms(30));
        assert!((a.rate().unwrap() - 720.0).abs() < 1e-6, "{:?}", a.rate());
        // By a quarter at most, however little a probe's span admitted.
        a.probe(ms(90), ms(35));
        assert!(
            (a.rate().unwrap() - 720.0 * 0.75).abs() < 1e-6,
            "{:?}",
            a.rate()
        );
    }

    #[test]
    fn admission_starts_at_no_less_than_nine_tenths_of_the_last_window() {
        let mut a = admission();
        // A window that admitted 500 a second, then a late probe after a span that
        // admitted nothing (the loop busy with something else).
        offer(&mut a, ms(0), ms(250), 125);
        a.window(ms(250), ms(1));
        a.probe(ms(250), ms(0));
        a.probe(ms(280), ms(25));
        assert!((a.rate().unwrap() - 450.0).abs() < 1e-6, "{:?}", a.rate());
    }

    #[test]
    fn calm_windows_raise_the_rate_and_end_admission_once_nothing_is_turned_away() {
        let mut a = admitting(25);
        let first = a.rate().unwrap();
        // Between the thresholds: held.
        offer(&mut a, ms(30), ms(250), 1_000);
        assert!(a.window(ms(280), ms(10)).turned_away > 0);
        assert_eq!(a.rate(), Some(first));
        // Calm, while turning shakes away: a tenth more each window.
        offer(&mut a, ms(280), ms(250), 1_000);
        a.window(ms(530), ms(2));
        assert!((a.rate().unwrap() - first * 1.1).abs() < 1e-6);
        // Calm, and a window whose shakes all fit: admission ends.
        offer(&mut a, ms(530), ms(250), 10);
        assert_eq!(a.window(ms(780), ms(2)).turned_away, 0);
        assert_eq!(a.rate(), None);
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let mut a = admission();
        a.probe(ms(0), ms(0));
        // Nothing admitted in a span ending in a late probe.
        a.probe(ms(100), ms(90));
        assert_eq!(a.rate(), Some(RATE_FLOOR));
        let got = offer(&mut a, ms(100), ms(1_000), 10_000);
        assert!((19..=21).contains(&got), "{got}");
    }

    #[test]
    fn the_share_turned_away_is_counted_per_window() {
        let mut a = admitting(25);
        assert_eq!(
            a.window(ms(30), ms(10)).turned_away,
            0,
            "all 30 admitted before the cut"
        );
        offer(&mut a, ms(30), ms(1_000), 3_600);
        let counts = a.window(ms(1_030), ms(10));
        let share = counts.turned_away_share();
        assert!((0.745..0.755).contains(&share), "{counts:?}");
        assert_eq!(a.window(ms(1_280), ms(10)), WindowCounts::default());
        assert_eq!(WindowCounts::default().turned_away_share(), 0.0);
    }
}
