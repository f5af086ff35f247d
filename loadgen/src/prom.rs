//! `/metrics` for the load generator. Nothing is recorded per request into Prometheus
//! types: at each scrape a collector reads the run's [`Summary`] and encodes the HDR
//! histograms into fixed `le` buckets, so histograms from many generators aggregate.

use crate::stats::{Summary, OPS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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

#[derive(Debug)]
pub struct SummaryCollector {
    pub stats: Arc<Mutex<Summary>>,
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
            let h = &s.ops[op as usize].latency;
            let mut buckets = Vec::with_capacity(BUCKETS_S.len() + 1);
            let mut below = 0u64;
            for le in BUCKETS_S {
                let upto = h.count_between(0, (le * 1e6) as u64);
                buckets.push((*le, upto - below));
                below = upto;
            }
            buckets.push((f64::MAX, h.len() - below));
            let sum = h.mean() * h.len() as f64 / 1e6;
            let labels = [("op", op.name())];
            let mut m = e.encode_family(&labels)?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum,
                h.len(),
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}
