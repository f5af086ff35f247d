//! Which transport each simulated user connects over: TCP, QUIC, or a seeded mix.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A connection's transport (its index in [`Transport::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Tcp = 0,
    Quic = 1,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Quic];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// `behaviour.transport`: `tcp` (the default), `quic`, or a mix such as
/// `{ tcp: 0.7, quic: 0.3 }` (shares of users, seeded, summing to 1).
#[derive(Debug, Clone, Copy, PartialEq, JsonSchema)]
#[schemars(with = "TransportSpec")]
pub struct TransportMix {
    /// Share of users on QUIC, 0 to 1.
    pub quic: f64,
}

impl Default for TransportMix {
    fn default() -> Self {
        TransportMix { quic: 0.0 }
    }
}

/// How a profile writes it.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only read through `TransportMix`'s deserializer and schema.
enum TransportSpec {
    /// `tcp` or `quic`: every user.
    One(String),
    /// Shares of users per transport, e.g. `{ tcp: 0.7, quic: 0.3 }`.
    Mix {
        #[serde(default)]
        tcp: f64,
        #[serde(default)]
        quic: f64,
    },
}

impl<'de> Deserialize<'de> for TransportMix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |what: String| {
            serde::de::Error::custom(format!(
                "transport: {what}; write `tcp`, `quic`, or shares of users such as `{{ tcp: 0.7, quic: 0.3 }}` (they sum to 1)"
            ))
        };
        match TransportSpec::deserialize(d)
            .map_err(|_| bad("not a transport name or a mix".into()))?
        {
            TransportSpec::One(name) => match name.as_str() {
                "tcp" => Ok(TransportMix { quic: 0.0 }),
                "quic" => Ok(TransportMix { quic: 1.0 }),
                other => Err(bad(format!("unknown transport `{other}`"))),
            },
            TransportSpec::Mix { tcp, quic } => {
                let share = |s: f64| s.is_finite() && (0.0..=1.0).contains(&s);
                if !share(tcp) || !share(quic) || (tcp + quic - 1.0).abs() > 1e-6 {
                    return Err(bad(format!("tcp {tcp} + quic {quic} is not a split of 1")));
                }
                Ok(TransportMix { quic })
            }
        }
    }
}

impl TransportMix {
    /// The transport `user` connects over (a seeded draw, so every process agrees).
    pub fn of(&self, user: u64, seed: u64) -> Transport {
        let draw = sut_core::spread::spread(user ^ seed.rotate_left(29)) % 1_000_000;
        if draw < (self.quic * 1_000_000.0).round() as u64 {
            Transport::Quic
        } else {
            Transport::Tcp
        }
    }

    /// Whether any user goes over QUIC.
    pub fn any_quic(&self) -> bool {
        self.quic > 0.0
    }

    /// Whether any user goes over TCP.
    pub fn any_tcp(&self) -> bool {
        self.quic < 1.0
    }

    /// Worker processes for `peak` users on a machine allowing `open_files` per
    /// process: enough that each worker's TCP users fit in its open files, and its QUIC
    /// users (one UDP socket for all of them) stay at most [`QUIC_USERS_PER_WORKER`].
    pub fn workers_for(&self, peak: u64, open_files: u64) -> u64 {
        let tcp = (peak as f64 * (1.0 - self.quic)).ceil() as u64;
        let quic = (peak as f64 * self.quic).ceil() as u64;
        let by_files = if tcp > 0 {
            shellkit::open_files::processes_for(tcp, open_files, 0.95)
        } else {
            1
        };
        by_files.max(quic.div_ceil(QUIC_USERS_PER_WORKER)).max(1)
    }
}

/// QUIC users one worker holds at most. They cost it no file each, so the open-file
/// limit does not bound them; each worker costs a few megabytes of its own (its
/// histograms above all), so fewer is cheaper, while more than one lets a many-core
/// machine spread the handshakes. 250,000 QUIC connections held here by 3 workers
/// took a fifth of a core on the load generator's side (README, QUIC connections).
pub const QUIC_USERS_PER_WORKER: u64 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_users_need_no_worker_per_open_files() {
        let tcp = TransportMix { quic: 0.0 };
        let quic = TransportMix { quic: 1.0 };
        let half = TransportMix { quic: 0.5 };
        assert_eq!(
            tcp.workers_for(1_000_000, 20_000),
            shellkit::open_files::processes_for(1_000_000, 20_000, 0.95)
        );
        assert_eq!(quic.workers_for(250_000, 20_000), 3);
        assert_eq!(quic.workers_for(50_000, 20_000), 1);
        assert_eq!(quic.workers_for(0, 20_000), 1);
        // Half of 100,000 on TCP: the files decide.
        assert_eq!(
            half.workers_for(100_000, 20_000),
            shellkit::open_files::processes_for(50_000, 20_000, 0.95)
        );
    }

    fn parse(yaml: &str) -> Result<TransportMix, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn names_and_mixes_parse() {
        assert_eq!(parse("tcp").unwrap().quic, 0.0);
        assert_eq!(parse("quic").unwrap().quic, 1.0);
        assert_eq!(parse("{ tcp: 0.7, quic: 0.3 }").unwrap().quic, 0.3);
    }

    #[test]
    fn bad_transports_say_how_to_write_one() {
        for bad in [
            "udp",
            "{ tcp: 0.7, quic: 0.7 }",
            "{ tcp: -1, quic: 2 }",
            "3",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("write `tcp`, `quic`"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_mix_splits_users_as_asked() {
        let mix = parse("{ tcp: 0.7, quic: 0.3 }").unwrap();
        let quic = (0..10_000)
            .filter(|u| mix.of(*u, 7) == Transport::Quic)
            .count();
        assert!((2_700..3_300).contains(&quic), "{quic}");
        let all = parse("quic").unwrap();
        assert!((0..1000).all(|u| all.of(u, 7) == Transport::Quic));
        let none = TransportMix::default();
        assert!((0..1000).all(|u| none.of(u, 7) == Transport::Tcp));
    }
}
