//! One operation's measurements and how histograms travel: the HDR histogram every
//! figure of latency is kept in (identical bounds everywhere, so any two merge exactly)
//! and its V2 wire form. The run's summary ([`crate::stats`]) and its split by
//! transport ([`crate::transport_stats`]) are both made of these.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::Serialize;
use thiserror::Error;

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
    /// Sharing an opened envelope's split pot to friends.
    Share = 5,
    /// A friend grabbing a part of a shared pot.
    Grab = 6,
}

pub const OPS: [Op; 7] = [
    Op::Connect,
    Op::Hello,
    Op::Shake,
    Op::Open,
    Op::Heartbeat,
    Op::Share,
    Op::Grab,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::Hello => "hello",
            Op::Shake => "shake",
            Op::Open => "open",
            Op::Heartbeat => "heartbeat",
            Op::Share => "share",
            Op::Grab => "grab",
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

impl OpStats {
    /// Records one sample of `latency_us`, clamped to the histogram's bounds.
    pub fn record(&mut self, latency_us: u64) {
        let _ = self.latency.record(latency_us.clamp(1, MAX_LATENCY_US));
    }
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: new_histogram(),
            errors: 0,
        }
    }
}

/// Every operation's figures, indexed by `Op as usize`: a run's summary and each
/// transport's part of it hold one each, and share what is done with them here.
pub type OpsStats = [OpStats; 7];

/// Records one answered `op` that took `latency_us`.
pub fn record(ops: &mut OpsStats, op: Op, latency_us: u64) {
    ops[op as usize].record(latency_us);
}

/// Errors over every operation.
pub fn errors(ops: &OpsStats) -> u64 {
    ops.iter().map(|o| o.errors).sum()
}

/// Requests made: answered ones plus failed ones.
pub fn requests(ops: &OpsStats) -> u64 {
    ops.iter().map(|o| o.latency.len() + o.errors).sum()
}

/// Adds `from` into `into` exactly (identical histogram bounds make this lossless).
pub fn merge(into: &mut OpsStats, from: &OpsStats) {
    for (a, b) in into.iter_mut().zip(from) {
        let _ = a.latency.add(&b.latency);
        a.errors += b.errors;
    }
}

/// Starts the next interval.
pub fn clear(ops: &mut OpsStats) {
    for op in ops {
        op.latency.reset();
        op.errors = 0;
    }
}

/// The wire form: each operation's histogram (V2) and its errors.
pub fn ops_to_wire(ops: &OpsStats) -> Result<Vec<(Vec<u8>, u64)>, WireError> {
    ops.iter()
        .map(|o| Ok((hist_to_wire(&o.latency)?, o.errors)))
        .collect()
}

/// Back from the wire form; a worker of another build (other operations) is refused.
pub fn ops_from_wire(wire: Vec<(Vec<u8>, u64)>) -> Result<OpsStats, WireError> {
    if wire.len() != OPS.len() {
        return Err(WireError::Ops(wire.len()));
    }
    let mut ops = OpsStats::default();
    for (slot, (hist, errors)) in ops.iter_mut().zip(wire) {
        slot.latency = hist_from_wire(&hist)?;
        slot.errors = errors;
    }
    Ok(ops)
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("a latency histogram did not serialize: {0}")]
    Serialize(String),
    #[error("a worker sent a latency histogram that does not decode: {0}")]
    Deserialize(String),
    #[error("a worker sent {0} operations, this build knows {n}", n = OPS.len())]
    Ops(usize),
}

pub(crate) fn hist_to_wire(h: &Histogram<u64>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut out)
        .map_err(|e| WireError::Serialize(format!("{e:?}")))?;
    Ok(out)
}

pub(crate) fn hist_from_wire(bytes: &[u8]) -> Result<Histogram<u64>, WireError> {
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| WireError::Deserialize(format!("{e:?}")))?;
    // Refuse other bounds here rather than fail a merge later.
    if h.low() != 1 || h.high() != MAX_LATENCY_US || h.sigfig() != 3 {
        return Err(WireError::Deserialize(format!(
            "bounds {}..{} at {} digits, expected 1..{MAX_LATENCY_US} at 3",
            h.low(),
            h.high(),
            h.sigfig()
        )));
    }
    Ok(h)
}
