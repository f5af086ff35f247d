//! A version of the show's schedule, as an operator signs it and every gateway checks it
//! (seed mechanism 5: the programme changes live).
//!
//! Each version carries the **whole** timeline, not a delta: a gateway that missed
//! versions 3 and 4 takes 5 as it is, and any channel may deliver versions late,
//! twice or out of order without harm (a gateway keeps the highest it has checked).
//!
//! Signed with Ed25519 (`ring`): the operator's private key (`operator.key`, PKCS#8)
//! stays with the operator's tool; gateways hold only the public key
//! (`operator.pub`, 32 bytes), so no gateway can forge a version.
//!
//! On the wire and on disk a signed version is JSON:
//! `{"body": "<the Schedule as JSON text>", "signature": "<hex>"}`; the signature
//! covers `shake-timeline\0` followed by the body's bytes exactly as carried.

use crate::timeline::{Timeline, TimelineError};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Domain tag: a signature over anything else never verifies as a schedule.
const TAG: &[u8] = b"shake-timeline\0";
/// The largest signed version accepted, in bytes: a timeline of hundreds of rounds.
pub const MAX_SIGNED_LEN: usize = 256 * 1024;

/// One version of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Monotonic: a gateway applies only a version above the one it holds.
    pub version: u64,
    /// When the operator signed it (Unix ms): convergence is measured from here.
    pub signed_unix_ms: i64,
    /// What changed, in the operator's words (`move round 2 to 40s`).
    pub change: String,
    /// Correction of the show clock, in ms, added to every gateway's show time: the
    /// countdown corrected during the show.
    pub clock_offset_ms: i64,
    pub timeline: Timeline,
}

/// A schedule with its signature, as channels carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSchedule {
    pub body: String,
    pub signature: String,
}

#[derive(Debug, Error)]
pub enum ScheduleError {
    #[error("the signature does not verify under the operator's public key")]
    BadSignature,
    #[error("{0} bytes is larger than a signed schedule may be ({MAX_SIGNED_LEN})")]
    TooLarge(usize),
    #[error("not a signed schedule: {0}")]
    Malformed(String),
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error("operator key {path}: {message}")]
    Key { path: String, message: String },
}

/// The operator's signing key.
pub struct OperatorKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorKey(..)")
    }
}

/// The public half, which gateways and config services hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPublic([u8; 32]);

impl OperatorKey {
    /// A new key, as PKCS#8 bytes (what `operator.key` holds).
    pub fn generate_pkcs8() -> Result<Vec<u8>, ScheduleError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| ScheduleError::Key {
                path: String::new(),
                message: "the system's random source failed".into(),
            })
    }

    /// The key a PKCS#8 file holds; `path` names it in errors.
    pub fn from_pkcs8(bytes: &[u8], path: &str) -> Result<OperatorKey, ScheduleError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| OperatorKey { pair })
            .map_err(|e| ScheduleError::Key {
                path: path.to_string(),
                message: format!("not an Ed25519 PKCS#8 key ({e}); delete it and operator.pub to have a new pair made"),
            })
    }

    pub fn public(&self) -> OperatorPublic {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        OperatorPublic(pk)
    }

    /// Signs a schedule.
    pub fn sign(&self, schedule: &Schedule) -> SignedSchedule {
        let body = serde_json::to_string(schedule).unwrap_or_default();
        SignedSchedule {
            signature: self.sign_tagged(TAG, &body),
            body,
        }
    }

    /// The hex signature over `tag` followed by `body`: each signed kind has its own
    /// tag, so a signature over one never verifies as another.
    pub(crate) fn sign_tagged(&self, tag: &[u8], body: &str) -> String {
        let mut msg = tag.to_vec();
        msg.extend_from_slice(body.as_bytes());
        hex::encode(self.pair.sign(&msg).as_ref())
    }
}

impl OperatorPublic {
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<OperatorPublic, ScheduleError> {
        let pk: [u8; 32] = bytes.try_into().map_err(|_| ScheduleError::Key {
            path: path.to_string(),
            message: format!(
                "holds {} bytes; an Ed25519 public key is 32 (delete it and operator.key to have a new pair made)",
                bytes.len()
            ),
        })?;
        Ok(OperatorPublic(pk))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks the signature, then the schedule itself (a signed but invalid timeline is
    /// refused as well).
    pub fn verify(&self, signed: &SignedSchedule) -> Result<Schedule, ScheduleError> {
        let len = signed.body.len() + signed.signature.len();
        if len > MAX_SIGNED_LEN {
            return Err(ScheduleError::TooLarge(len));
        }
        if !self.verify_tagged(TAG, &signed.body, &signed.signature) {
            return Err(ScheduleError::BadSignature);
        }
        let schedule: Schedule = serde_json::from_str(&signed.body)
            .map_err(|e| ScheduleError::Malformed(e.to_string()))?;
        // Checks the timeline as a file would be checked.
        Timeline::parse(&schedule.timeline.to_yaml(), "the signed schedule")?;
        Ok(schedule)
    }
}

impl OperatorPublic {
    /// Whether `signature` (hex) signs `tag` followed by `body`.
    pub(crate) fn verify_tagged(&self, tag: &[u8], body: &str, signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        let mut msg = tag.to_vec();
        msg.extend_from_slice(body.as_bytes());
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&msg, &sig)
            .is_ok()
    }
}

impl SignedSchedule {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a signed version's JSON (not yet verified).
    pub fn from_json(bytes: &[u8]) -> Result<SignedSchedule, ScheduleError> {
        if bytes.len() > MAX_SIGNED_LEN {
            return Err(ScheduleError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| ScheduleError::Malformed(e.to_string()))
    }
}

/// One version as a gateway applied it: a line of its `gateway-N.timeline.jsonl` in
/// the data directory, which a run's report reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub gateway: u16,
    pub version: u64,
    pub change: String,
    /// The channel that brought it first (`push`, `pull`, `gossip`).
    pub channel: String,
    pub signed_unix_ms: i64,
    pub applied_unix_ms: i64,
    /// Shakes this gateway decided between the signing and the applying: on a stale
    /// version.
    pub stale_shakes: u64,
}

/// Where gateway `gateway` records the versions it applied.
pub fn applied_log(data: &std::path::Path, gateway: u16) -> std::path::PathBuf {
    data.join(format!("gateway-{gateway}.timeline.jsonl"))
}

/// Every gateway's applied versions (a missing or torn line: skipped).
pub fn read_applied(data: &std::path::Path, gateways: u16) -> Vec<Applied> {
    (0..gateways)
        .flat_map(|g| {
            std::fs::read_to_string(applied_log(data, g))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Applied>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where the operator's tool records every signed version (`v000002.json`, ...).
pub fn versions_dir(data: &std::path::Path) -> std::path::PathBuf {
    data.join("timeline")
}

/// The version number a versioned file (`v000002.json`) holds, by its name.
pub fn version_number(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
}

/// The file of version `version` in a directory of versioned files.
pub fn numbered(dir: &std::path::Path, version: u64) -> std::path::PathBuf {
    dir.join(format!("v{version:06}.json"))
}

/// The version numbers of the versioned files in `dir`, ascending (none when it has
/// none, or does not exist).
pub fn numbers_in(dir: &std::path::Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| version_number(&e.file_name().to_string_lossy()))
        .collect();
    out.sort_unstable();
    out
}

/// Where version `version` is recorded in `data`.
pub fn version_path(data: &std::path::Path, version: u64) -> std::path::PathBuf {
    numbered(&versions_dir(data), version)
}

/// The version numbers recorded in `data`, ascending (none when it has no versions).
pub fn recorded_numbers(data: &std::path::Path) -> Vec<u64> {
    numbers_in(&versions_dir(data))
}

/// Every version recorded in `data`, unverified (a report reads what its own run
/// wrote; gateways and the audit verify), by number.
pub fn recorded_versions(data: &std::path::Path) -> Vec<Schedule> {
    recorded_numbers(data)
        .into_iter()
        .filter_map(|v| std::fs::read(version_path(data, v)).ok())
        .filter_map(|b| SignedSchedule::from_json(&b).ok())
        .filter_map(|s| serde_json::from_str::<Schedule>(&s.body).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(version: u64) -> Schedule {
        let timeline = Timeline::parse(
            "rounds:\n  - { id: 1, start: 2s, duration: 10s, envelopes: 100, rate: 20, amount_cents: [1, 500], sponsors: [1] }\n",
            "t",
        )
        .unwrap();
        Schedule {
            version,
            signed_unix_ms: 1_000,
            change: "budget round 1 to 100".into(),
            clock_offset_ms: 0,
            timeline,
        }
    }

    fn key() -> OperatorKey {
        OperatorKey::from_pkcs8(&OperatorKey::generate_pkcs8().unwrap(), "k").unwrap()
    }

    #[test]
    fn signed_versions_verify_and_round_trip() {
        let k = key();
        let signed = k.sign(&schedule(2));
        let back = SignedSchedule::from_json(&signed.to_json()).unwrap();
        assert_eq!(k.public().verify(&back).unwrap(), schedule(2));
    }

    #[test]
    fn tampered_or_foreign_versions_are_refused() {
        let k = key();
        let mut signed = k.sign(&schedule(2));
        signed.body = signed.body.replace("\"version\":2", "\"version\":9");
        let bad =
            |s: &SignedSchedule| matches!(k.public().verify(s), Err(ScheduleError::BadSignature));
        assert!(bad(&signed));
        assert!(bad(&key().sign(&schedule(2))), "another operator's key");
        let mut garbage = k.sign(&schedule(2));
        garbage.signature = "zz".into();
        assert!(bad(&garbage));
    }

    #[test]
    fn a_signed_but_invalid_timeline_is_refused() {
        let k = key();
        let mut s = schedule(2);
        s.timeline.rounds[0].rate = -1.0;
        assert!(matches!(
            k.public().verify(&k.sign(&s)),
            Err(ScheduleError::Timeline(_))
        ));
    }
}
