//! The run manifest `sut up` writes into its data directory once every part listens:
//! what runs where, and what the audit needs to judge the run (timeline, gateway count,
//! show start). Load generators read it to find their targets.

use crate::timeline::Timeline;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub gateways: u16,
    pub seed: u64,
    pub show_start_ms: i64,
    pub timeline: Timeline,
    pub gateway_addrs: Vec<String>,
    pub envelope_addr: String,
    pub payment_addr: String,
    /// `/metrics` address of every process, by job name.
    pub metrics: Vec<(String, String)>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {message}")]
    Parse { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

impl Manifest {
    pub fn load(data: &Path) -> Result<Manifest, ManifestError> {
        let p = path(data);
        let text = std::fs::read_to_string(&p).map_err(|source| ManifestError::Read {
            path: p.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ManifestError::Parse {
            path: p.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Writes atomically (temp file, then rename), so a reader never sees half of it.
    pub fn save(&self, data: &Path) -> Result<(), ManifestError> {
        let p = path(data);
        write_atomic(&p, &serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

pub fn write_atomic(p: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let werr = |source| ManifestError::Write {
        path: p.display().to_string(),
        source,
    };
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(werr)?;
    std::fs::rename(&tmp, p).map_err(werr)
}
