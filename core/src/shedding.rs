//! Which shakes get no decision at all, answered "come back later" at once: the front
//! protects the back by doing no work for them.
//!
//! - At the top tier, every shake.
//! - At any raised tier, a shake sooner than the tier's interval after this client's
//!   last decided one (with 10 % slack for clients whose timers run early). Clients
//!   hear of a raised tier only with their next reply; this sheds what they send before
//!   that, so a raise acts at the gateway at once.
//! - While the gateway's loop is overloaded, all past the rate that admission lets
//!   through ([`crate::admission`]), whoever sends them.
//! - While the loop is more than [`STALE_AFTER`] behind (its load probe overdue by that
//!   much), every shake: each has waited about that long already, and deciding it now
//!   would only add to its lateness and to the wait of all behind it. As DAGOR sheds
//!   requests by their queueing time, this drains a backlog at once, before the
//!   admission rate (set when the probe finally runs) has caught up.

use crate::throttle_tier::STALE_AFTER;
use std::time::Duration;

/// The gateway's throttle as a shake sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub tier: u8,
    pub top_tier: u8,
    /// The shake interval the tier asks of clients, ms.
    pub shake_interval_ms: u32,
    /// How far the gateway's loop is behind now (zero when it is on time, or when the
    /// gateway keeps tier 0 whatever the load).
    pub behind: Duration,
}

/// Why a shake gets no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    TopTier,
    Early,
    Admission,
    /// The loop is behind: the shake waited too long already.
    Stale,
}

impl Throttle {
    /// The throttle at `tier`, with each tier's interval from `intervals_ms` (the last
    /// one for any tier past the table; 2 s if the table is empty).
    pub fn at(tier: u8, top_tier: u8, intervals_ms: &[u32]) -> Throttle {
        let i = (tier as usize).min(intervals_ms.len().saturating_sub(1));
        Throttle {
            tier,
            top_tier,
            shake_interval_ms: intervals_ms.get(i).copied().unwrap_or(2_000),
            behind: Duration::ZERO,
        }
    }

    /// The same throttle with the loop `behind` by this much.
    pub fn behind(self, behind: Duration) -> Throttle {
        Throttle { behind, ..self }
    }

    /// Whether (and why) a shake is shed; `since_decided` is how long ago this client's
    /// last shake was decided, if ever. Admission is asked last, `admitted`, so that it
    /// counts only the shakes nothing else sheds.
    pub fn shed(
        &self,
        since_decided: Option<Duration>,
        admitted: impl FnOnce() -> bool,
    ) -> Option<Shed> {
        if self.tier > 0 && self.tier >= self.top_tier {
            return Some(Shed::TopTier);
        }
        if self.behind >= STALE_AFTER {
            return Some(Shed::Stale);
        }
        let min_gap = Duration::from_millis(u64::from(self.shake_interval_ms) * 9 / 10);
        if self.tier > 0 && since_decided.is_some_and(|d| d < min_gap) {
            return Some(Shed::Early);
        }
        if !admitted() {
            return Some(Shed::Admission);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVALS: [u32; 4] = [2_000, 4_000, 8_000, 15_000];

    #[test]
    fn calm_gateways_decide_everything() {
        let t = Throttle::at(0, 3, &INTERVALS);
        assert_eq!(t.shake_interval_ms, 2_000);
        assert_eq!(t.shed(Some(Duration::ZERO), || true), None);
    }

    #[test]
    fn the_top_tier_sheds_every_shake() {
        let t = Throttle::at(3, 3, &INTERVALS);
        assert_eq!(t.shed(None, || true), Some(Shed::TopTier));
        assert_eq!(Throttle::at(9, 3, &INTERVALS).shake_interval_ms, 15_000);
    }

    #[test]
    fn a_raised_tier_sheds_shakes_sooner_than_its_interval_with_slack() {
        let t = Throttle::at(1, 3, &INTERVALS);
        let early = Some(Duration::from_millis(3_500));
        let on_time = Some(Duration::from_millis(3_600));
        assert_eq!(t.shed(early, || true), Some(Shed::Early));
        assert_eq!(t.shed(on_time, || true), None);
        assert_eq!(t.shed(None, || true), None, "a first shake is decided");
    }

    #[test]
    fn a_loop_running_behind_sheds_every_shake_until_it_catches_up() {
        let t = Throttle::at(0, 3, &INTERVALS);
        let ms = Duration::from_millis;
        assert_eq!(t.behind(ms(24)).shed(None, || true), None);
        assert_eq!(t.behind(STALE_AFTER).shed(None, || true), Some(Shed::Stale));
        // The top tier still says what it is.
        let top = Throttle::at(3, 3, &INTERVALS).behind(ms(100));
        assert_eq!(top.shed(None, || true), Some(Shed::TopTier));
    }

    #[test]
    fn admission_is_asked_only_for_shakes_nothing_else_sheds() {
        let asked = std::cell::Cell::new(0);
        let ask = |answer| {
            asked.set(asked.get() + 1);
            answer
        };
        let calm = Throttle::at(0, 3, &INTERVALS);
        assert_eq!(calm.shed(None, || ask(false)), Some(Shed::Admission));
        assert_eq!(calm.shed(None, || ask(true)), None);
        assert_eq!(asked.get(), 2);
        let early = Some(Duration::from_millis(100));
        assert_eq!(
            Throttle::at(1, 3, &INTERVALS).shed(early, || ask(true)),
            Some(Shed::Early)
        );
        let stale = calm.behind(STALE_AFTER);
        assert_eq!(stale.shed(None, || ask(true)), Some(Shed::Stale));
        assert_eq!(
            Throttle::at(3, 3, &INTERVALS).shed(None, || ask(true)),
            Some(Shed::TopTier)
        );
        assert_eq!(asked.get(), 2, "asked only twice");
    }
}
