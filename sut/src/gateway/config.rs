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
    /// TCP address; QUIC listens on the UDP port of the same number.
    pub listen: String,
    /// The QUIC identity (key and certificate, PEM; see [`crate::certs`]).
    pub quic_identity: PathBuf,
    pub metrics: Option<String>,
    pub data: PathBuf,
    pub seeds: PathBuf,
    pub timeline: Timeline,
    pub key: SigningKey,
    pub auth: SigningKey,
    /// The deployment's RPC key, proved to the envelope backend on every connection.
    pub rpc_key: SigningKey,
    /// Unix time (ms) at which the show starts; rounds count from here.
    pub show_start_ms: i64,
    pub envelope_addr: String,
    pub heartbeat_timeout: Duration,
    pub drain_timeout: Duration,
    /// Deliveries of the forwarder at most one per this long (zero: unpaced), so that
    /// opens arriving one at a time share the peer's durable writes.
    pub deliver_every: Duration,
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
    /// How long a share or grab waits for the envelope backend before it is answered
    /// `Unavailable` (worth a retry): below any client's request timeout.
    pub backend_deadline: Duration,
    /// What one connection may cost.
    pub limits: SessionLimits,
    /// Reserve every win at the user's owner before issuing it, so no interleaving of
    /// gateways gives a user more than the limits (off: the three layers alone, to
    /// measure what strictness costs).
    pub strict_limits: bool,
    /// The operator's public key: only versions it signed change the schedule.
    pub operator: sut_wire::schedule::OperatorPublic,
    /// Where the live timeline's channels reach.
    pub channels: ChannelConfig,
}

/// What one client connection may cost the gateway, in bytes and time. Each bound
/// closes the connection with its own code (or, for the frame rate, stops reading it
/// for a moment) and is counted in `sut_gateway_connection_limits_total{limit}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLimits {
    /// From connect to a valid `Hello` (`hello_timeout`).
    pub hello_timeout: Duration,
    /// From a frame's first byte to its last (`frame_timeout`): a client trickling a
    /// frame in holds its bytes no longer than this.
    pub frame_timeout: Duration,
    /// For a reply the client is not reading (`write_timeout`).
    pub write_timeout: Duration,
    /// Frames a second each user may have handled, over all their connections, with
    /// bursts of `frame_burst`; past it the connection is not read until the next is due.
    pub frames_per_second: u32,
    pub frame_burst: u32,
    /// Bytes of unfinished frames all connections together may hold; a connection
    /// that grows past it is closed with `Overloaded` (`partial_budget`). One
    /// connection holds at most one frame (64 KiB) and one read (16 KiB).
    pub partial_budget: usize,
    /// The kernel's send buffer per connection (0: the kernel's own sizing), which
    /// bounds what a client that does not read pins in the kernel.
    pub send_buffer: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            hello_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            frames_per_second: 20,
            frame_burst: 40,
            partial_budget: 64 << 20,
            send_buffer: 64 << 10,
        }
    }
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Shard(#[from] SeedFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
    #[error("cannot start the gateway's durable lane (a thread): {0}")]
    Lane(std::io::Error),
}

/// Where the channels reach: the config services, the data directory, the peers.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub config_addrs: Vec<String>,
    pub data: PathBuf,
    /// This gateway's peer address (gossip and channel faults), if it takes part.
    pub gossip: Option<String>,
    pub rpc_key: SigningKey,
}
