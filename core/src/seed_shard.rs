//! Envelope seed files (seed mechanism 2): every envelope of a round is generated ahead of
//! time, split into one shard per gateway with disjoint ids, and each gateway issues only
//! from its own shard, so no two gateways can ever issue the same envelope.
//!
//! File layout (big-endian): magic `SEEDSHRD`, version u8, round u32, gateway u16,
//! gateways u16, count u64, then `count` records of (id u64, sponsor u16, amount_cents u32),
//! then the SHA-256 of everything before it. The checksum is verified on load, so a
//! corrupt or truncated shard stops the gateway instead of issuing garbage.

use bytes::{Buf, BufMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use sut_wire::timeline::Round;
use thiserror::Error;

const MAGIC: &[u8; 8] = b"SEEDSHRD";
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 4 + 2 + 2 + 8;
const RECORD_LEN: usize = 8 + 2 + 4;
const SUM_LEN: usize = 32;

/// One pre-generated envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedEnvelope {
    pub id: u64,
    pub sponsor: u16,
    pub amount_cents: u32,
}

/// One gateway's share of one round's envelopes, in issuance order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedShard {
    pub round: u32,
    pub gateway: u16,
    pub gateways: u16,
    pub envelopes: Vec<SeedEnvelope>,
}

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("seed shard {path} is corrupt ({what}); regenerate it with `sut seed`")]
    Corrupt { path: String, what: String },
    #[error(
        "seed shard {path} is for {found}, expected {expected}; regenerate it with `sut seed`"
    )]
    Mismatch {
        path: String,
        found: String,
        expected: String,
    },
}

/// Envelope ids carry their round in the high bits so ids of all rounds are disjoint.
pub fn envelope_id(round: u32, index: u64) -> u64 {
    ((round as u64) << 40) | index
}

/// Generates a round's envelopes deterministically from `seed` and splits them into
/// `gateways` contiguous, disjoint shards.
pub fn generate(round: &Round, gateways: u16, seed: u64) -> Vec<SeedShard> {
    generate_batch(round, 0, round.envelopes, gateways, seed)
}

/// Generates envelopes `from..to` of a round (a live budget raise adds such a batch
/// to what was seeded), split into `gateways` contiguous, disjoint shards. Ids carry
/// their index, so batches never share an id; batch `0..n` is exactly [`generate`]'s.
pub fn generate_batch(
    round: &Round,
    from: u64,
    to: u64,
    gateways: u16,
    seed: u64,
) -> Vec<SeedShard> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ ((round.id as u64) << 32) ^ from.rotate_left(17));
    let [lo, hi] = round.amount_cents;
    let count = to.saturating_sub(from);
    let all: Vec<SeedEnvelope> = (from..from + count)
        .map(|i| SeedEnvelope {
            id: envelope_id(round.id, i),
            sponsor: round.sponsors[rng.random_range(0..round.sponsors.len())],
            amount_cents: rng.random_range(lo..=hi),
        })
        .collect();
    let n = gateways.max(1) as u64;
    let base = count / n;
    let extra = count % n;
    let mut start = 0usize;
    (0..n)
        .map(|g| {
            let len = (base + u64::from(g < extra)) as usize;
            let shard = SeedShard {
                round: round.id,
                gateway: g as u16,
                gateways: n as u16,
                envelopes: all[start..start + len].to_vec(),
            };
            start += len;
            shard
        })
        .collect()
}

impl SeedShard {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + RECORD_LEN * self.envelopes.len() + SUM_LEN);
        b.put_slice(MAGIC);
        b.put_u8(FORMAT);
        b.put_u32(self.round);
        b.put_u16(self.gateway);
        b.put_u16(self.gateways);
        b.put_u64(self.envelopes.len() as u64);
        for e in &self.envelopes {
            b.put_u64(e.id);
            b.put_u16(e.sponsor);
            b.put_u32(e.amount_cents);
        }
        let sum = Sha256::digest(&b);
        b.put_slice(&sum);
        b
    }

    /// Parses and verifies a shard; `path` only names it in errors.
    pub fn decode(bytes: &[u8], path: &str) -> Result<SeedShard, ShardError> {
        let corrupt = |what: &str| ShardError::Corrupt {
            path: path.to_string(),
            what: what.to_string(),
        };
        if bytes.len() < HEADER_LEN + SUM_LEN {
            return Err(corrupt("shorter than its header"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - SUM_LEN);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = body;
        if &r[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        r.advance(8);
        if r.get_u8() != FORMAT {
            return Err(corrupt("unknown format version"));
        }
        let round = r.get_u32();
        let gateway = r.get_u16();
        let gateways = r.get_u16();
        let count = r.get_u64();
        if count.checked_mul(RECORD_LEN as u64) != Some(r.remaining() as u64) {
            return Err(corrupt("record count does not match length"));
        }
        let envelopes = (0..count)
            .map(|_| SeedEnvelope {
                id: r.get_u64(),
                sponsor: r.get_u16(),
                amount_cents: r.get_u32(),
            })
            .collect();
        Ok(SeedShard {
            round,
            gateway,
            gateways,
            envelopes,
        })
    }

    /// Decodes a shard and checks it is the one expected (`path` names it in errors).
    pub fn decode_for(
        bytes: &[u8],
        path: &str,
        round: u32,
        gateway: u16,
    ) -> Result<SeedShard, ShardError> {
        let shard = Self::decode(bytes, path)?;
        if shard.round != round || shard.gateway != gateway {
            return Err(ShardError::Mismatch {
                path: path.to_string(),
                found: format!("round {} gateway {}", shard.round, shard.gateway),
                expected: format!("round {round} gateway {gateway}"),
            });
        }
        Ok(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    fn round(envelopes: u64) -> Round {
        Round {
            id: 3,
            start: Duration::ZERO,
            duration: Duration::from_secs(1),
            envelopes,
            rate: 1.0,
            amount_cents: [1, 1000],
            sponsors: vec![1, 2, 3],
            resources: vec![],
        }
    }

    #[test]
    fn shards_are_disjoint_complete_and_deterministic() {
        let shards = generate(&round(1001), 4, 7);
        assert_eq!(shards.len(), 4);
        let ids: Vec<u64> = shards
            .iter()
            .flat_map(|s| s.envelopes.iter().map(|e| e.id))
            .collect();
        assert_eq!(ids.len(), 1001);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1001);
        assert_eq!(generate(&round(1001), 4, 7), shards);
        assert_ne!(generate(&round(1001), 4, 8), shards);
        assert!(shards
            .iter()
            .flat_map(|s| &s.envelopes)
            .all(|e| (1..=1000).contains(&e.amount_cents)));
    }

    #[test]
    fn a_batch_adds_new_ids_only() {
        let base: HashSet<u64> = generate(&round(100), 3, 7)
            .iter()
            .flat_map(|s| s.envelopes.iter().map(|e| e.id))
            .collect();
        let more = generate_batch(&round(100), 100, 160, 3, 7);
        let ids: HashSet<u64> = more
            .iter()
            .flat_map(|s| s.envelopes.iter().map(|e| e.id))
            .collect();
        assert_eq!(ids.len(), 60);
        assert!(ids.is_disjoint(&base));
        assert_eq!(
            generate_batch(&round(100), 0, 100, 3, 7),
            generate(&round(100), 3, 7)
        );
    }

    #[test]
    fn corruption_is_detected() {
        let shard = generate(&round(10), 1, 1).remove(0);
        let mut bytes = shard.encode();
        assert_eq!(SeedShard::decode(&bytes, "x").unwrap(), shard);
        bytes[HEADER_LEN + 3] ^= 0x10;
        let e = SeedShard::decode(&bytes, "x.shard")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.shard") && e.contains("checksum"), "{e}");
        assert!(SeedShard::decode(&bytes[..10], "x").is_err());
    }

    #[test]
    fn decode_checks_identity() {
        let shard = generate(&round(10), 2, 1).remove(1);
        let bytes = shard.encode();
        assert_eq!(SeedShard::decode_for(&bytes, "x", 3, 1).unwrap(), shard);
        assert!(matches!(
            SeedShard::decode_for(&bytes, "x", 3, 0),
            Err(ShardError::Mismatch { .. })
        ));
    }
}
