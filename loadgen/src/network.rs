//! Weak networks, emulated in the load generator: the profile's `network:` conditions
//! (loss, added delay with jitter, a bandwidth cap, reordering, and a network change
//! mid-session), which users each applies to, and what it does to one datagram.
//!
//! Decisions only: the worker's QUIC path ([`crate::worker`]) asks [`Link::pass`] for
//! each datagram it sends or receives and holds it until the time given (or drops it).
//! Both directions are impaired at the client, so `delay` adds twice itself to the
//! round trip, as a phone's radio link would.

use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// One network condition and the share of users on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Its name in the summary and the report, e.g. `weak`.
    pub name: String,
    /// Share of users on it (seeded; conditions take their shares in order, and users
    /// past them all are on a clear network) [default: every user not taken yet].
    #[serde(default = "all", deserialize_with = "share")]
    pub share: f64,
    /// Datagrams lost, each way, in percent (0 to 100).
    #[serde(default, deserialize_with = "percent")]
    pub loss_percent: f64,
    /// Added one-way delay, each way: the round trip grows by twice this.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub delay: Duration,
    /// Each datagram's delay varies uniformly by up to this much either way; datagrams
    /// still arrive in the order they were sent (a queue), unless `reorder_percent`
    /// holds some back.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub jitter: Duration,
    /// A user's link rate, each way, in kilobits a second (0: no cap).
    #[serde(default)]
    pub bandwidth_kbit: u32,
    /// Datagrams held back past the ones sent after them, in percent.
    #[serde(default, deserialize_with = "percent")]
    pub reorder_percent: f64,
    /// A network change (the client's address and port change, as when a phone moves
    /// from Wi-Fi to mobile data) at this time into the run, for `change_share` of the
    /// condition's users. QUIC connections migrate and keep their sessions; a TCP
    /// connection cannot, so its user reconnects.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub change_at: Option<Duration>,
    /// Share of the condition's users whose network changes [default: all of them].
    #[serde(default = "all", deserialize_with = "share")]
    pub change_share: f64,
}

fn all() -> f64 {
    1.0
}

fn share<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&s) {
        return Err(serde::de::Error::custom(format!(
            "a share of users lies in [0, 1] (e.g. 0.1 for a tenth), got {s}"
        )));
    }
    Ok(s)
}

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=100.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "a percentage lies in [0, 100] (e.g. 2 for 2 %), got {p}"
        )));
    }
    Ok(p)
}

/// The profile's conditions, as the worker applies them.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub conditions: Vec<Condition>,
}

impl Network {
    pub fn new(conditions: Vec<Condition>) -> Network {
        Network { conditions }
    }

    /// The condition `user` is on, by index (`None`: a clear network). Seeded, so every
    /// process and the report agree.
    pub fn condition_of(&self, user: u64, seed: u64) -> Option<usize> {
        let draw = unit(user ^ seed.rotate_left(41));
        let mut upto = 0.0;
        for (i, c) in self.conditions.iter().enumerate() {
            upto += c.share;
            if draw < upto {
                return Some(i);
            }
        }
        None
    }

    /// When `user`'s network changes, if it does.
    pub fn change_of(&self, user: u64, seed: u64) -> Option<Duration> {
        let c = &self.conditions[self.condition_of(user, seed)?];
        let at = c.change_at?;
        (unit(user ^ seed.rotate_left(43)) < c.change_share).then_some(at)
    }

    /// Whether any condition impairs datagrams (rather than only changing networks).
    pub fn impairs(&self) -> bool {
        self.conditions.iter().any(Condition::impairs)
    }
}

impl Condition {
    fn impairs(&self) -> bool {
        self.loss_percent > 0.0
            || !self.delay.is_zero()
            || !self.jitter.is_zero()
            || self.bandwidth_kbit > 0
            || self.reorder_percent > 0.0
    }
}

/// The summary's lines about the profile's conditions: what each does, to whom, and
/// what this run could not apply.
/// `tcp` is what became of the loss for TCP users (see [`crate::tcp_loss`]), if anything.
pub fn describe(
    conditions: &[Condition],
    transport: &crate::transport::TransportMix,
    tcp: Option<&str>,
) -> Vec<String> {
    let mut lines: Vec<String> = conditions
        .iter()
        .map(|c| {
            let mut what = vec![format!("{:.0} % of users", c.share * 100.0)];
            if c.loss_percent > 0.0 {
                what.push(format!("loss {} % each way", c.loss_percent));
            }
            if !c.delay.is_zero() || !c.jitter.is_zero() {
                what.push(format!(
                    "delay {} ms ± {} ms each way",
                    c.delay.as_millis(),
                    c.jitter.as_millis()
                ));
            }
            if c.bandwidth_kbit > 0 {
                what.push(format!("{} kbit/s each way", c.bandwidth_kbit));
            }
            if c.reorder_percent > 0.0 {
                what.push(format!("{} % reordered", c.reorder_percent));
            }
            if let Some(at) = c.change_at {
                what.push(format!(
                    "network change at {} s for {:.0} % of them",
                    at.as_secs_f64(),
                    c.change_share * 100.0
                ));
            }
            format!("{}: {}", c.name, what.join(", "))
        })
        .collect();
    if !conditions.is_empty() && transport.any_tcp() && conditions.iter().any(Condition::impairs) {
        lines.push(match tcp {
            Some(line) => format!("{line}; a network change makes a TCP user reconnect"),
            None => "TCP users' packets were NOT impaired: delay, bandwidth and reordering are applied to QUIC users' datagrams only; a network change makes a TCP user reconnect".to_string(),
        });
    }
    lines
}

/// A seeded draw in [0, 1).
fn unit(x: u64) -> f64 {
    (sut_core::spread::spread(x) % 1_000_000) as f64 / 1_000_000.0
}

/// One direction of one user's link: when its last datagram finishes crossing a
/// capped link, and when its last datagram in order arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    busy_until: Duration,
    /// A link is a queue: jitter varies each datagram's delay but does not let it pass
    /// the one sent before it; only the condition's `reorder_percent` holds datagrams
    /// back past those sent after them.
    delivered_until: Duration,
}

impl Link {
    /// What becomes of a datagram of `bytes` handed to the link at `now`: lost
    /// (`None`), or delivered at the time given.
    pub fn pass(
        &mut self,
        c: &Condition,
        bytes: usize,
        now: Duration,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if c.loss_percent > 0.0 && rng.random::<f64>() * 100.0 < c.loss_percent {
            return None;
        }
        // The link carries one datagram at a time at its rate.
        let mut sent = now;
        if c.bandwidth_kbit > 0 {
            let start = self.busy_until.max(now);
            let took =
                Duration::from_secs_f64(bytes as f64 * 8.0 / (c.bandwidth_kbit as f64 * 1000.0));
            self.busy_until = start + took;
            sent = self.busy_until;
        }
        let mut delay = c.delay;
        if !c.jitter.is_zero() {
            let j = c.jitter.as_secs_f64() * (rng.random::<f64>() * 2.0 - 1.0);
            delay = Duration::from_secs_f64((delay.as_secs_f64() + j).max(0.0));
        }
        if c.reorder_percent > 0.0 && rng.random::<f64>() * 100.0 < c.reorder_percent {
            // Held back behind what follows it: past the jitter, and at least 5 ms.
            return Some(sent + delay + c.jitter * 2 + Duration::from_millis(5));
        }
        let at = (sent + delay).max(self.delivered_until);
        self.delivered_until = at;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn condition(yaml: &str) -> Condition {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn users_take_the_conditions_shares_in_order() {
        let net = Network::new(vec![
            condition("{ name: a, share: 0.2, loss_percent: 1 }"),
            condition("{ name: b, share: 0.3, delay: 50ms, change_at: 10s, change_share: 0.5 }"),
        ]);
        let mut counts = [0usize; 3];
        let mut changes = 0;
        for u in 0..10_000 {
            counts[net.condition_of(u, 3).unwrap_or(2)] += 1;
            changes += usize::from(net.change_of(u, 3).is_some());
        }
        assert!((1_800..2_200).contains(&counts[0]), "{counts:?}");
        assert!((2_700..3_300).contains(&counts[1]), "{counts:?}");
        assert!((1_300..1_700).contains(&changes), "{changes}");
    }

    #[test]
    fn loss_drops_its_share_and_delay_and_jitter_stay_in_bounds() {
        let c = condition("{ name: w, loss_percent: 2, delay: 100ms, jitter: 10ms }");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut link = Link::default();
        let now = Duration::from_secs(1);
        let mut lost = 0;
        for _ in 0..100_000 {
            match link.pass(&c, 100, now, &mut rng) {
                None => lost += 1,
                Some(at) => {
                    let d = at - now;
                    assert!(
                        d >= Duration::from_millis(90) && d <= Duration::from_millis(110),
                        "{d:?}"
                    );
                }
            }
        }
        assert!((1_700..2_300).contains(&lost), "{lost}");
    }

    #[test]
    fn jitter_keeps_the_order_and_only_reordering_breaks_it() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        // One datagram a millisecond, the jitter ten times that: out of order if each
        // took its own delay.
        let passes = |yaml: &str, rng: &mut rand::rngs::SmallRng| {
            let c = condition(yaml);
            let mut link = Link::default();
            (0..1_000u64)
                .map(|i| link.pass(&c, 100, Duration::from_millis(i), rng).unwrap())
                .collect::<Vec<_>>()
        };
        let queued = passes("{ name: j, delay: 100ms, jitter: 10ms }", &mut rng);
        assert!(queued.windows(2).all(|w| w[0] <= w[1]), "in order");
        let mut late = queued
            .iter()
            .enumerate()
            .map(|(i, at)| *at - Duration::from_millis(i as u64));
        assert!(late.all(|d| d >= Duration::from_millis(90)), "never early");
        let reordered = passes(
            "{ name: r, delay: 100ms, jitter: 10ms, reorder_percent: 5 }",
            &mut rng,
        );
        let passed = reordered.windows(2).filter(|w| w[0] > w[1]).count();
        assert!((20..=80).contains(&passed), "{passed} held back of 1,000");
    }

    #[test]
    fn a_capped_link_carries_its_rate() {
        let c = condition("{ name: slow, bandwidth_kbit: 80 }");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut link = Link::default();
        // Ten 1,000-byte datagrams at once over 80 kbit/s: 100 ms each, back to back.
        let last = (0..10)
            .map(|_| link.pass(&c, 1000, Duration::ZERO, &mut rng).unwrap())
            .last()
            .unwrap();
        assert_eq!(last, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_what_they_allow() {
        let e = serde_yaml::from_str::<Condition>("{ name: x, loss_percent: 150 }").unwrap_err();
        assert!(e.to_string().contains("percentage lies in [0, 100]"), "{e}");
        let e = serde_yaml::from_str::<Condition>("{ name: x, share: 2 }").unwrap_err();
        assert!(e.to_string().contains("share of users"), "{e}");
    }
}
