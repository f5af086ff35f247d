//! Hostile users: a share of the profile's users that attack the gateways instead of
//! playing (`behaviour.hostile`). Each is dealt one attack; what it sends and when is
//! decided here, with no I/O ([`Tactic`]); [`attacker`] is the thin shell that dials
//! and writes. What they see is counted apart ([`HostileFigures`]): no latency or error
//! of theirs ever enters the honest users' histograms and counts, so a profile's
//! thresholds judge what the attacks cost honest users.

pub mod attacker;
mod figures;

pub use figures::{AttackFigures, HostileFigures};

use bytes::{BufMut, Bytes, BytesMut};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;
use sut_wire::protocol::{Frame, MAX_FRAME_LEN};

/// The attacks a hostile user may make.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// Logged in, writes pipelined shakes as fast as the gateway reads them, and reads
    /// the replies.
    Flood,
    /// Starts a large frame before `Hello` and trickles it a byte at a time, never
    /// finishing it.
    SlowlorisBeforeHello,
    /// The same after `Hello`.
    SlowlorisAfterHello,
    /// Logs in, then sends nothing at all (not even heartbeats).
    Silent,
    /// Logs in and writes pipelined shakes, never reading a reply.
    NonReading,
    /// Shakes with a cookie of ~64 KB of garbage.
    OversizedCookie,
    /// The same user logged in on every gateway at once, shaking on all of them at the
    /// same moment with no cookie: a race against the per-user limits.
    Race,
}

impl Attack {
    pub const ALL: [Attack; 7] = [
        Attack::Flood,
        Attack::SlowlorisBeforeHello,
        Attack::SlowlorisAfterHello,
        Attack::Silent,
        Attack::NonReading,
        Attack::OversizedCookie,
        Attack::Race,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Flood => "flood",
            Attack::SlowlorisBeforeHello => "slowloris_before_hello",
            Attack::SlowlorisAfterHello => "slowloris_after_hello",
            Attack::Silent => "silent",
            Attack::NonReading => "non_reading",
            Attack::OversizedCookie => "oversized_cookie",
            Attack::Race => "race",
        }
    }

    /// How this attack uses a connection.
    pub fn tactic(self) -> Tactic {
        Tactic { attack: self }
    }
}

/// `behaviour.hostile` in a profile.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostileBehaviour {
    /// Share of users (0..1, seeded) that attack instead of playing.
    #[serde(default, deserialize_with = "share")]
    pub share: f64,
    /// The attacks, dealt to hostile users by a seeded hash of their id [default: all].
    #[serde(default = "all_attacks", deserialize_with = "attacks")]
    pub attacks: Vec<Attack>,
}

impl Default for HostileBehaviour {
    fn default() -> Self {
        HostileBehaviour {
            share: 0.0,
            attacks: all_attacks(),
        }
    }
}

fn all_attacks() -> Vec<Attack> {
    Attack::ALL.to_vec()
}

fn share<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "hostile.share: the share of hostile users lies in [0, 1], got {p}"
        )));
    }
    Ok(p)
}

fn attacks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Attack>, D::Error> {
    let list = Vec::<Attack>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "hostile.attacks: list at least one attack, or leave it out for all of them",
        ));
    }
    Ok(list)
}

impl HostileBehaviour {
    /// The attack `user` makes, or `None` for a user who plays.
    pub fn attack_of(&self, user: u64, seed: u64) -> Option<Attack> {
        let spread = |salt: u32| sut_core::spread::spread(user ^ seed.rotate_left(salt));
        if self.share <= 0.0 || self.attacks.is_empty() {
            return None;
        }
        if spread(29) % 1_000_000 >= (self.share * 1_000_000.0) as u64 {
            return None;
        }
        Some(self.attacks[(spread(43) % self.attacks.len() as u64) as usize])
    }
}

/// Bytes a frame-trickling attacker claims its frame has (it never sends them all).
pub const TRICKLE_CLAIM: usize = 60_000;
/// Bytes of the claimed frame sent at once, before the trickle.
pub const TRICKLE_FIRST: usize = 30_000;
/// Pipelined shakes per write of a flood.
pub const FLOOD_FRAMES: usize = 16;
/// A cookie's size in the oversized-cookie attack (fits a frame, far past the limit).
pub const BIG_COOKIE: usize = 65_000;

/// What one attack writes on a connection, with no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tactic {
    pub attack: Attack,
}

impl Tactic {
    /// Whether the connection logs in first.
    pub fn hello(self) -> bool {
        !matches!(self.attack, Attack::SlowlorisBeforeHello)
    }

    /// Whether it reads what the gateway sends.
    pub fn reads(self) -> bool {
        !matches!(self.attack, Attack::NonReading)
    }

    /// Whether the user holds a connection to every gateway (else to one).
    pub fn every_gateway(self) -> bool {
        matches!(self.attack, Attack::Race)
    }

    /// Time between writes; `shake_every` is the profile's shake interval.
    pub fn period(self, shake_every: Duration) -> Duration {
        match self.attack {
            Attack::Flood | Attack::NonReading => Duration::from_millis(10),
            Attack::SlowlorisBeforeHello | Attack::SlowlorisAfterHello => Duration::from_secs(2),
            Attack::Silent => Duration::from_secs(3600),
            Attack::OversizedCookie | Attack::Race => shake_every.max(Duration::from_millis(100)),
        }
    }

    /// The bytes of the `k`-th write after connecting (and logging in), with the number
    /// of whole frames in them; `None` when it writes nothing more.
    pub fn write(self, k: u64) -> Option<(Bytes, u64)> {
        match self.attack {
            Attack::Flood | Attack::NonReading => {
                let mut b = BytesMut::new();
                for _ in 0..FLOOD_FRAMES {
                    put_frame(
                        &mut b,
                        Frame::Shake {
                            cookie: Bytes::new(),
                        },
                    );
                }
                Some((b.freeze(), FLOOD_FRAMES as u64))
            }
            Attack::SlowlorisBeforeHello | Attack::SlowlorisAfterHello => {
                if k == 0 {
                    let mut b = BytesMut::with_capacity(4 + TRICKLE_FIRST);
                    b.put_u32(TRICKLE_CLAIM as u32);
                    b.put_bytes(0x5a, TRICKLE_FIRST);
                    Some((b.freeze(), 0))
                } else if TRICKLE_FIRST as u64 + k < TRICKLE_CLAIM as u64 {
                    Some((Bytes::from_static(&[0x5a]), 0))
                } else {
                    None
                }
            }
            Attack::Silent => None,
            Attack::OversizedCookie => {
                let mut b = BytesMut::new();
                put_frame(
                    &mut b,
                    Frame::Shake {
                        cookie: Bytes::from(vec![0xa5; BIG_COOKIE]),
                    },
                );
                Some((b.freeze(), 1))
            }
            Attack::Race => {
                let mut b = BytesMut::new();
                put_frame(
                    &mut b,
                    Frame::Shake {
                        cookie: Bytes::new(),
                    },
                );
                Some((b.freeze(), 1))
            }
        }
    }
}

/// Appends one length-prefixed frame.
pub fn put_frame(b: &mut BytesMut, frame: Frame) {
    let mut payload = BytesMut::new();
    frame.encode_payload(&mut payload);
    debug_assert!(payload.len() <= MAX_FRAME_LEN);
    b.put_u32(payload.len() as u32);
    b.extend_from_slice(&payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 4 {
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + n {
                break;
            }
            out.push(Frame::decode_payload(&rest[4..4 + n]).unwrap());
            rest = &rest[4 + n..];
        }
        out
    }

    #[test]
    fn hostile_users_are_the_share_asked_and_get_every_attack() {
        let h = HostileBehaviour {
            share: 0.1,
            ..HostileBehaviour::default()
        };
        let mut by = BTreeMap::new();
        for u in 0..20_000 {
            if let Some(a) = h.attack_of(u, 7) {
                *by.entry(a).or_insert(0) += 1;
            }
        }
        let total: u64 = by.values().sum();
        assert!((1_800..2_200).contains(&total), "{total}");
        assert_eq!(by.len(), Attack::ALL.len(), "{by:?}");
        assert_eq!(HostileBehaviour::default().attack_of(1, 7), None);
    }

    #[test]
    fn a_flood_is_whole_pipelined_shakes() {
        let (b, n) = Attack::Flood.tactic().write(3).unwrap();
        let f = frames(&b);
        assert_eq!(f.len() as u64, n);
        assert!(f.iter().all(|f| matches!(f, Frame::Shake { .. })));
    }

    #[test]
    fn a_trickled_frame_is_never_finished() {
        let t = Attack::SlowlorisAfterHello.tactic();
        let mut sent = Vec::new();
        let mut k = 0;
        while let Some((b, n)) = t.write(k) {
            assert_eq!(n, 0);
            sent.extend_from_slice(&b);
            k += 1;
        }
        assert_eq!(&sent[..4], &(TRICKLE_CLAIM as u32).to_be_bytes());
        assert!(sent.len() - 4 < TRICKLE_CLAIM, "one byte short, for ever");
        assert!(frames(&sent).is_empty());
        assert!(!Attack::SlowlorisBeforeHello.tactic().hello());
    }

    #[test]
    fn an_oversized_cookie_fits_a_frame_but_not_the_cookie_limit() {
        let (b, _) = Attack::OversizedCookie.tactic().write(0).unwrap();
        assert!(b.len() - 4 <= MAX_FRAME_LEN);
        match &frames(&b)[..] {
            [Frame::Shake { cookie }] => {
                assert!(cookie.len() > sut_wire::cookie::MAX_COOKIE_LEN)
            }
            other => panic!("{other:?}"),
        }
    }
}
