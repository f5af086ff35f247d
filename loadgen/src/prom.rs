//! `/metrics` for the load generator. Nothing is recorded per request into Prometheus
//! types: at each scrape a collector reads the run's [`Summary`] and encodes the HDR
//! histograms into fixed `le` buckets, so histograms from many generators aggregate.

use crate::hostile::{Attack, HostileFigures};
use crate::resources::ResourceReport;
use crate::stats::{Summary, OPS};
use crate::threshold::Threshold;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::{Arc, Mutex};

/// Bucket bounds in seconds: 50 µs to 10 s, fine enough to read p99.9 from.
pub const BUCKETS_S: &[f64] = &[
    0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    7.5, 10.0,
];

/// Every family this collector exposes, by the name a query uses (counters with
/// `_total`, histograms by their base name): dashboards are checked against it, and the
/// dashboard proof test checks it against a real scrape.
pub const METRICS: &[(&str, &str)] = &[
    ("loadgen_requests_total", "counter"),
    ("loadgen_shake_outcomes_total", "counter"),
    ("loadgen_errors_total", "counter"),
    ("loadgen_shake_replies_by_tier_total", "counter"),
    ("loadgen_shake_replies_by_version_total", "counter"),
    ("loadgen_timeline_gateways_applied", "gauge"),
    ("loadgen_timeline_apply_seconds", "gauge"),
    ("loadgen_timeline_stale_shakes", "gauge"),
    ("loadgen_clients_by_tier", "gauge"),
    ("loadgen_tier_transitions_total", "counter"),
    ("loadgen_desired_shakes_total", "counter"),
    ("loadgen_connected_users", "gauge"),
    ("loadgen_target_users", "gauge"),
    ("loadgen_run_info", "gauge"),
    ("loadgen_connection_drops_total", "counter"),
    ("loadgen_threshold_passing", "gauge"),
    ("loadgen_latency_seconds", "histogram"),
    ("loadgen_send_lag_seconds", "histogram"),
    ("loadgen_transport_requests_total", "counter"),
    ("loadgen_transport_latency_seconds", "histogram"),
    ("loadgen_transport_connected_users", "gauge"),
    ("loadgen_transport_connection_drops_total", "counter"),
    ("loadgen_network_changes_total", "counter"),
    ("loadgen_hostile_users", "gauge"),
    ("loadgen_hostile_connections_total", "counter"),
    ("loadgen_hostile_frames_sent_total", "counter"),
    ("loadgen_hostile_frames_received_total", "counter"),
    ("loadgen_hostile_ended_total", "counter"),
    ("loadgen_hostile_refused_total", "counter"),
    ("loadgen_pre_push_users", "gauge"),
    ("loadgen_pre_push_bytes_total", "counter"),
    ("loadgen_pre_push_items_total", "counter"),
    ("loadgen_pre_push_greetings_total", "counter"),
    ("loadgen_pre_push_answers_total", "counter"),
];

/// What the run knows beyond the merged counters, shared with the collector.
#[derive(Debug, Default)]
pub struct Live {
    /// Connected users the stages ask for now.
    pub target_users: std::sync::atomic::AtomicU64,
    /// The resource figures so far (memory thresholds read them).
    pub resources: Mutex<Option<ResourceReport>>,
    /// The hostile users' figures so far, apart from everything else.
    pub hostile: Mutex<HostileFigures>,
    /// Milliseconds into the run (for thresholds on rates).
    pub elapsed_ms: std::sync::atomic::AtomicU64,
    /// A distributed run's agents: (name, segment, whether it still counts).
    pub agents: Mutex<Vec<(String, String, bool)>>,
    /// Each live programme change so far, as the gateways recorded it.
    pub timeline: Mutex<Vec<crate::live_timeline::ChangeReport>>,
}

#[derive(Debug)]
pub struct SummaryCollector {
    pub stats: Arc<Mutex<Summary>>,
    pub thresholds: Vec<Threshold>,
    pub live: Arc<Live>,
    /// Labels of `loadgen_run_info`: profile, version, commit (`run_id` is on every
    /// series, from the registry).
    pub run_info: Vec<(&'static str, String)>,
}

/// The live programme changes: per version, the gateways on it, the time from signing
/// to applying (p50 and max over gateways) and the shakes decided on the older version.
fn encode_timeline(
    encoder: &mut DescriptorEncoder,
    changes: &[crate::live_timeline::ChangeReport],
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(
        "loadgen_timeline_gateways_applied",
        "Gateways on each programme change's version (or a later one)",
        None,
        MetricType::Gauge,
    )?;
    for c in changes {
        let v = c.version.to_string();
        ConstGauge::new(i64::from(c.applied))
            .encode(e.encode_family(&[("version", v.as_str())])?)?;
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_timeline_apply_seconds",
        "Time from the operator signing a version to gateways applying it: p50 and max over gateways",
        None,
        MetricType::Gauge,
    )?;
    for c in changes {
        let v = c.version.to_string();
        for (stat, ms) in [("p50", c.p50_ms), ("max", c.max_ms)] {
            if let Some(ms) = ms {
                ConstGauge::new(ms / 1000.0)
                    .encode(e.encode_family(&[("version", v.as_str()), ("stat", stat)])?)?;
            }
        }
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_timeline_stale_shakes",
        "Shakes gateways decided on an older version after each version was signed",
        None,
        MetricType::Gauge,
    )?;
    for c in changes {
        let v = c.version.to_string();
        ConstGauge::new(c.stale_shakes as i64)
            .encode(e.encode_family(&[("version", v.as_str())])?)?;
    }
    Ok(())
}

/// Encodes an HDR histogram (µs) into the fixed `le` buckets, in seconds.
fn encode_hdr(h: &Histogram<u64>, m: MetricEncoder) -> Result<(), std::fmt::Error> {
    let mut m = m;
    let mut buckets = Vec::with_capacity(BUCKETS_S.len() + 1);
    let mut below = 0u64;
    for le in BUCKETS_S {
        let upto = h.count_between(0, (le * 1e6) as u64);
        buckets.push((*le, upto - below));
        below = upto;
    }
    buckets.push((f64::MAX, h.len() - below));
    let sum = h.mean() * h.len() as f64 / 1e6;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, h.len(), &buckets, None)
}

impl Collector for SummaryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();

        let mut e = encoder.encode_descriptor(
            "loadgen_requests",
            "Requests by operation and result",
            None,
            MetricType::Counter,
        )?;
        for op in OPS {
            let o = &s.ops[op as usize];
            for (result, n) in [("ok", o.latency.len()), ("error", o.errors)] {
                let labels = [("op", op.name()), ("result", result)];
                ConstCounter::new(n).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "loadgen_shake_outcomes",
            "Shake replies by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in &s.outcomes {
            ConstCounter::new(*n).encode(e.encode_family(&[("outcome", outcome.as_str())])?)?;
        }

        let mut e = encoder.encode_descriptor(
            "loadgen_errors",
            "Errors by operation and kind",
            None,
            MetricType::Counter,
        )?;
        for (key, n) in &s.errors_by_kind {
            let (op, kind) = key.split_once('/').unwrap_or((key, ""));
            ConstCounter::new(*n).encode(e.encode_family(&[("op", op), ("kind", kind)])?)?;
        }

        let mut e = encoder.encode_descriptor(
            "loadgen_shake_replies_by_tier",
            "Shake replies by the throttle tier they carried",
            None,
            MetricType::Counter,
        )?;
        for (tier, n) in &s.tiers {
            let tier = tier.to_string();
            ConstCounter::new(*n).encode(e.encode_family(&[("tier", tier.as_str())])?)?;
        }

        let mut e = encoder.encode_descriptor(
            "loadgen_shake_replies_by_version",
            "Decided shake replies by the schedule (timeline) version they named",
            None,
            MetricType::Counter,
        )?;
        for (version, n) in &s.versions {
            let version = version.to_string();
            ConstCounter::new(*n).encode(e.encode_family(&[("version", version.as_str())])?)?;
        }
        let changes = self
            .live
            .timeline
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        encode_timeline(&mut encoder, &changes)?;
        crate::pre_push::metrics::encode(&mut encoder, &s.pre_push)?;

        let mut e = encoder.encode_descriptor(
            "loadgen_clients_by_tier",
            "Connected users by the throttle tier their gateway last gave them",
            None,
            MetricType::Gauge,
        )?;
        for (tier, n) in &s.clients_by_tier {
            let tier = tier.to_string();
            ConstGauge::new(*n as i64).encode(e.encode_family(&[("tier", tier.as_str())])?)?;
        }

        let e = encoder.encode_descriptor(
            "loadgen_tier_transitions",
            "Times a user's throttle tier changed",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.tier_transitions).encode(e)?;

        let e = encoder.encode_descriptor(
            "loadgen_desired_shakes",
            "Shakes users wanted (each shake request carries several when coalesced)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.desired_shakes).encode(e)?;

        let e = encoder.encode_descriptor(
            "loadgen_connected_users",
            "Simulated users holding a connection",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.connected as i64).encode(e)?;

        let e = encoder.encode_descriptor(
            "loadgen_connection_drops",
            "Connections lost other than by the user leaving",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.drops).encode(e)?;

        let mut e = encoder.encode_descriptor(
            "loadgen_latency_seconds",
            "Latency from the intended send time, by operation",
            None,
            MetricType::Histogram,
        )?;
        for op in OPS {
            let labels = [("op", op.name())];
            encode_hdr(&s.ops[op as usize].latency, e.encode_family(&labels)?)?;
        }

        let e = encoder.encode_descriptor(
            "loadgen_send_lag_seconds",
            "How late the generator itself sent requests after their intended time",
            None,
            MetricType::Histogram,
        )?;
        encode_hdr(&s.send_lag.latency, e)?;

        encode_transports(&s, &mut encoder)?;

        let e = encoder.encode_descriptor(
            "loadgen_target_users",
            "Connected users the profile's stages ask for now",
            None,
            MetricType::Gauge,
        )?;
        let target = self
            .live
            .target_users
            .load(std::sync::atomic::Ordering::Relaxed);
        ConstGauge::new(target as i64).encode(e)?;

        let mut e = encoder.encode_descriptor(
            "loadgen_run_info",
            "Which run this is: its profile, run id, loadgen version and commit (always 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels: Vec<(&str, &str)> = self
            .run_info
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        ConstGauge::new(1).encode(e.encode_family(&labels)?)?;

        let agents = self
            .live
            .agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Only in a distributed run (so not in the catalog above, which every run has).
        if !agents.is_empty() {
            let mut e = encoder.encode_descriptor(
                "loadgen_agent_up",
                "1 while a distributed run's agent runs or has finished, 0 once lost",
                None,
                MetricType::Gauge,
            )?;
            for (name, segment, up) in &agents {
                let labels = [("agent", name.as_str()), ("segment", segment.as_str())];
                ConstGauge::new(i64::from(*up)).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "loadgen_threshold_passing",
            "1 while the profile's threshold holds on what was measured so far, 0 once breached",
            None,
            MetricType::Gauge,
        )?;
        let resources = self
            .live
            .resources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for t in &self.thresholds {
            let elapsed_ms = self
                .live
                .elapsed_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let (_, passed) = t.evaluate(&s, resources.as_ref(), elapsed_ms as f64 / 1000.0);
            ConstGauge::new(i64::from(passed))
                .encode(e.encode_family(&[("threshold", t.source.as_str())])?)?;
        }
        let hostile = self
            .live
            .hostile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        encode_hostile(&hostile, &mut encoder)
    }
}

/// The hostile users' families: every attack listed (0 when none makes it), so a
/// dashboard's queries always find their series.
fn encode_hostile(h: &HostileFigures, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let figures = |a: Attack| h.by_attack.get(a.name()).cloned().unwrap_or_default();
    let mut e = encoder.encode_descriptor(
        "loadgen_hostile_users",
        "Hostile users (behaviour.hostile) by attack: kept apart from every other figure",
        None,
        MetricType::Gauge,
    )?;
    for a in Attack::ALL {
        ConstGauge::new(figures(a).users as i64)
            .encode(e.encode_family(&[("attack", a.name())])?)?;
    }
    type Pick = fn(&crate::hostile::AttackFigures) -> u64;
    let counters: [(&str, &str, Pick); 3] = [
        (
            "loadgen_hostile_connections",
            "Connections hostile users made, by attack",
            |f| f.connections,
        ),
        (
            "loadgen_hostile_frames_sent",
            "Whole frames hostile users sent, by attack",
            |f| f.frames_sent,
        ),
        (
            "loadgen_hostile_frames_received",
            "Frames gateways sent hostile users, by attack",
            |f| f.frames_received,
        ),
    ];
    for (name, help, pick) in counters {
        let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for a in Attack::ALL {
            ConstCounter::new(pick(&figures(a)))
                .encode(e.encode_family(&[("attack", a.name())])?)?;
        }
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_hostile_ended",
        "Hostile connections ended, by attack and how (the gateway's closing code, or closed, reset, write_failed)",
        None,
        MetricType::Counter,
    )?;
    for (attack, f) in &h.by_attack {
        for (how, n) in &f.ended {
            ConstCounter::new(*n)
                .encode(e.encode_family(&[("attack", attack.as_str()), ("how", how.as_str())])?)?;
        }
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_hostile_refused",
        "Hostile requests refused with the connection left open, by attack and code",
        None,
        MetricType::Counter,
    )?;
    for (attack, f) in &h.by_attack {
        for (code, n) in &f.refused {
            ConstCounter::new(*n).encode(
                e.encode_family(&[("attack", attack.as_str()), ("code", code.as_str())])?,
            )?;
        }
    }
    Ok(())
}

/// The figures by transport (series only when the run's users use QUIC; the families
/// are always described, so a dashboard's queries always find them).
fn encode_transports(s: &Summary, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    use crate::transport::Transport;
    let parts: Vec<_> = s.by_transport.iter().zip(Transport::ALL).collect();
    let mut e = encoder.encode_descriptor(
        "loadgen_transport_requests",
        "Requests by transport (tcp, quic), operation and result, when the run uses QUIC",
        None,
        MetricType::Counter,
    )?;
    for (part, t) in &parts {
        for op in OPS {
            let o = &part.ops[op as usize];
            for (result, n) in [("ok", o.latency.len()), ("error", o.errors)] {
                let labels = [
                    ("transport", t.name()),
                    ("op", op.name()),
                    ("result", result),
                ];
                ConstCounter::new(n).encode(e.encode_family(&labels)?)?;
            }
        }
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_transport_latency_seconds",
        "Latency from the intended send time, by transport and operation, when the run uses QUIC",
        None,
        MetricType::Histogram,
    )?;
    for (part, t) in &parts {
        for op in OPS {
            let labels = [("transport", t.name()), ("op", op.name())];
            encode_hdr(&part.ops[op as usize].latency, e.encode_family(&labels)?)?;
        }
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_transport_connected_users",
        "Simulated users holding a connection, by transport, when the run uses QUIC",
        None,
        MetricType::Gauge,
    )?;
    for (part, t) in &parts {
        ConstGauge::new(part.connected as i64)
            .encode(e.encode_family(&[("transport", t.name())])?)?;
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_transport_connection_drops",
        "Connections lost other than by the user leaving, by transport, when the run uses QUIC",
        None,
        MetricType::Counter,
    )?;
    for (part, t) in &parts {
        ConstCounter::new(part.drops).encode(e.encode_family(&[("transport", t.name())])?)?;
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_network_changes",
        "Sessions whose user's network changed (profile `network:`), by transport and whether the session was kept",
        None,
        MetricType::Counter,
    )?;
    for (part, t) in &parts {
        let kept = part
            .network_changes
            .saturating_sub(part.sessions_lost_to_change);
        for (session, n) in [("kept", kept), ("lost", part.sessions_lost_to_change)] {
            let labels = [("transport", t.name()), ("session", session)];
            ConstCounter::new(n).encode(e.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
