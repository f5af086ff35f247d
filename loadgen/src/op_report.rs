//! One operation's figures as reports show them: count, errors, rate and latency
//! percentiles in milliseconds.

use crate::op_stats::OpStats;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub count: u64,
    pub errors: u64,
    pub rate_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl OpReport {
    /// One operation's figures over a run of `duration_s`.
    pub fn of(s: &OpStats, duration_s: f64) -> OpReport {
        let h = &s.latency;
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };
        OpReport {
            count: h.len(),
            errors: s.errors,
            rate_per_s: h.len() as f64 / duration_s.max(1e-9),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        }
    }
}

/// Microseconds as milliseconds.
pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
