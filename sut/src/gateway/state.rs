//! The gateway's state shared by its sessions, lease keeper, load watcher and agent
//! tasks.

use super::batcher::Batcher;
use super::config::SessionLimits;
use super::metrics::GatewayMetrics;
use super::split::agent::SplitAgent;
use super::store::{GatewayOp, GatewayResult};
use crate::committer::GroupCommitter;
use crate::metrics::labels;
use shellkit::clock::unix_ms;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sut_core::admission::Admission;
use sut_core::client_rate::ClientRates;
use sut_core::limit_view::Issued;
use sut_core::passthrough::PassThroughQueue;
use sut_core::shake::ShakeCore;
use sut_core::shedding::Throttle;
use sut_wire::protocol::ErrorCode;
use sut_wire::signing::SigningKey;
use tokio::sync::{watch, Notify};

/// State shared by the gateway's sessions, lease keeper and forwarder.
pub(crate) struct Gateway {
    pub id: u16,
    pub core: Mutex<ShakeCore>,
    pub queue: Arc<Mutex<PassThroughQueue>>,
    pub queue_notify: Notify,
    pub committer: GroupCommitter<GatewayOp, GatewayResult>,
    pub key: SigningKey,
    pub auth: SigningKey,
    pub show_start_ms: i64,
    pub gateways: u16,
    /// The live timeline: the schedule version decided on, and its channels' state.
    pub schedule: super::live_schedule::LiveSchedule,
    /// Lease ends the store held at start, by round: a round loaded later (a new
    /// version names it) resumes after its own.
    pub leases_at_start: std::collections::HashMap<u32, u64>,
    /// The other gateways, once gossip knows them.
    pub peers: std::sync::OnceLock<super::peers::Peers>,
    pub heartbeat_timeout: Duration,
    pub metrics: GatewayMetrics,
    pub shutdown: watch::Receiver<bool>,
    /// Sessions still running: on shutdown the forwarder waits for them, since a session
    /// may be finishing an open that still has to join the queue.
    pub sessions: AtomicUsize,
    /// Frames handled so far (the load watcher's measure of how busy the gateway is).
    pub frames: AtomicU64,
    /// The throttle tier every reply carries, set by the load watcher.
    pub tier: AtomicU8,
    /// How many shakes a second get a decision: set by the load watcher while the loop
    /// is overloaded, asked by every shake nothing else sheds.
    pub admission: Mutex<Admission>,
    /// When the load watcher's next probe is due, in µs on the gateway's own clock
    /// ([`Gateway::started`]); `u64::MAX` while it is not probing (tiers off). A probe
    /// overdue means the loop is behind by that much.
    pub probe_due_us: AtomicU64,
    /// Shakes shed because the loop was behind (each waited at least
    /// `sut_core::throttle_tier::STALE_AFTER`): the load watcher counts them as queueing.
    pub stale: AtomicU64,
    pub top_tier: u8,
    /// Shake interval per tier, in ms, as told to clients.
    pub tier_intervals_ms: Vec<u32>,
    pub shake_cost: Duration,
    /// Issuance records not yet published to the shared limit view.
    pub to_publish: Mutex<Vec<Issued>>,
    /// Shares and grabs on their way to the envelope backend.
    pub split: SplitAgent,
    /// Wins on their way to their users' owner to be reserved, when limits are strict.
    pub reserve: Batcher<Issued>,
    pub strict_limits: bool,
    /// What one connection may cost.
    pub limits: SessionLimits,
    /// Every user's frame allowance, on the gateway's own clock ([`Gateway::started`]).
    pub client_rates: ClientRates,
    /// Bytes of unfinished frames all sessions hold now.
    pub partial_bytes: AtomicUsize,
    pub started: Instant,
}

impl Gateway {
    /// The throttle now: the tier to tell clients, the shake interval it asks for and
    /// how far the loop is behind.
    pub fn throttle(&self) -> Throttle {
        Throttle::at(
            self.tier.load(Ordering::Acquire),
            self.top_tier,
            &self.tier_intervals_ms,
        )
        .behind(self.behind())
    }

    /// Whether admission lets one more shake be decided now (it reads the clock only
    /// while it holds a rate).
    pub fn admitted(&self) -> bool {
        self.admission
            .lock()
            .map_or(true, |mut a| a.admit(|| self.started.elapsed()))
    }

    /// How far the loop is behind now: how overdue the load watcher's probe is.
    pub fn behind(&self) -> Duration {
        let due = self.probe_due_us.load(Ordering::Acquire);
        let now = self.started.elapsed().as_micros() as u64;
        Duration::from_micros(now.saturating_sub(due))
    }

    /// Milliseconds since the show's start (negative before it), on the show clock
    /// as the schedule version held corrects it.
    pub fn show_ms(&self) -> i64 {
        unix_ms() - self.show_start_ms + self.schedule.clock_offset_ms.load(Ordering::Acquire)
    }

    /// The schedule version held and the countdown it gives at `show_ms`, for replies
    /// made without the core.
    pub fn countdown(&self, show_ms: i64) -> (u64, u32) {
        self.schedule.countdown(show_ms)
    }

    /// Counts a connection bound that was hit.
    pub fn limit_hit(&self, limit: &str) {
        self.metrics
            .limits
            .get_or_create(&labels(&[("limit", limit)]))
            .inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.metrics
            .errors
            .get_or_create(&labels(&[("code", code.name())]))
            .inc();
    }
}
