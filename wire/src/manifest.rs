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
    /// The config services (the live timeline's push source), when the system runs any.
    #[serde(default)]
    pub config_addrs: Vec<String>,
    /// Each gateway's peer address (gossip of the live timeline), by gateway id.
    #[serde(default)]
    pub gossip_addrs: Vec<String>,
    /// `/metrics` address of every process, by job name.
    pub metrics: Vec<(String, String)>,
    /// Resource servers' HTTP addresses (pre-push), when the system runs any.
    #[serde(default)]
    pub resource_addrs: Vec<String>,
}

/// A manifest's text is not a manifest.
#[derive(Debug, Error)]
#[error("{path} is not a valid manifest: {message}")]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

/// The manifest's place in a data directory.
pub fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

impl Manifest {
    /// Parses a manifest's text; `path` names its file in the error.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        serde_json::from_str(text).map_err(|e| ManifestError {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
