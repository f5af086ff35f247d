//! What a gateway is started with, and how starting it fails.

use crate::seeds::SeedFileError;
use crate::store::StoreError;
use std::path::PathBuf;
use std::time::Duration;
use sut_wire::signing::SigningKey;
use sut_wire::timeline::Timeline;
use thiserror::Error;

/// Everything a gateway needs to start.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub id: u16,
    pub gateways: u16,
    pub listen: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    pub seeds: PathBuf,
    pub timeline: Timeline,
    pub key: SigningKey,
    pub auth: SigningKey,
    /// Unix time (ms) at which the show starts; rounds count from here.
    pub show_start_ms: i64,
    pub envelope_addr: String,
    pub heartbeat_timeout: Duration,
    pub drain_timeout: Duration,
    /// Connections held at most; more are turned away with `GatewayFull`.
    pub max_connections: usize,
    /// Whether the gateway raises its throttle tier under load (off: always tier 0, to
    /// show what the tiers save).
    pub tiers: bool,
    /// CPU time each shake decision burns on top of its real work: an emulated heavier
    /// decision, so that a test or benchmark can give a gateway a small capacity.
    pub shake_cost: Duration,
    /// Benchmark: synthetic opens to put through the open path at start-up.
    pub bench_opens: u64,
    /// How often the agent syncs the shared limit view with the envelope backend.
    pub sync_interval: Duration,
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Shard(#[from] SeedFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}
