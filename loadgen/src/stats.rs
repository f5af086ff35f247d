//! What a run measured. HDR histograms (microseconds, identical bounds everywhere so any
//! two can be merged exactly) are the source of truth for latency; plain counters for
//! the rest. Prometheus, the progress line and the summary all read from here.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Highest latency kept exactly, in µs (60 s); slower samples saturate here.
pub const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Connect = 0,
    Hello = 1,
    Shake = 2,
    Open = 3,
    Heartbeat = 4,
}

pub const OPS: [Op; 5] = [Op::Connect, Op::Hello, Op::Shake, Op::Open, Op::Heartbeat];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::Hello => "hello",
            Op::Shake => "shake",
            Op::Open => "open",
            Op::Heartbeat => "heartbeat",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        OPS.into_iter().find(|op| op.name() == name)
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// One operation's figures.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency from the intended send time to the reply, µs.
    pub latency: Histogram<u64>,
    pub errors: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: new_histogram(),
            errors: 0,
        }
    }
}

/// Everything counted in a run (or one worker's part of it).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub ops: [OpStats; 5],
    /// Shake outcomes: envelope, greeting, nothing.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Errors by `op/kind`, e.g. `open/already_opened`, `shake/timeout`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Shake replies by the throttle tier they carried.
    pub tiers: BTreeMap<u8, u64>,
    /// Cents the gateways promised on successful opens.
    pub opened_cents: u64,
    /// Users connected now.
    pub connected: u64,
    /// Connections lost other than by the user's own choice.
    pub drops: u64,
    /// How late the generator itself sent requests after their intended time (timer
    /// granularity, a busy generator). Already inside every latency above; shown apart
    /// so a slow generator is never mistaken for a slow system.
    pub send_lag: OpStats,
}

impl Summary {
    pub fn record(&mut self, op: Op, latency_us: u64) {
        let _ = self.ops[op as usize]
            .latency
            .record(latency_us.clamp(1, MAX_LATENCY_US));
    }

    pub fn error(&mut self, op: Op, kind: &str) {
        self.ops[op as usize].errors += 1;
        *self
            .errors_by_kind
            .entry(format!("{}/{kind}", op.name()))
            .or_default() += 1;
    }

    pub fn record_send_lag(&mut self, lag_us: u64) {
        let _ = self
            .send_lag
            .latency
            .record(lag_us.clamp(1, MAX_LATENCY_US));
    }

    pub fn outcome(&mut self, name: &'static str, tier: u8) {
        *self.outcomes.entry(name).or_default() += 1;
        *self.tiers.entry(tier).or_default() += 1;
    }

    pub fn count(&self, op: Op) -> u64 {
        self.ops[op as usize].latency.len()
    }

    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }

    /// Requests made: answered ones plus failed ones.
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.latency.len() + o.errors).sum()
    }

    pub fn error_rate(&self) -> f64 {
        let r = self.requests();
        if r == 0 {
            0.0
        } else {
            self.errors() as f64 / r as f64
        }
    }

    /// Adds another part's figures exactly (identical histogram bounds make this lossless).
    pub fn merge(&mut self, other: &Summary) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            let _ = a.latency.add(&b.latency);
            a.errors += b.errors;
        }
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in &other.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.tiers {
            *self.tiers.entry(*k).or_default() += v;
        }
        let _ = self.send_lag.latency.add(&other.send_lag.latency);
        self.opened_cents += other.opened_cents;
        self.connected += other.connected;
        self.drops += other.drops;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_exact() {
        let mut a = Summary::default();
        let mut b = Summary::default();
        for v in 1..=1000 {
            a.record(Op::Shake, v);
            b.record(Op::Shake, v * 10);
        }
        a.error(Op::Open, "timeout");
        b.error(Op::Open, "timeout");
        b.outcome("envelope", 1);
        let mut m = Summary::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.count(Op::Shake), 2000);
        assert_eq!(
            m.ops[Op::Shake as usize].latency.max(),
            b.ops[2].latency.max()
        );
        assert_eq!(m.errors_by_kind["open/timeout"], 2);
        assert_eq!(m.tiers[&1], 1);
        assert!((m.error_rate() - 2.0 / 2002.0).abs() < 1e-12);
    }

    #[test]
    fn op_names_round_trip() {
        for op in OPS {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("shook"), None);
    }
}
