//! The gateway's metric families: registered at zero for every outcome, the hot ones
//! resolved once so that a shake costs one atomic add; and the pass-through queue's
//! age, read at scrape time.

use super::link::Transport;
use crate::metrics::{labels, prefill, Counters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use shellkit::clock::unix_ms;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use sut_core::passthrough::PassThroughQueue;
use sut_core::shake::Reason;
use sut_wire::protocol::ErrorCode;
use sut_wire::timeline::Timeline;

pub(crate) struct GatewayMetrics {
    /// Open client connections, by transport (in [`Transport::ALL`] order).
    pub connections: [Gauge; 2],
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
    /// Connection bounds hit, by which (see `SessionLimits`).
    pub limits: Counters,
    /// This gateway's share of each round's rate, by round.
    pub rate_limit: Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>,
}

/// The live timeline's families: the version held, offers by channel and result,
/// shakes decided on a stale version, channels down.
pub(crate) struct ScheduleMetrics {
    pub version: Gauge,
    offers: Counters,
    pub stale: Counter,
    down: Family<Vec<(&'static str, String)>, Gauge>,
}

impl ScheduleMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        use sut_core::live_timeline::Channel;
        let m = ScheduleMetrics {
            version: Gauge::default(),
            offers: Counters::default(),
            stale: Counter::default(),
            down: Family::default(),
        };
        for c in Channel::LIVE.into_iter().chain([Channel::Disk]) {
            for r in ["applied", "repeat", "older", "refused"] {
                let _ = m
                    .offers
                    .get_or_create(&labels(&[("channel", c.name()), ("result", r)]));
            }
        }
        for c in Channel::LIVE {
            m.down
                .get_or_create(&labels(&[("channel", c.name())]))
                .set(0);
        }
        registry.register(
            "sut_config_version",
            "Schedule (timeline) version this gateway decides on",
            m.version.clone(),
        );
        registry.register(
            "sut_gateway_schedule_offers",
            "Schedule versions offered to this gateway, by channel (push, pull, gossip, disk at start) and result (applied, repeat, older, refused: not signed by the operator)",
            m.offers.clone(),
        );
        registry.register(
            "sut_gateway_schedule_stale_shakes",
            "Shakes decided on a version older than one the operator had already signed",
            m.stale.clone(),
        );
        registry.register(
            "sut_gateway_schedule_channel_down",
            "1 while a live timeline channel is taken down at this gateway by an injected fault",
            m.down.clone(),
        );
        m
    }

    pub fn offered(&self, channel: sut_core::live_timeline::Channel, result: &str) {
        self.offers
            .get_or_create(&labels(&[("channel", channel.name()), ("result", result)]))
            .inc();
    }

    pub fn channel_down(&self, channel: sut_core::live_timeline::Channel, down: bool) {
        self.down
            .get_or_create(&labels(&[("channel", channel.name())]))
            .set(i64::from(down));
    }
}

/// The bounds a session may hit, as counted in `sut_gateway_connection_limits_total`
/// (see `SessionLimits`).
const LIMITS: [&str; 7] = [
    "hello_timeout",
    "quic_handshake",
    "frame_timeout",
    "write_timeout",
    "partial_budget",
    "rate_waits",
    "reply_unencodable",
];

/// The counter of `family` for one label value, kept to be bumped without a lookup.
fn resolve(family: &Counters, key: &'static str, value: &str) -> Counter {
    family.get_or_create(&labels(&[(key, value)])).clone()
}

impl GatewayMetrics {
    pub(super) fn register(registry: &mut Registry, timeline: &Timeline, gateways: u16) -> Self {
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
                "repeat",
                ErrorCode::Unavailable.name(),
            ],
        );
        let sessions = Counters::default();
        prefill(&sessions, "result", &["accepted", "full"]);
        let forwarded = Counters::default();
        prefill(&forwarded, "result", &["acked", "busy", "failed"]);
        let syncs = Counters::default();
        prefill(&syncs, "result", &["ok", "failed"]);
        let limits = Counters::default();
        prefill(&limits, "limit", &LIMITS);
        let rate_limit = Family::<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>::default();
        for r in &timeline.rounds {
            rate_limit
                .get_or_create(&labels(&[("round", &r.id.to_string())]))
                .set(r.rate / f64::from(gateways.max(1)));
        }
        let connections = Family::<Vec<(&'static str, String)>, Gauge>::default();
        let m = GatewayMetrics {
            connections: Transport::ALL.map(|t| {
                connections
                    .get_or_create(&labels(&[("transport", t.name())]))
                    .clone()
            }),
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
            limits,
            rate_limit: rate_limit.clone(),
        };
        registry.register(
            "sut_gateway_connection_limits",
            "Connection bounds hit, by limit: hello, frame and write deadlines, QUIC handshakes failed or not done within the hello deadline, the partial-frame budget, waits for a user's frame allowance, replies that could not be encoded",
            m.limits.clone(),
        );
        registry.register(
            "sut_gateway_connections",
            "Open client connections, by transport (tcp, quic)",
            connections,
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
            "Share of the last window's shakes that admission let through to a decision",
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
        m
    }

    /// Each round's rate share, as a new schedule version sets it.
    pub fn set_rates(&self, timeline: &Timeline, gateways: u16) {
        for r in &timeline.rounds {
            self.rate_limit
                .get_or_create(&labels(&[("round", &r.id.to_string())]))
                .set(r.rate / f64::from(gateways.max(1)));
        }
    }

    /// What this gateway's shard holds for a round.
    pub fn set_budget(&self, round: u32, envelopes: u64) {
        self.budget
            .get_or_create(&labels(&[("round", &round.to_string())]))
            .set(envelopes as i64);
    }

    /// Counts an issue of `round` (a round added during the show has no resolved
    /// counter).
    pub fn count_issue(&self, round: u32) {
        match self.issued_by_round.get(&round) {
            Some(c) => {
                c.inc();
            }
            None => {
                self.issued
                    .get_or_create(&labels(&[("round", &round.to_string())]))
                    .inc();
            }
        }
    }
}

/// `sut_passthrough_oldest_age_seconds`, read at scrape time: how long the oldest open
/// has waited for the envelope backend. Depth alone hides a queue that is short but stuck.
#[derive(Debug)]
pub(super) struct QueueAge {
    pub queue: Arc<Mutex<PassThroughQueue>>,
    pub show_start_ms: i64,
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
