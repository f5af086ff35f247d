//! Seed shard files: where each round's shard for each gateway lives under a seed
//! directory, written whole (temp file, then rename) and read back checked.

use std::path::{Path, PathBuf};
use sut_core::seed_shard::{generate, generate_batch, SeedEnvelope, SeedShard, ShardError};
use sut_wire::timeline::{Round, Timeline};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeedFileError {
    #[error("cannot read seed shard {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write seed shard {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// Where a round's shard for a gateway lives under a seed directory.
pub fn shard_path(dir: &Path, round: u32, gateway: u16) -> PathBuf {
    dir.join(format!("round-{round}"))
        .join(format!("gateway-{gateway}.shard"))
}

/// Where a later batch of a round's envelopes (`from..to`, a live budget raise or a
/// round added during the show) lives for a gateway.
pub fn batch_path(dir: &Path, round: u32, gateway: u16, from: u64, to: u64) -> PathBuf {
    dir.join(format!("round-{round}"))
        .join(format!("gateway-{gateway}.{from}-{to}.shard"))
}

/// The batches of a round under `dir`, as (from, to), in order.
fn batches(dir: &Path, round: u32) -> Vec<(u64, u64)> {
    let Ok(entries) = std::fs::read_dir(dir.join(format!("round-{round}"))) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, u64)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let range = name.strip_prefix("gateway-0.")?.strip_suffix(".shard")?;
            let (from, to) = range.split_once('-')?;
            Some((from.parse().ok()?, to.parse().ok()?))
        })
        .collect();
    out.sort_unstable();
    out
}

/// How many of a round's envelopes are seeded: `base` (its budget in the timeline the
/// show started with, none when it was not in it), then every batch that follows on.
pub fn seeded_to(dir: &Path, round: u32, base: Option<u64>) -> u64 {
    let mut to = base.unwrap_or(0);
    for (from, end) in batches(dir, round) {
        if from == to {
            to = end;
        }
    }
    to
}

/// Seeds envelopes `from..to` of a round for every gateway (before the version that
/// raises its budget to `to` is signed). Returns the shards written.
pub fn write_batch(
    round: &Round,
    from: u64,
    to: u64,
    gateways: u16,
    seed: u64,
    dir: &Path,
) -> Result<usize, SeedFileError> {
    let shards = generate_batch(round, from, to, gateways, seed);
    for shard in &shards {
        save(shard, &batch_path(dir, round.id, shard.gateway, from, to))?;
    }
    Ok(shards.len())
}

/// A gateway's envelopes of a round from global index `from` up to `upto`, batch by
/// batch, and how far they reach (short of `upto` when a batch is missing).
pub fn load_batches(
    dir: &Path,
    round: u32,
    gateway: u16,
    from: u64,
    upto: u64,
) -> Result<(Vec<SeedEnvelope>, u64), SeedFileError> {
    let mut envelopes = Vec::new();
    let mut at = from;
    for (start, end) in batches(dir, round) {
        if start == at && at < upto {
            let path = batch_path(dir, round, gateway, start, end);
            envelopes.extend(load(&path, round, gateway)?.envelopes);
            at = end;
        }
    }
    Ok((envelopes, at))
}

/// A gateway's whole shard of a round, up to `upto` envelopes over all gateways: the
/// start's shard (when the round was in the first timeline, `base` its budget there),
/// then the batches after it. Returns it and how far it reaches.
pub fn load_round(
    dir: &Path,
    round: u32,
    gateway: u16,
    base: Option<u64>,
    upto: u64,
) -> Result<(SeedShard, u64), SeedFileError> {
    let mut shard = match base {
        Some(_) => load(&shard_path(dir, round, gateway), round, gateway)?,
        None => SeedShard {
            round,
            gateway,
            gateways: 0,
            envelopes: Vec::new(),
        },
    };
    let (more, reach) = load_batches(dir, round, gateway, base.unwrap_or(0), upto)?;
    shard.envelopes.extend(more);
    Ok((shard, reach))
}

/// Generates and writes every round's shards under `dir`.
pub fn write_all(
    timeline: &Timeline,
    gateways: u16,
    seed: u64,
    dir: &Path,
) -> Result<usize, SeedFileError> {
    let mut written = 0;
    for round in &timeline.rounds {
        for shard in generate(round, gateways, seed) {
            save(&shard, &shard_path(dir, shard.round, shard.gateway))?;
            written += 1;
        }
    }
    Ok(written)
}

/// Writes a shard; a crash never leaves half of one under the real name.
pub fn save(shard: &SeedShard, path: &Path) -> Result<(), SeedFileError> {
    let werr = |source| SeedFileError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let tmp = path.with_extension("shard.tmp");
    std::fs::write(&tmp, shard.encode()).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Loads a shard and checks it is the one expected.
pub fn load(path: &Path, round: u32, gateway: u16) -> Result<SeedShard, SeedFileError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SeedFileError::Read {
        path: name.clone(),
        source,
    })?;
    Ok(SeedShard::decode_for(&bytes, &name, round, gateway)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use sut_wire::timeline::Round;

    fn round(id: u32, envelopes: u64) -> Round {
        Round {
            id,
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
    fn load_checks_identity() {
        let round = round(3, 10);
        let dir = tempfile::tempdir().unwrap();
        let shard = generate(&round, 2, 1).remove(1);
        let p = shard_path(dir.path(), 3, 1);
        save(&shard, &p).unwrap();
        assert_eq!(load(&p, 3, 1).unwrap(), shard);
        assert!(matches!(
            load(&p, 3, 0),
            Err(SeedFileError::Shard(ShardError::Mismatch { .. }))
        ));
    }

    #[test]
    fn batches_chain_on_after_the_first_shard() {
        let mut round = round(4, 10);
        let dir = tempfile::tempdir().unwrap();
        let t = Timeline::parse("rounds: []\n", "t").unwrap();
        write_all(
            &Timeline {
                rounds: vec![round.clone()],
                ..t
            },
            2,
            1,
            dir.path(),
        )
        .unwrap();
        assert_eq!(seeded_to(dir.path(), 4, Some(10)), 10);
        round.envelopes = 30;
        write_batch(&round, 10, 30, 2, 1, dir.path()).unwrap();
        write_batch(&round, 30, 34, 2, 1, dir.path()).unwrap();
        assert_eq!(seeded_to(dir.path(), 4, Some(10)), 34);
        let (shard, reach) = load_round(dir.path(), 4, 1, Some(10), 30).unwrap();
        assert_eq!((shard.envelopes.len(), reach), (5 + 10, 30));
        let (all, reach) = load_round(dir.path(), 4, 1, Some(10), 40).unwrap();
        assert_eq!(
            (all.envelopes.len(), reach),
            (5 + 10 + 2, 34),
            "short of a missing batch"
        );
    }
}
