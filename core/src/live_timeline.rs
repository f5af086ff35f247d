//! The schedule version a gateway holds, and what each channel's offer does to it (seed
//! mechanism 5: three independent channels, any one enough; the countdown never waits).
//!
//! A gateway keeps the highest verified version it was offered. Offers come from any
//! channel in any order, late or twice: an older or equal version changes nothing and
//! is only counted. Between offers nothing has to happen for a round to start: the
//! timeline held says when, and the gateway's clock reaches it.
//!
//! Also here: how many shakes a gateway decided on a version that was already stale
//! (signed by the operator, not yet applied here), from a short history of the
//! gateway's decided-shake count.

use std::collections::VecDeque;
use sut_wire::schedule::Schedule;

/// How a version reached a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Pushed by a config service the gateway watches.
    Push,
    /// Fetched by the gateway's own polling of a versioned source.
    Pull,
    /// Passed on by another gateway (or by the operator's tool to a few gateways).
    Gossip,
    /// Read from the gateway's own disk at start.
    Disk,
}

impl Channel {
    pub const LIVE: [Channel; 3] = [Channel::Push, Channel::Pull, Channel::Gossip];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Pull => "pull",
            Channel::Gossip => "gossip",
            Channel::Disk => "disk",
        }
    }

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::LIVE.into_iter().find(|c| c.name() == name)
    }
}

/// What an offered version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Newer: it is the schedule now.
    Applied,
    /// The version held already.
    Repeat,
    /// Older than the version held: ignored.
    Older,
}

impl Offer {
    pub fn name(self) -> &'static str {
        match self {
            Offer::Applied => "applied",
            Offer::Repeat => "repeat",
            Offer::Older => "older",
        }
    }
}

/// The version held.
#[derive(Debug, Clone)]
pub struct LiveTimeline {
    current: Schedule,
}

impl LiveTimeline {
    pub fn new(start: Schedule) -> Self {
        LiveTimeline { current: start }
    }

    pub fn current(&self) -> &Schedule {
        &self.current
    }

    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// Offers a verified version.
    pub fn offer(&mut self, schedule: Schedule) -> Offer {
        use std::cmp::Ordering::*;
        match schedule.version.cmp(&self.current.version) {
            Greater => {
                self.current = schedule;
                Offer::Applied
            }
            Equal => Offer::Repeat,
            Less => Offer::Older,
        }
    }
}

/// The gateway's decided-shake count over the last while, sampled at a fixed step:
/// enough to say how many shakes it decided since a given time.
#[derive(Debug, Clone)]
pub struct DecidedHistory {
    /// (Unix ms, decided so far), oldest first.
    samples: VecDeque<(i64, u64)>,
    keep: usize,
}

impl DecidedHistory {
    /// Keeps `keep` samples (at a sample every 50 ms, 400 hold 20 s).
    pub fn new(keep: usize) -> Self {
        DecidedHistory {
            samples: VecDeque::with_capacity(keep),
            keep: keep.max(2),
        }
    }

    pub fn sample(&mut self, unix_ms: i64, decided: u64) {
        if self.samples.len() == self.keep {
            self.samples.pop_front();
        }
        self.samples.push_back((unix_ms, decided));
    }

    /// Shakes decided since `since_ms`, given `decided_now` at `now_ms`: the count at
    /// `since_ms` is interpolated between the samples around it (or between the last
    /// sample and now); from the oldest sample kept when `since_ms` is older than all,
    /// which makes the figure a lower bound.
    pub fn since(&self, since_ms: i64, now_ms: i64, decided_now: u64) -> u64 {
        let before = self.samples.iter().rev().find(|(t, _)| *t <= since_ms);
        let after = self
            .samples
            .iter()
            .find(|(t, _)| *t > since_ms)
            .copied()
            .unwrap_or((now_ms, decided_now));
        let base = match before {
            Some(&(t0, n0)) if after.0 > t0 => {
                let share = (since_ms - t0) as f64 / (after.0 - t0) as f64;
                n0 + (after.1.saturating_sub(n0) as f64 * share.clamp(0.0, 1.0)) as u64
            }
            Some(&(_, n0)) => n0,
            None => self.samples.front().map_or(decided_now, |(_, n)| *n),
        };
        decided_now.saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sut_wire::timeline::Timeline;

    fn v(version: u64) -> Schedule {
        Schedule {
            version,
            signed_unix_ms: 0,
            change: String::new(),
            clock_offset_ms: 0,
            timeline: Timeline::parse("rounds: []\n", "t").unwrap(),
        }
    }

    #[test]
    fn only_newer_versions_apply_in_any_order() {
        let mut live = LiveTimeline::new(v(1));
        assert_eq!(live.offer(v(3)), Offer::Applied);
        assert_eq!(live.offer(v(2)), Offer::Older);
        assert_eq!(live.offer(v(3)), Offer::Repeat);
        assert_eq!(live.offer(v(4)), Offer::Applied);
        assert_eq!(live.version(), 4);
    }

    #[test]
    fn stale_shakes_count_from_the_signing_time() {
        let mut h = DecidedHistory::new(4);
        for (t, n) in [(0, 0), (50, 10), (100, 30), (150, 60)] {
            h.sample(t, n);
        }
        assert_eq!(h.since(100, 160, 70), 40);
        assert_eq!(
            h.since(120, 160, 70),
            28,
            "30 + 3/5 of the 30 decided by 150"
        );
        assert_eq!(h.since(155, 160, 70), 5, "between the last sample and now");
        h.sample(200, 80); // drops (0, 0)
        assert_eq!(
            h.since(-5, 210, 90),
            80,
            "older than kept: from the oldest kept"
        );
    }

    #[test]
    fn channels_parse_by_name() {
        for c in Channel::LIVE {
            assert_eq!(Channel::parse(c.name()), Some(c));
        }
        assert_eq!(Channel::parse("disk"), None);
    }
}
