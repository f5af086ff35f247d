//! The run's `/metrics` for pre-push: phones online and covered, bytes received, items
//! by how they ended, greetings by whether their images were held, answers by status.

use super::stats::PrePushStats;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Encodes the families (listed in [`crate::prom::METRICS`]); every one has samples (zeros before any phone downloads).
pub fn encode(encoder: &mut DescriptorEncoder, s: &PrePushStats) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(
        "loadgen_pre_push_users",
        "Users whose phone pre-downloads now (online), and those holding every item of the newest manifest (covered)",
        None,
        MetricType::Gauge,
    )?;
    for (state, n) in [("online", s.online), ("covered", s.covered)] {
        ConstGauge::new(n as i64).encode(e.encode_family(&[("state", state)])?)?;
    }
    let e = encoder.encode_descriptor(
        "loadgen_pre_push_bytes",
        "Body bytes phones received from the resource servers",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(s.bytes).encode(e)?;
    let mut e = encoder.encode_descriptor(
        "loadgen_pre_push_items",
        "Items downloaded, by how they ended (verified; refused: tampered, fetched again; kept_tampered: a phone not verifying; wrong_size)",
        None,
        MetricType::Counter,
    )?;
    for (result, n) in [
        ("verified", s.items_verified),
        ("refused", s.tampered_refused),
        ("kept_tampered", s.tampered_kept),
        ("wrong_size", s.wrong_size),
    ] {
        ConstCounter::new(n).encode(e.encode_family(&[("result", result)])?)?;
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_pre_push_greetings",
        "Greetings by whether the phone held their images (hit), would fetch them at show time (miss), or showed a tampered copy",
        None,
        MetricType::Counter,
    )?;
    for (result, n) in [
        ("hit", s.greeting_hits),
        ("miss", s.greeting_misses),
        ("tampered_shown", s.tampered_shown),
    ] {
        ConstCounter::new(n).encode(e.encode_family(&[("result", result)])?)?;
    }
    let mut e = encoder.encode_descriptor(
        "loadgen_pre_push_answers",
        "Resource servers' answers to phones by HTTP status, and fetches that got none (error/KIND)",
        None,
        MetricType::Counter,
    )?;
    if s.requests.is_empty() {
        ConstCounter::new(0u64).encode(e.encode_family(&[("status", "200")])?)?;
    }
    for (status, n) in &s.requests {
        ConstCounter::new(*n).encode(e.encode_family(&[("status", status.as_str())])?)?;
    }
    Ok(())
}
