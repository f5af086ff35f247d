//! The show's timeline: rounds of envelopes, each starting on its own countdown.
//!
//! A round starts at its planned offset from the show's start whether or not any command
//! arrives (the seed's countdown fallback). Live changes arrive as whole new versions
//! ([`crate::schedule`]); everything that asks "which round is on?" goes through
//! [`Timeline`].

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The countdown that says "no round is left in the show".
pub const NO_ROUND_LEFT: u32 = u32::MAX;

/// One round of envelopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round {
    /// Round id, unique in the timeline (also the high bits of its envelope ids).
    pub id: u32,
    /// Planned start, as an offset from the show's start.
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Envelope budget: how many envelopes the round issues at most, over all gateways.
    pub envelopes: u64,
    /// Global issuance rate, envelopes per second over all gateways.
    pub rate: f64,
    /// Smallest and largest envelope amount, in cents.
    pub amount_cents: [u32; 2],
    /// Sponsor ids whose envelopes and greetings this round shows.
    pub sponsors: Vec<u16>,
    /// Resource ids (pre-pushed images) a greeting of this round may name.
    #[serde(default)]
    pub resources: Vec<u32>,
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// Monotonic config version, carried in every HelloAck.
    #[serde(default = "one")]
    pub version: u64,
    /// Throttle tiers: the least time a client leaves between shakes at each tier, 0
    /// (normal) first. The last tier is "come back later": shakes at it are answered
    /// without any work.
    #[serde(default = "default_tiers", with = "durations")]
    pub tiers: Vec<Duration>,
    pub rounds: Vec<Round>,
}

fn one() -> u64 {
    1
}

fn default_tiers() -> Vec<Duration> {
    [2, 3, 4, 6, 8, 11, 15].map(Duration::from_secs).to_vec()
}

/// A list of durations written as humantime strings (`[2s, 500ms]`).
mod durations {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                humantime::parse_duration(s).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a duration ({e}); write e.g. 2s or 500ms"
                    ))
                })
            })
            .collect()
    }
}

#[derive(Debug, Error)]
pub enum TimelineError {
    #[error("timeline {path}: {message}")]
    Parse { path: String, message: String },
    #[error("timeline {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Timeline {
    /// Parses and checks timeline YAML; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Timeline, TimelineError> {
        let timeline: Timeline = serde_yaml::from_str(text).map_err(|e| TimelineError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        timeline.check().map_err(|message| TimelineError::Invalid {
            path: origin.to_string(),
            message,
        })?;
        Ok(timeline)
    }

    /// The timeline as YAML, as [`Timeline::parse`] reads it.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The top tier: "come back later".
    pub fn top_tier(&self) -> u8 {
        (self.tiers.len().saturating_sub(1)).min(u8::MAX as usize) as u8
    }

    /// Checks the timeline; the message names the field and the fix.
    pub fn check(&self) -> Result<(), String> {
        if self.tiers.len() < 2 || self.tiers.len() > 16 {
            return Err(format!(
                "tiers: list 2 to 16 shake intervals (tier 0 first, the last is \"come back later\"), got {}",
                self.tiers.len()
            ));
        }
        for (i, w) in self.tiers.windows(2).enumerate() {
            if w[0].is_zero() || w[1] < w[0] {
                return Err(format!(
                    "tiers[{}]: intervals must be longer than zero and never shorten from one tier to the next",
                    i + 1
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.rounds.iter().enumerate() {
            let at = format!("rounds[{i}] (id {})", r.id);
            if !ids.insert(r.id) {
                return Err(format!(
                    "{at}: duplicate round id; give each round its own id"
                ));
            }
            if r.id >= 1 << 23 {
                return Err(format!("{at}: id must be below 8388608"));
            }
            if !(r.rate.is_finite() && r.rate > 0.0) {
                return Err(format!(
                    "{at}.rate: must be a positive number of envelopes per second, got {}",
                    r.rate
                ));
            }
            if r.duration.is_zero() {
                return Err(format!("{at}.duration: must be longer than zero"));
            }
            if r.envelopes >= 1 << 40 {
                return Err(format!("{at}.envelopes: must be below 2^40"));
            }
            let [lo, hi] = r.amount_cents;
            if lo == 0 || lo > hi {
                return Err(format!(
                    "{at}.amount_cents: need [min, max] with 1 <= min <= max, got [{lo}, {hi}]"
                ));
            }
            if r.sponsors.is_empty() {
                return Err(format!("{at}.sponsors: list at least one sponsor id"));
            }
        }
        let mut sorted: Vec<&Round> = self.rounds.iter().collect();
        sorted.sort_by_key(|r| r.start);
        for w in sorted.windows(2) {
            if w[0].start + w[0].duration > w[1].start {
                return Err(format!(
                    "rounds {} and {} overlap; start round {} at or after {:?}",
                    w[0].id,
                    w[1].id,
                    w[1].id,
                    w[0].start + w[0].duration
                ));
            }
        }
        Ok(())
    }

    /// The round on at `show_ms` (milliseconds since the show's start; negative before it).
    pub fn active(&self, show_ms: i64) -> Option<&Round> {
        if show_ms < 0 {
            return None;
        }
        let t = Duration::from_millis(show_ms as u64);
        self.rounds
            .iter()
            .find(|r| r.start <= t && t < r.start + r.duration)
    }

    /// The countdown a client is told at `show_ms`: 0 while a round is on, the ms until
    /// the next round starts otherwise, [`NO_ROUND_LEFT`] when none is left.
    pub fn countdown_ms(&self, show_ms: i64) -> u32 {
        if self.active(show_ms).is_some() {
            return 0;
        }
        self.rounds
            .iter()
            .map(|r| r.start.as_millis() as i64 - show_ms)
            .filter(|d| *d > 0)
            .min()
            .map_or(NO_ROUND_LEFT, |d| d.min(NO_ROUND_LEFT as i64 - 1) as u32)
    }

    pub fn round(&self, id: u32) -> Option<&Round> {
        self.rounds.iter().find(|r| r.id == id)
    }

    /// When the last round ends, measured from the show's start.
    pub fn end(&self) -> Duration {
        self.rounds
            .iter()
            .map(|r| r.start + r.duration)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "
rounds:
  - { id: 1, start: 2s, duration: 10s, envelopes: 100, rate: 20, amount_cents: [1, 500], sponsors: [1, 2] }
  - { id: 2, start: 15s, duration: 5s, envelopes: 50, rate: 10, amount_cents: [100, 100], sponsors: [3], resources: [7] }
";

    #[test]
    fn rounds_start_on_their_countdown() {
        let t = Timeline::parse(YAML, "test").unwrap();
        assert_eq!(t.active(-5), None);
        assert_eq!(t.active(1_999), None);
        assert_eq!(t.active(2_000).unwrap().id, 1);
        assert_eq!(t.active(11_999).unwrap().id, 1);
        assert_eq!(t.active(12_000), None);
        assert_eq!(t.active(15_000).unwrap().id, 2);
        assert_eq!(t.end(), Duration::from_secs(20));
    }

    #[test]
    fn the_countdown_names_the_next_round() {
        let t = Timeline::parse(YAML, "test").unwrap();
        assert_eq!(t.countdown_ms(-1_000), 3_000);
        assert_eq!(t.countdown_ms(5_000), 0);
        assert_eq!(t.countdown_ms(12_500), 2_500);
        assert_eq!(t.countdown_ms(20_000), NO_ROUND_LEFT);
    }

    #[test]
    fn bad_timelines_name_the_field() {
        let neg = YAML.replace("rate: 20", "rate: -3");
        let e = Timeline::parse(&neg, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("rounds[0] (id 1).rate"), "{e}");
        let overlap = YAML.replace("start: 15s", "start: 5s");
        assert!(Timeline::parse(&overlap, "t")
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        let unknown = YAML.replace("rate: 20", "rate: 20, colour: red");
        let e = Timeline::parse(&unknown, "t").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
