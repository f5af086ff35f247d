//! The gateway (access server): holds the long connections, decides shakes locally and,
//! through its agent, records opens in the pass-through queue and forwards them.

mod bench;
mod forwarder;
mod load;
mod session;
mod split;
pub mod store;
mod sync;

use crate::metrics::{labels, prefill, Counters};
use crate::passthrough::PassThroughQueue;
use crate::protocol::ErrorCode;
use crate::seed_shard::{shard_path, SeedShard, ShardError};
use crate::shake::{Reason, ShakeCore};
use crate::signing::SigningKey;
use crate::store::{GroupCommitter, StoreError};
use crate::timeline::Timeline;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{GatewayOp, GatewayResult};
use thiserror::Error;
use tokio::sync::{watch, Notify};

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
    Shard(#[from] ShardError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}

pub(crate) struct GatewayMetrics {
    pub connections: Gauge,
    /// Sessions that passed Hello, and connections turned away because the gateway was full.
    pub sessions: Counters,
    pub shakes: Counters,
    /// `shakes` resolved once per reason (in [`Reason::ALL`] order): the hot path then
    /// costs one atomic add, no label lookup.
    pub shakes_by_reason: Vec<Counter>,
    pub issued_by_round: HashMap<u32, Counter>,
    pub opens_ok: Counter,
    /// Shakes answered "come back later" at the top tier.
    pub throttled: Counter,
    pub heartbeats: Counter,
    pub issued: Counters,
    pub opens: Counters,
    pub errors: Counters,
    pub queue_depth: Gauge,
    pub forwarded: Counters,
    pub tier: Gauge,
    pub queue_delay: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub admitted: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub cpu: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Envelopes this gateway's seed shard holds for each round: what it may issue.
    pub budget: Family<Vec<(&'static str, String)>, Gauge>,
    /// Users the shared limit view knows, and syncs by result.
    pub view_users: Gauge,
    pub syncs: Counters,
    pub syncs_ok: Counter,
}

/// The counter of `family` for one label value, kept to be bumped without a lookup.
fn resolve(family: &Counters, key: &'static str, value: &str) -> Counter {
    family.get_or_create(&labels(&[(key, value)])).clone()
}

impl GatewayMetrics {
    fn register(registry: &mut Registry, timeline: &Timeline, gateways: u16) -> Self {
        let config_version = timeline.version;
        let shakes = Counters::default();
        let issued = Counters::default();
        let opens = Counters::default();
        let errors = Counters::default();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        prefill(&errors, "code", &codes);
        prefill(
            &opens,
            "result",
            &[
                ErrorCode::TokenForged.name(),
                ErrorCode::TokenNotYours.name(),
                ErrorCode::AlreadyOpened.name(),
                ErrorCode::Unavailable.name(),
            ],
        );
        let sessions = Counters::default();
        prefill(&sessions, "result", &["accepted", "full"]);
        let forwarded = Counters::default();
        prefill(&forwarded, "result", &["acked", "busy", "failed"]);
        let syncs = Counters::default();
        prefill(&syncs, "result", &["ok", "failed"]);
        let rate_limit = Family::<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>::default();
        for r in &timeline.rounds {
            rate_limit
                .get_or_create(&labels(&[("round", &r.id.to_string())]))
                .set(r.rate / f64::from(gateways.max(1)));
        }
        let m = GatewayMetrics {
            connections: Gauge::default(),
            sessions,
            shakes_by_reason: Reason::ALL
                .iter()
                .map(|r| resolve(&shakes, "reason", r.name()))
                .collect(),
            issued_by_round: timeline
                .rounds
                .iter()
                .map(|r| (r.id, resolve(&issued, "round", &r.id.to_string())))
                .collect(),
            opens_ok: resolve(&opens, "result", "ok"),
            throttled: resolve(&shakes, "reason", "throttled"),
            heartbeats: Counter::default(),
            shakes,
            issued,
            opens,
            errors,
            queue_depth: Gauge::default(),
            forwarded,
            tier: Gauge::default(),
            queue_delay: Gauge::default(),
            admitted: Gauge::default(),
            cpu: Gauge::default(),
            budget: Family::default(),
            view_users: Gauge::default(),
            syncs_ok: resolve(&syncs, "result", "ok"),
            syncs,
        };
        let version: Gauge = Gauge::default();
        version.set(config_version as i64);
        registry.register(
            "sut_gateway_connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "sut_gateway_sessions",
            "Connections by how they began: accepted (Hello passed) or full (turned away)",
            m.sessions.clone(),
        );
        registry.register(
            "sut_gateway_shakes",
            "Shakes by outcome reason",
            m.shakes.clone(),
        );
        registry.register(
            "sut_gateway_envelopes_issued",
            "Envelopes issued by round",
            m.issued.clone(),
        );
        registry.register("sut_gateway_opens", "Opens by result", m.opens.clone());
        registry.register(
            "sut_gateway_heartbeats",
            "Heartbeats answered",
            m.heartbeats.clone(),
        );
        registry.register(
            "sut_gateway_errors",
            "Error frames sent, by code",
            m.errors.clone(),
        );
        registry.register(
            "sut_passthrough_queue_depth",
            "Opens waiting for the envelope backend",
            m.queue_depth.clone(),
        );
        registry.register(
            "sut_passthrough_forwarded",
            "Opens acked by the envelope backend, by result",
            m.forwarded.clone(),
        );
        registry.register(
            "sut_gateway_throttle_tier",
            "Throttle tier this gateway assigns",
            m.tier.clone(),
        );
        registry.register(
            "sut_gateway_queue_delay_seconds",
            "Mean time work waited in the event loop over the last window (the load signal)",
            m.queue_delay.clone(),
        );
        registry.register(
            "sut_gateway_admitted_ratio",
            "Share of shakes decided rather than answered come-back-later (admission)",
            m.admitted.clone(),
        );
        registry.register(
            "sut_gateway_cpu_ratio",
            "CPU used, as a share of one core, smoothed (the other load signal)",
            m.cpu.clone(),
        );
        registry.register(
            "sut_gateway_envelope_budget",
            "Envelopes this gateway's seed shard holds for each round (what it may issue)",
            m.budget.clone(),
        );
        registry.register(
            "sut_gateway_issuance_rate_limit",
            "This gateway's share of each round's global issuance rate, envelopes per second",
            rate_limit,
        );
        registry.register(
            "sut_gateway_limit_view_users",
            "Users in the shared limit view (what every gateway issued), as last synced",
            m.view_users.clone(),
        );
        registry.register(
            "sut_gateway_limit_syncs",
            "Syncs of the shared limit view with the envelope backend, by result",
            m.syncs.clone(),
        );
        registry.register(
            "sut_config_version",
            "Timeline config version in force",
            version,
        );
        m
    }
}

/// `sut_passthrough_oldest_age_seconds`, read at scrape time: how long the oldest open
/// has waited for the envelope backend. Depth alone hides a queue that is short but stuck.
#[derive(Debug)]
struct QueueAge {
    queue: Arc<Mutex<PassThroughQueue>>,
    show_start_ms: i64,
}

impl Collector for QueueAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let oldest = self.queue.lock().ok().and_then(|q| q.oldest_ms());
        let age_s = oldest
            .map(|at| (unix_ms() - self.show_start_ms - at).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let e = encoder.encode_descriptor(
            "sut_passthrough_oldest_age_seconds",
            "How long the oldest open in the pass-through queue has waited (0 when empty)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(age_s).encode(e)
    }
}

/// State shared by the gateway's sessions, lease keeper and forwarder.
pub(crate) struct Gateway {
    pub id: u16,
    /// Each round's span in show time (ms), for pacing the lease keeper.
    pub round_spans: Vec<(i64, i64)>,
    pub core: Mutex<ShakeCore>,
    pub queue: Arc<Mutex<PassThroughQueue>>,
    pub queue_notify: Notify,
    pub committer: GroupCommitter<GatewayOp, GatewayResult>,
    pub key: SigningKey,
    pub auth: SigningKey,
    pub show_start_ms: i64,
    pub config_version: u64,
    pub heartbeat_timeout: Duration,
    pub metrics: GatewayMetrics,
    pub shutdown: watch::Receiver<bool>,
    /// Sessions still running: on shutdown the forwarder waits for them, since a session
    /// may be finishing an open that still has to join the queue.
    pub sessions: std::sync::atomic::AtomicUsize,
    /// Frames handled so far (the load watcher's measure of how busy the gateway is).
    pub frames: std::sync::atomic::AtomicU64,
    /// The throttle tier every reply carries, set by the load watcher.
    pub tier: std::sync::atomic::AtomicU8,
    /// Of every 1000 shakes, how many get a decision (the load watcher's admission).
    pub admit: std::sync::atomic::AtomicU32,
    pub top_tier: u8,
    /// Shake interval per tier, in ms, as told to clients.
    pub tier_intervals_ms: Vec<u32>,
    pub shake_cost: Duration,
    /// Issuance records not yet published to the shared limit view.
    pub to_publish: Mutex<Vec<crate::limit_view::Issued>>,
    /// Shares and grabs on their way to the envelope backend.
    pub split: split::SplitAgent,
}

impl Gateway {
    /// The tier to tell clients now, and the shake interval it asks for.
    pub fn throttle(&self) -> (u8, u32) {
        let tier = self.tier.load(std::sync::atomic::Ordering::Acquire);
        let i = (tier as usize).min(self.tier_intervals_ms.len().saturating_sub(1));
        (
            tier,
            self.tier_intervals_ms.get(i).copied().unwrap_or(2_000),
        )
    }

    /// Milliseconds since the show's start (negative before it).
    pub fn show_ms(&self) -> i64 {
        unix_ms() - self.show_start_ms
    }

    pub fn error(&self, code: crate::protocol::ErrorCode) {
        self.metrics
            .errors
            .get_or_create(&labels(&[("code", code.name())]))
            .inc();
    }
}

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a gateway until `shutdown` turns true, then drains its queue (bounded by the
/// drain timeout) and returns.
pub async fn run(
    config: GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), GatewayError> {
    let (db, recovered) = store::open(&store::db_path(&config.data, config.id))?;
    let mut core = ShakeCore::new(
        config.id,
        config.gateways,
        config.key.clone(),
        config.timeline.clone(),
    );
    let mut budgets = Vec::new();
    for round in &config.timeline.rounds {
        let shard = SeedShard::load(
            &shard_path(&config.seeds, round.id, config.id),
            round.id,
            config.id,
        )?;
        budgets.push((round.id, shard.envelopes.len()));
        let leased = recovered.leases.get(&round.id).copied().unwrap_or(0);
        core.load_round(shard, leased, unix_ms() - config.show_start_ms);
    }
    for record in &recovered.issued {
        core.restore_issue(record);
    }
    let mut queue = PassThroughQueue::default();
    for (seq, entry) in &recovered.queue {
        queue.push(*seq, *entry);
    }

    let mut registry = Registry::default();
    let metrics = GatewayMetrics::register(&mut registry, &config.timeline, config.gateways);
    metrics.queue_depth.set(queue.depth() as i64);
    for (round, n) in budgets {
        metrics
            .budget
            .get_or_create(&labels(&[("round", &round.to_string())]))
            .set(n as i64);
    }
    let queue = Arc::new(Mutex::new(queue));
    registry.register_collector(Box::new(QueueAge {
        queue: queue.clone(),
        show_start_ms: config.show_start_ms,
    }));
    let committer = GroupCommitter::spawn_batched(Arc::new(db), 1024, store::apply);
    registry.register_collector(Box::new(crate::store::CommitMetrics {
        db: "queue",
        stats: committer.stats.clone(),
    }));
    let split_agent = split::SplitAgent::register(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;

    let gw = Arc::new(Gateway {
        id: config.id,
        round_spans: config
            .timeline
            .rounds
            .iter()
            .map(|r| {
                let start = r.start.as_millis() as i64;
                (start, start + r.duration.as_millis() as i64)
            })
            .collect(),
        core: Mutex::new(core),
        queue,
        queue_notify: Notify::new(),
        committer,
        key: config.key.clone(),
        auth: config.auth.clone(),
        show_start_ms: config.show_start_ms,
        config_version: config.timeline.version,
        heartbeat_timeout: config.heartbeat_timeout,
        metrics,
        shutdown: shutdown.clone(),
        sessions: std::sync::atomic::AtomicUsize::new(0),
        frames: std::sync::atomic::AtomicU64::new(0),
        tier: std::sync::atomic::AtomicU8::new(0),
        admit: std::sync::atomic::AtomicU32::new(crate::throttle_tier::ADMIT_ALL),
        top_tier: config.timeline.top_tier(),
        tier_intervals_ms: config
            .timeline
            .tiers
            .iter()
            .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
            .collect(),
        shake_cost: config.shake_cost,
        // After a restart everything is published again: the backend keeps each once.
        to_publish: Mutex::new(recovered.issued.iter().map(|r| r.issued()).collect()),
        split: split_agent,
    });
    crate::log_line!(
        "gateway {} listening on {} (issued so far {}, queue {} to forward)",
        config.id,
        config.listen,
        recovered.issued.len(),
        recovered.queue.len()
    );

    let leases = tokio::spawn(keep_leases(gw.clone()));
    let load_watch = tokio::spawn(load::watch(gw.clone(), config.tiers));
    let limit_sync = tokio::spawn(sync::run(
        gw.clone(),
        config.envelope_addr.clone(),
        config.sync_interval,
    ));
    tokio::spawn(split::run(gw.clone(), config.envelope_addr.clone()));
    if config.bench_opens > 0 {
        tokio::spawn(bench::inject_opens(gw.clone(), config.bench_opens));
    }
    let forwarder = tokio::spawn(forwarder::run(
        gw.clone(),
        config.envelope_addr.clone(),
        config.drain_timeout,
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        if gw.sessions.load(std::sync::atomic::Ordering::Acquire) >= config.max_connections {
                            tokio::spawn(session::refuse_full(gw.clone(), stream));
                        } else {
                            tokio::spawn(session::serve(gw.clone(), stream));
                        }
                    }
                    // Out of files (or another transient failure): pause rather than spin;
                    // the connection waits in the backlog.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    leases.abort();
    load_watch.abort();
    limit_sync.abort();
    // Sessions see the same shutdown signal and close; the forwarder drains the queue.
    let _ = forwarder.await;
    let left = gw.queue.lock().map(|q| q.depth()).unwrap_or(0);
    crate::log_line!(
        "gateway {} stopped ({left} opens left in its durable queue)",
        config.id
    );
    Ok(())
}

/// Persists issuance leases ahead of need, so shakes rarely wait for one. It looks
/// every 50 ms while a round runs or is about to, and once a second otherwise: an idle
/// gateway (one of dozens on a machine) should stay asleep.
async fn keep_leases(gw: Arc<Gateway>) {
    loop {
        let show_ms = gw.show_ms();
        let busy = gw
            .round_spans
            .iter()
            .any(|(start, end)| show_ms + 3_000 >= *start && show_ms <= *end);
        let pause = if busy { 50 } else { 1_000 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let wanted = gw
            .core
            .lock()
            .map(|mut c| c.wanted_leases(gw.show_ms()))
            .unwrap_or_default();
        for (round, end) in wanted {
            let granted = gw.committer.submit(GatewayOp::Lease { round, end }).await;
            if let Ok(mut core) = gw.core.lock() {
                match granted {
                    Ok(_) => core.lease_granted(round, end),
                    Err(_) => core.lease_failed(round),
                }
            }
        }
    }
}
