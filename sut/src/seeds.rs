//! Seed shard files: where each round's shard for each gateway lives under a seed
//! directory, written whole (temp file, then rename) and read back checked.

use std::path::{Path, PathBuf};
use sut_core::seed_shard::{generate, SeedShard, ShardError};
use sut_wire::timeline::Timeline;
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

    #[test]
    fn load_checks_identity() {
        let round = Round {
            id: 3,
            start: Duration::ZERO,
            duration: Duration::from_secs(1),
            envelopes: 10,
            rate: 1.0,
            amount_cents: [1, 1000],
            sponsors: vec![1, 2, 3],
            resources: vec![],
        };
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
}
