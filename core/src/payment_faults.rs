//! Faults the payment stand-in can be told to have, so that a profile can make the
//! transfer system slow, flaky or down and watch "the back rejects the front" work:
//! the envelope backend's outbox holds the credits and retries, and users never see it.
//!
//! No I/O: the shell passes in the show time and a random roll.

use std::str::FromStr;
use std::time::Duration;

/// A span of show time during which every request fails, written `START+LENGTH`
/// (e.g. `20s+5s`: from 20 s into the show, for 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub start: Duration,
    pub length: Duration,
}

impl FromStr for Outage {
    type Err = String;
    fn from_str(s: &str) -> Result<Outage, String> {
        let bad = || format!("outage `{s}`: write START+LENGTH in show time, e.g. 20s+5s");
        let (start, length) = s.split_once('+').ok_or_else(bad)?;
        let start = humantime::parse_duration(start.trim()).map_err(|_| bad())?;
        let length = humantime::parse_duration(length.trim()).map_err(|_| bad())?;
        if length.is_zero() {
            return Err(format!("outage `{s}`: the length must be more than zero"));
        }
        Ok(Outage { start, length })
    }
}

/// What payment does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it, after this much added latency.
    Serve { delay: Duration },
    /// Refuse it: inside an outage window.
    Down,
    /// Refuse it: an injected failure.
    Fail,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaymentFaults {
    /// Added to every request that is served.
    pub latency: Duration,
    /// Share of requests refused with a failure, 0..1.
    pub failure_rate: f64,
    pub outages: Vec<Outage>,
}

impl PaymentFaults {
    /// `show_ms`: show time now (negative before the show); `roll`: uniform in [0, 1).
    pub fn decide(&self, show_ms: i64, roll: f64) -> Verdict {
        let down = show_ms >= 0
            && self.outages.iter().any(|o| {
                let t = show_ms as u128;
                t >= o.start.as_millis() && t < (o.start + o.length).as_millis()
            });
        if down {
            Verdict::Down
        } else if roll < self.failure_rate {
            Verdict::Fail
        } else {
            Verdict::Serve {
                delay: self.latency,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_parse_and_hold_only_inside_their_window() {
        let f = PaymentFaults {
            latency: Duration::from_millis(5),
            failure_rate: 0.0,
            outages: vec!["20s+5s".parse().unwrap()],
        };
        assert_eq!(
            f.decide(19_999, 0.5),
            Verdict::Serve {
                delay: Duration::from_millis(5)
            }
        );
        assert_eq!(f.decide(20_000, 0.5), Verdict::Down);
        assert_eq!(f.decide(24_999, 0.5), Verdict::Down);
        assert_eq!(
            f.decide(25_000, 0.5),
            Verdict::Serve {
                delay: Duration::from_millis(5)
            }
        );
        assert_eq!(
            f.decide(-1, 0.5),
            Verdict::Serve {
                delay: Duration::from_millis(5)
            }
        );
        assert!("20s"
            .parse::<Outage>()
            .unwrap_err()
            .contains("START+LENGTH"));
        assert!("20s+0s"
            .parse::<Outage>()
            .unwrap_err()
            .contains("more than zero"));
    }

    #[test]
    fn failures_follow_the_roll() {
        let f = PaymentFaults {
            failure_rate: 0.25,
            ..PaymentFaults::default()
        };
        assert_eq!(f.decide(0, 0.1), Verdict::Fail);
        assert_eq!(
            f.decide(0, 0.3),
            Verdict::Serve {
                delay: Duration::ZERO
            }
        );
        let refused = (0..1000)
            .filter(|i| f.decide(0, *i as f64 / 1000.0) == Verdict::Fail)
            .count();
        assert_eq!(refused, 250);
    }
}
