//! Throttle tiers: how a gateway turns its own load into the tier it tells its clients.
//!
//! On the night 40M people shook against 10M planned; the system held because each
//! access server measured its own load and told its clients, in every reply, how often
//! they may shake. The load signal is the one WeChat's DAGOR uses, queueing delay (how
//! long work waits in the event loop before it is handled), together with the process's
//! CPU use. This core maps one window's measurements to a tier, with hysteresis: it
//! raises fast (at the first overloaded window, two tiers at once when far over) but
//! then lets clients hear of the new tier before raising again (a raise reaches each
//! client only with its next reply), relaxes slowly (one tier after several calm windows
//! in a row), and between the two thresholds it holds, so a load near a threshold does
//! not flap. The CPU, admission ([`crate::admission`]) turning away half the shakes, and
//! shakes shed as stale raise only from tier 0: past tier 1 only the probes' queueing
//! delay raises.
//!
//! No I/O and no clock: the gateway shell measures and calls [`TierController::observe`].

use std::time::Duration;

/// The share of its shakes turned away by admission ([`crate::admission`]) at or above
/// which a gateway at tier 0 counts as overloaded (see [`TierController::observe`]).
const TURNED_AWAY: f64 = 0.5;
/// How far behind the gateway's loop may run before shakes waiting in it are shed
/// ([`crate::shedding`]); beside admission, as both answer the loop's queueing.
pub const STALE_AFTER: Duration = Duration::from_millis(25);
/// The gateway's own CPU share (of one core) from which shakes shed as stale count as
/// its queueing (see [`TierController::window_delay`]).
const STALE_COUNTS_FROM_CPU: f64 = 0.5;

/// When a window counts as overloaded or calm.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicy {
    /// The top tier ("come back later").
    pub top: u8,
    /// Overloaded at or above this mean queueing delay.
    pub delay_high: Duration,
    /// Calm at or below this one (and CPU calm too).
    pub delay_low: Duration,
    /// Overloaded at tier 0 at or above this share of one core (smoothed); past tier 1
    /// only the delay raises (see [`TierController::observe`]).
    pub cpu_high: f64,
    /// Calm at or below this share.
    pub cpu_low: f64,
    /// Calm windows in a row before relaxing one tier.
    pub calm_windows: u32,
    /// Windows after a raise before another raise (unless far over): the raise needs a
    /// moment to act (the gateway sheds early shakes at once, clients hear of it with
    /// their next reply), and raising again sooner would overshoot.
    pub settle_windows: u32,
    /// Weight of the newest window in the smoothed CPU share (0..=1).
    pub cpu_smoothing: f64,
}

impl TierPolicy {
    /// The defaults, for windows of 250 ms: overloaded past 20 ms of queueing delay (as
    /// DAGOR), or at tier 0 past 90 % of a core or with admission at half; raising again
    /// after 1 s at the soonest; relaxing one tier per 2 s of calm.
    pub fn standard(top: u8) -> TierPolicy {
        TierPolicy {
            top,
            delay_high: Duration::from_millis(20),
            delay_low: Duration::from_millis(5),
            cpu_high: 0.90,
            cpu_low: 0.60,
            calm_windows: 8,
            settle_windows: 4,
            cpu_smoothing: 0.5,
        }
    }
}

/// One window's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// Mean time work waited in the event loop before its handling began.
    pub queue_delay: Duration,
    /// CPU used over the window, as a share of one core.
    pub cpu: f64,
    /// The share of the window's shakes that admission turned away (0..=1).
    pub turned_away: f64,
}

#[derive(Debug, Clone)]
pub struct TierController {
    policy: TierPolicy,
    tier: u8,
    cpu: f64,
    calm: u32,
    /// Windows since the last raise.
    since_raise: u32,
}

impl TierController {
    pub fn new(policy: TierPolicy) -> TierController {
        TierController {
            policy,
            tier: 0,
            cpu: 0.0,
            calm: 0,
            since_raise: u32::MAX,
        }
    }

    pub fn tier(&self) -> u8 {
        self.tier
    }

    /// How much of a probe's `lateness` is this gateway's own queueing, given the time
    /// its thread waited meanwhile for a core that other processes held (`None`: not
    /// known, all of it counts). The wait counts in proportion to how busy the gateway
    /// itself is (its smoothed CPU share): one using most of a core that still waits for
    /// one is overloaded, and shedding its shakes frees the core; one using a few
    /// percent was crowded out by other work (a ramp of connections, the load
    /// generator beside it), which shedding shakes would not relieve.
    pub fn own_lateness(&self, lateness: Duration, core_wait: Option<Duration>) -> Duration {
        let Some(wait) = core_wait else {
            return lateness;
        };
        lateness.saturating_sub(wait.mul_f64(1.0 - self.cpu.clamp(0.0, 1.0)))
    }

    /// A window's queueing delay from its probes' mean lateness, `probes_mean`, and the
    /// shakes shed in it because the loop ran behind (`Shed::Stale` in [`crate::shedding`]):
    /// each of those waited at least [`STALE_AFTER`], and shedding them
    /// drains the backlog before the probes see it. When they are a fifth of the
    /// window's `frames` or more and the gateway itself is busy (at least half a core:
    /// as with the wait for a core, one using little CPU was crowded out, see
    /// [`TierController::own_lateness`]), the window counts as queueing that long. Only
    /// at tier 0, where this is how a surge shows first: past it, admission holds the
    /// loop near what it sustains, and a moment's stall shed as stale is not a reason
    /// to raise (every client that hears of a raise pauses at once, and the gateway
    /// idles; in bench/overload.py such a raise cost whole seconds of half the decisions).
    pub fn window_delay(&self, probes_mean: Duration, stale: u64, frames: u64) -> Duration {
        let stale_share = stale.saturating_mul(5) >= frames.max(1);
        if self.tier == 0 && stale_share && self.cpu >= STALE_COUNTS_FROM_CPU {
            probes_mean.max(STALE_AFTER)
        } else {
            probes_mean
        }
    }

    /// The smoothed CPU share the last decision used.
    pub fn cpu(&self) -> f64 {
        self.cpu
    }

    /// Takes one window's measurements and returns the tier for the next window.
    pub fn observe(&mut self, sample: LoadSample) -> u8 {
        let p = &self.policy;
        let cpu = if sample.cpu.is_finite() {
            sample.cpu.max(0.0)
        } else {
            0.0
        };
        self.cpu = p.cpu_smoothing * cpu + (1.0 - p.cpu_smoothing) * self.cpu;
        let far_over = sample.queue_delay >= p.delay_high * 4;
        let calm = sample.queue_delay <= p.delay_low && self.cpu <= p.cpu_low;
        self.since_raise = self.since_raise.saturating_add(1);
        // Tier 0 tells clients all is well. A gateway that turns away half its shakes
        // or more, or whose CPU is busy, is not well, even when admission keeps its
        // loop's delay under the threshold (cutting at the first late probes, a surge
        // may never fill a whole window): it raises to tier 1, so that its clients slow
        // down rather than send shakes it pays to turn away. Past tier 1 only the
        // loop's delay raises. A busy CPU with the loop on time is a gateway working at
        // its capacity while admission holds the rest back; a raise then would leave
        // it idle for a moment, as every client that heard of it waits out the longer
        // interval at about the same time (in bench/overload.py, seconds of half the
        // decisions after each raise the CPU made mid-surge). It holds the tier there.
        let turned_away = sample.turned_away >= TURNED_AWAY;
        let warned = self.tier == 0 && (turned_away || self.cpu >= p.cpu_high);
        let overloaded = sample.queue_delay >= p.delay_high || warned;
        if overloaded {
            let settled = self.since_raise >= p.settle_windows;
            // Far over at tier 0 (a surge from calm): two tiers at once. Otherwise one
            // tier per settling period: the backlog queued before a raise keeps the
            // delay high for a while after it, and raising on that overshoots.
            let step = match (far_over && self.tier == 0, settled) {
                (true, _) => 2,
                (false, true) => 1,
                (false, false) => 0,
            };
            if step > 0 && self.tier < p.top {
                self.tier = self.tier.saturating_add(step).min(p.top);
                self.since_raise = 0;
            }
            self.calm = 0;
        } else if calm {
            self.calm += 1;
            if self.calm >= p.calm_windows && self.tier > 0 {
                self.tier -= 1;
                self.calm = 0;
            }
        } else {
            // Between the thresholds: hold the tier, and start counting calm again.
            self.calm = 0;
        }
        self.tier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn sample(delay_ms: u64, cpu: f64) -> LoadSample {
        LoadSample {
            queue_delay: ms(delay_ms),
            cpu,
            turned_away: 0.0,
        }
    }

    fn turning_away(share: f64, s: LoadSample) -> LoadSample {
        LoadSample {
            turned_away: share,
            ..s
        }
    }

    /// Tiers after each window.
    fn run(trace: &[LoadSample]) -> Vec<u8> {
        let mut c = TierController::new(TierPolicy::standard(3));
        trace.iter().map(|s| c.observe(*s)).collect()
    }

    #[test]
    fn overload_raises_fast_and_calm_relaxes_slowly() {
        let mut trace = vec![sample(100, 1.0); 10];
        trace.extend(vec![sample(1, 0.1); 30]);
        let tiers = run(&trace);
        // Far over the threshold from calm: two tiers at once, then one more once the
        // raise had time to act (4 windows), capped at the top.
        assert_eq!(&tiers[..10], &[2, 2, 2, 2, 3, 3, 3, 3, 3, 3]);
        // Calm from index 10: one tier down on every 8th calm window.
        assert_eq!(&tiers[16..19], &[3, 2, 2]);
        assert_eq!(&tiers[24..27], &[2, 1, 1]);
        assert_eq!(&tiers[32..35], &[1, 0, 0]);
        assert!(tiers[10..].windows(2).all(|w| w[1] <= w[0]), "{tiers:?}");
    }

    #[test]
    fn a_load_between_the_thresholds_holds_the_tier() {
        let mut trace = vec![sample(30, 0.5)];
        trace.extend(vec![sample(10, 0.7); 100]);
        let tiers = run(&trace);
        assert!(tiers.iter().all(|t| *t == 1), "{tiers:?}");
    }

    #[test]
    fn alternating_overload_and_calm_does_not_flap() {
        let trace: Vec<LoadSample> = (0..200)
            .map(|i| {
                if i % 4 == 0 {
                    sample(25, 0.3)
                } else {
                    sample(1, 0.3)
                }
            })
            .collect();
        let tiers = run(&trace);
        // Calm never lasts 8 windows, so the tier only climbs, to the top, and stays.
        assert!(tiers.windows(2).all(|w| w[1] >= w[0]), "{tiers:?}");
        assert_eq!(*tiers.last().unwrap(), 3);
    }

    #[test]
    fn turning_away_half_the_shakes_at_tier_0_raises_to_tier_1_and_no_further() {
        // A delay between the thresholds and a quiet CPU: nothing else would raise.
        let between = sample(10, 0.5);
        let mut c = TierController::new(TierPolicy::standard(3));
        assert_eq!(c.observe(turning_away(0.49, between)), 0);
        assert_eq!(c.observe(turning_away(0.5, between)), 1);
        for _ in 0..40 {
            assert_eq!(c.observe(turning_away(0.9, between)), 1);
        }
        // Calm windows bring the tier down; half turned away at tier 0 raises again.
        for _ in 0..20 {
            c.observe(sample(1, 0.3));
        }
        assert_eq!(c.tier(), 0);
        assert_eq!(c.observe(turning_away(0.6, between)), 1);
    }

    #[test]
    fn busy_cpu_alone_raises_to_tier_1_and_holds_it_there() {
        // The smoothed share climbs 0.5, 0.75, 0.875, 0.94: overloaded from the 4th
        // window; then, with the loop on time, tier 1 holds while the CPU stays busy.
        let tiers = run(&[sample(0, 1.0); 40]);
        assert_eq!(&tiers[..5], &[0, 0, 0, 1, 1]);
        assert!(tiers[4..].iter().all(|t| *t == 1), "{tiers:?}");
        // The loop's delay still raises past it.
        let mut trace = vec![sample(0, 1.0); 8];
        trace.extend(vec![sample(30, 1.0); 8]);
        assert_eq!(*run(&trace).last().unwrap(), 3);
    }

    /// Monotone response on seeded random traces: a trace that is everywhere at least
    /// as loaded as another never gets a lower tier at any step.
    #[test]
    fn more_load_never_gets_a_lower_tier() {
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let base: Vec<LoadSample> = (0..300)
                .map(|_| {
                    let s = sample(rng.random_range(0..40), rng.random_range(0.0..1.0));
                    turning_away(rng.random_range(0.0..0.7), s)
                })
                .collect();
            let heavier: Vec<LoadSample> = base
                .iter()
                .map(|s| LoadSample {
                    queue_delay: s.queue_delay + ms(rng.random_range(0..20)),
                    cpu: (s.cpu + rng.random_range(0.0..0.3)).min(1.0),
                    turned_away: (s.turned_away + rng.random_range(0.0..0.3)).min(1.0),
                })
                .collect();
            let (a, b) = (run(&base), run(&heavier));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(y >= x, "seed {seed} step {i}: {x} then {y}");
            }
        }
    }

    #[test]
    fn waiting_for_a_core_counts_as_much_as_the_gateway_is_busy() {
        let mut c = TierController::new(TierPolicy::standard(3));
        // Idle: a probe 30 ms late after 25 ms waiting for a core was 5 ms late by
        // the gateway's own work; more wait than lateness leaves nothing.
        assert_eq!(c.own_lateness(ms(30), Some(ms(25))), ms(5));
        assert_eq!(c.own_lateness(ms(30), Some(ms(40))), ms(0));
        assert_eq!(c.own_lateness(ms(30), None), ms(30));
        // Using a whole core (smoothed: 0.5, 0.75, 0.875, ...): the wait is its own.
        for _ in 0..20 {
            c.observe(sample(0, 1.0));
        }
        assert!(c.own_lateness(ms(30), Some(ms(25))) > ms(29));
        // Half a core: half the wait is excused.
        let mut half = TierController::new(TierPolicy::standard(3));
        for _ in 0..20 {
            half.observe(sample(0, 0.5));
        }
        let own = half.own_lateness(ms(30), Some(ms(20)));
        assert!(own > ms(19) && own < ms(21), "{own:?}");
    }

    #[test]
    fn stale_shakes_count_as_queueing_when_many_and_the_gateway_is_busy() {
        let stale_after = STALE_AFTER;
        let mut c = TierController::new(TierPolicy::standard(3));
        // Idle gateway (crowded out): the probes' own figure stands.
        assert_eq!(c.window_delay(ms(2), 50, 100), ms(2));
        for _ in 0..20 {
            c.observe(sample(0, 0.8));
        }
        assert_eq!(c.window_delay(ms(2), 20, 100), stale_after);
        assert_eq!(c.window_delay(ms(2), 19, 100), ms(2), "under a fifth");
        assert_eq!(c.window_delay(ms(40), 50, 100), ms(40), "never lowered");
        assert_eq!(c.window_delay(ms(2), 0, 0), ms(2), "an empty window");
        // Past tier 0 the probes' own figure stands.
        c.observe(sample(30, 0.8));
        assert_eq!(c.tier(), 1);
        assert_eq!(c.window_delay(ms(2), 50, 100), ms(2));
    }

    #[test]
    fn nonsense_cpu_readings_count_as_idle() {
        let mut c = TierController::new(TierPolicy::standard(3));
        assert_eq!(
            c.observe(LoadSample {
                cpu: f64::NAN,
                ..sample(0, 0.0)
            }),
            0
        );
        assert_eq!(c.cpu(), 0.0);
    }
}
