//! What a run measured. HDR histograms (microseconds, identical bounds everywhere so any
//! two can be merged exactly) are the source of truth for latency; plain counters for
//! the rest. Prometheus, the progress line and the summary all read from here.

use crate::op_stats::{hist_from_wire, hist_to_wire, ops_from_wire, ops_to_wire};
pub use crate::op_stats::{new_histogram, Op, OpStats, OpsStats, WireError, MAX_LATENCY_US, OPS};
use crate::transport::Transport;
use crate::transport_stats::{TransportStats, WireTransportStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything counted in a run (or one worker's part of it).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub ops: OpsStats,
    /// Shake outcomes: envelope, greeting, nothing.
    pub outcomes: BTreeMap<String, u64>,
    /// Errors by `op/kind`, e.g. `open/already_opened`, `shake/timeout`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Shake replies by the throttle tier they carried.
    pub tiers: BTreeMap<u8, u64>,
    /// Shake replies by the schedule (timeline) version they were decided on: how
    /// fast the clients' side of a live programme change moved.
    pub versions: BTreeMap<u64, u64>,
    /// Cents the gateways promised on successful opens.
    pub opened_cents: u64,
    /// Cents the gateways promised on successful grabs of split parts.
    pub grabbed_cents: u64,
    /// Each promise a user was told, as (user, cents): the first answer to an open or
    /// a grab with an amount. Compared per user with what payment credited.
    pub promises: Vec<(u64, u64)>,
    /// Cheaters' deliberate repeats told their original answer, and those told
    /// anything else (a broken contract).
    pub repeats_kept: u64,
    pub repeats_broken: u64,
    /// How shares and grabs ended, `share/ok`, `grab/no_parts_left`, ...: refusals
    /// for what the user did (late, too many friends for the parts) are outcomes, not
    /// errors of the system; only `unavailable` past the retries counts as an error.
    pub split_outcomes: BTreeMap<String, u64>,
    /// Users connected now.
    pub connected: u64,
    /// Connections lost other than by the user's own choice.
    pub drops: u64,
    /// How late the generator itself sent requests after their intended time (timer
    /// granularity, a busy generator). Already inside every latency above; shown apart
    /// so a slow generator is never mistaken for a slow system.
    pub send_lag: OpStats,
    /// The shakes that won an envelope, already inside the shake histogram: each waited
    /// for its reservation and its durable record before its reply, so this is the
    /// durable path's latency, apart from the decisions made in memory.
    pub wins: OpStats,
    /// Sessions established (Hello acknowledged), by gateway index.
    pub hellos_by_gateway: Vec<u64>,
    /// Users that established at least one session.
    pub users_connected: u64,
    /// Shakes users wanted; the shake requests above carried them, coalesced.
    pub desired_shakes: u64,
    /// Times a user's tier changed.
    pub tier_transitions: u64,
    /// Times an adversarial user hopped to another gateway after an envelope.
    pub hops: u64,
    /// Users whose client received more envelopes than the limits allow (more than 3,
    /// or 2 of one sponsor), each once: the clients' side of invariant 4.
    pub received_over_limit: Vec<u64>,
    /// Connected users at each tier now (a level, like `connected`).
    pub clients_by_tier: BTreeMap<u8, u64>,
    /// User-seconds spent at each tier.
    pub tier_seconds: BTreeMap<u8, f64>,
    /// The same figures by transport, when the run's users mix them (empty otherwise;
    /// see [`crate::transport_stats`]).
    pub by_transport: Vec<TransportStats>,
    /// The transport of the user recording now: set by the worker before it hands the
    /// user's events to its core, so that `record` and `error` land in its part too.
    pub recording: Transport,
    /// What the phones' pre-downloads did (see [`crate::pre_push`]).
    pub pre_push: crate::pre_push::stats::PrePushStats,
}

/// A [`Summary`] as it travels from a worker to its parent: histograms in HdrHistogram's
/// V2 format, everything else as plain numbers.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireSummary {
    ops: Vec<(Vec<u8>, u64)>,
    send_lag: Vec<u8>,
    wins: Vec<u8>,
    outcomes: Vec<(String, u64)>,
    errors_by_kind: Vec<(String, u64)>,
    tiers: Vec<(u8, u64)>,
    versions: Vec<(u64, u64)>,
    opened_cents: u64,
    grabbed_cents: u64,
    promises: Vec<(u64, u64)>,
    repeats_kept: u64,
    repeats_broken: u64,
    split_outcomes: Vec<(String, u64)>,
    connected: u64,
    drops: u64,
    hellos_by_gateway: Vec<u64>,
    users_connected: u64,
    desired_shakes: u64,
    tier_transitions: u64,
    hops: u64,
    received_over_limit: Vec<u64>,
    clients_by_tier: Vec<(u8, u64)>,
    tier_seconds: Vec<(u8, f64)>,
    by_transport: Vec<WireTransportStats>,
    pre_push: crate::pre_push::stats::PrePushStats,
}

impl Summary {
    /// `user` was told it got `cents` (an open or a grab answered with its amount).
    pub fn promised(&mut self, user: u64, cents: u32) {
        self.promises.push((user, u64::from(cents)));
    }

    pub fn record(&mut self, op: Op, latency_us: u64) {
        crate::op_stats::record(&mut self.ops, op, latency_us);
        if let Some(part) = self.by_transport.get_mut(self.recording as usize) {
            crate::op_stats::record(&mut part.ops, op, latency_us);
        }
    }

    /// The part of the transport recording now, when the run splits them.
    pub fn transport_part(&mut self) -> Option<&mut TransportStats> {
        self.by_transport.get_mut(self.recording as usize)
    }

    pub fn error(&mut self, op: Op, kind: &str) {
        self.ops[op as usize].errors += 1;
        if let Some(part) = self.by_transport.get_mut(self.recording as usize) {
            part.ops[op as usize].errors += 1;
        }
        *self
            .errors_by_kind
            .entry(format!("{}/{kind}", op.name()))
            .or_default() += 1;
    }

    pub fn record_send_lag(&mut self, lag_us: u64) {
        self.send_lag.record(lag_us);
    }

    /// A shake that won an envelope (it is recorded as a shake too).
    pub fn record_win(&mut self, latency_us: u64) {
        self.wins.record(latency_us);
    }

    /// The decided shakes that did not win: the shake histogram less the wins'.
    pub fn shakes_not_won(&self) -> OpStats {
        let mut rest = self.ops[Op::Shake as usize].clone();
        // Every win was recorded as a shake too, so the subtraction cannot underflow;
        // if it ever did, the whole histogram is shown rather than a wrong one.
        if rest.latency.subtract(&self.wins.latency).is_err() {
            rest.latency = self.ops[Op::Shake as usize].latency.clone();
        }
        rest
    }

    pub fn outcome(&mut self, name: &str, tier: u8) {
        match self.outcomes.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.outcomes.insert(name.to_string(), 1);
            }
        }
        *self.tiers.entry(tier).or_default() += 1;
    }

    /// A share or grab ended with `result` (`ok` or a refusal's code name).
    pub fn split_outcome(&mut self, op: Op, result: &str) {
        *self
            .split_outcomes
            .entry(format!("{}/{result}", op.name()))
            .or_default() += 1;
    }

    pub fn count(&self, op: Op) -> u64 {
        self.ops[op as usize].latency.len()
    }

    pub fn errors(&self) -> u64 {
        crate::op_stats::errors(&self.ops)
    }

    /// Requests made: answered ones plus failed ones.
    pub fn requests(&self) -> u64 {
        crate::op_stats::requests(&self.ops)
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
        crate::op_stats::merge(&mut self.ops, &other.ops);
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.tiers {
            *self.tiers.entry(*k).or_default() += v;
        }
        for (k, v) in &other.versions {
            *self.versions.entry(*k).or_default() += v;
        }
        let _ = self.send_lag.latency.add(&other.send_lag.latency);
        let _ = self.wins.latency.add(&other.wins.latency);
        self.opened_cents += other.opened_cents;
        self.grabbed_cents += other.grabbed_cents;
        self.promises.extend_from_slice(&other.promises);
        self.repeats_kept += other.repeats_kept;
        self.repeats_broken += other.repeats_broken;
        for (k, v) in &other.split_outcomes {
            *self.split_outcomes.entry(k.clone()).or_default() += v;
        }
        self.connected += other.connected;
        self.drops += other.drops;
        if self.hellos_by_gateway.len() < other.hellos_by_gateway.len() {
            self.hellos_by_gateway
                .resize(other.hellos_by_gateway.len(), 0);
        }
        for (a, b) in self
            .hellos_by_gateway
            .iter_mut()
            .zip(&other.hellos_by_gateway)
        {
            *a += b;
        }
        self.users_connected += other.users_connected;
        self.desired_shakes += other.desired_shakes;
        self.tier_transitions += other.tier_transitions;
        self.hops += other.hops;
        self.received_over_limit
            .extend_from_slice(&other.received_over_limit);
        for (k, v) in &other.clients_by_tier {
            *self.clients_by_tier.entry(*k).or_default() += v;
        }
        for (k, v) in &other.tier_seconds {
            *self.tier_seconds.entry(*k).or_default() += v;
        }
        if self.by_transport.len() < other.by_transport.len() {
            self.by_transport
                .resize_with(other.by_transport.len(), Default::default);
        }
        for (a, b) in self.by_transport.iter_mut().zip(&other.by_transport) {
            a.merge(b);
        }
        self.pre_push.merge(&other.pre_push);
    }

    /// A connected user joined `tier` (its session began).
    pub fn enter_tier(&mut self, tier: u8) {
        *self.clients_by_tier.entry(tier).or_default() += 1;
    }

    /// A connected user left `tier` (its session ended).
    pub fn leave_tier(&mut self, tier: u8) {
        if let Some(n) = self.clients_by_tier.get_mut(&tier) {
            *n = n.saturating_sub(1);
        }
    }

    /// A connected user moved from one tier to another.
    pub fn change_tier(&mut self, from: u8, to: u8) {
        self.leave_tier(from);
        self.enter_tier(to);
        self.tier_transitions += 1;
    }

    /// Adds `elapsed` of every connected user's time to its tier.
    pub fn accrue_tier_time(&mut self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        for (tier, n) in &self.clients_by_tier {
            *self.tier_seconds.entry(*tier).or_default() += *n as f64 * secs;
        }
    }

    /// A session was established on gateway `index`.
    pub fn hello(&mut self, index: usize) {
        if self.hellos_by_gateway.len() <= index {
            self.hellos_by_gateway.resize(index + 1, 0);
        }
        self.hellos_by_gateway[index] += 1;
    }

    /// Starts the next interval: everything counted so far is dropped except the levels
    /// (`connected`, `clients_by_tier`).
    pub fn clear_interval(&mut self) {
        crate::op_stats::clear(&mut self.ops);
        self.send_lag.latency.reset();
        self.wins.latency.reset();
        self.outcomes.clear();
        self.errors_by_kind.clear();
        self.tiers.clear();
        self.versions.clear();
        self.opened_cents = 0;
        self.grabbed_cents = 0;
        self.promises.clear();
        self.repeats_kept = 0;
        self.repeats_broken = 0;
        self.split_outcomes.clear();
        self.drops = 0;
        self.hellos_by_gateway.iter_mut().for_each(|n| *n = 0);
        self.users_connected = 0;
        self.desired_shakes = 0;
        self.tier_transitions = 0;
        self.hops = 0;
        self.received_over_limit.clear();
        self.tier_seconds.clear();
        self.by_transport
            .iter_mut()
            .for_each(TransportStats::clear_interval);
        self.pre_push = crate::pre_push::stats::PrePushStats::default();
    }

    pub fn to_wire(&self) -> Result<WireSummary, WireError> {
        Ok(WireSummary {
            ops: ops_to_wire(&self.ops)?,
            send_lag: hist_to_wire(&self.send_lag.latency)?,
            wins: hist_to_wire(&self.wins.latency)?,
            outcomes: self.outcomes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            errors_by_kind: self
                .errors_by_kind
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            tiers: self.tiers.iter().map(|(k, v)| (*k, *v)).collect(),
            versions: self.versions.iter().map(|(k, v)| (*k, *v)).collect(),
            opened_cents: self.opened_cents,
            grabbed_cents: self.grabbed_cents,
            promises: self.promises.clone(),
            repeats_kept: self.repeats_kept,
            repeats_broken: self.repeats_broken,
            split_outcomes: self
                .split_outcomes
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            connected: self.connected,
            drops: self.drops,
            hellos_by_gateway: self.hellos_by_gateway.clone(),
            users_connected: self.users_connected,
            desired_shakes: self.desired_shakes,
            tier_transitions: self.tier_transitions,
            hops: self.hops,
            received_over_limit: self.received_over_limit.clone(),
            clients_by_tier: self.clients_by_tier.iter().map(|(k, v)| (*k, *v)).collect(),
            tier_seconds: self.tier_seconds.iter().map(|(k, v)| (*k, *v)).collect(),
            by_transport: self
                .by_transport
                .iter()
                .map(TransportStats::to_wire)
                .collect::<Result<_, _>>()?,
            pre_push: self.pre_push.clone(),
        })
    }

    pub fn from_wire(w: WireSummary) -> Result<Summary, WireError> {
        let mut s = Summary {
            ops: ops_from_wire(w.ops)?,
            ..Summary::default()
        };
        s.send_lag.latency = hist_from_wire(&w.send_lag)?;
        s.wins.latency = hist_from_wire(&w.wins)?;
        s.outcomes = w.outcomes.into_iter().collect();
        s.errors_by_kind = w.errors_by_kind.into_iter().collect();
        s.tiers = w.tiers.into_iter().collect();
        s.versions = w.versions.into_iter().collect();
        s.opened_cents = w.opened_cents;
        s.grabbed_cents = w.grabbed_cents;
        s.promises = w.promises;
        s.repeats_kept = w.repeats_kept;
        s.repeats_broken = w.repeats_broken;
        s.split_outcomes = w.split_outcomes.into_iter().collect();
        s.connected = w.connected;
        s.drops = w.drops;
        s.hellos_by_gateway = w.hellos_by_gateway;
        s.users_connected = w.users_connected;
        s.desired_shakes = w.desired_shakes;
        s.tier_transitions = w.tier_transitions;
        s.hops = w.hops;
        s.received_over_limit = w.received_over_limit;
        s.clients_by_tier = w.clients_by_tier.into_iter().collect();
        s.tier_seconds = w.tier_seconds.into_iter().collect();
        s.by_transport = w
            .by_transport
            .into_iter()
            .map(TransportStats::from_wire)
            .collect::<Result<_, _>>()?;
        s.pre_push = w.pre_push;
        Ok(s)
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
    fn the_wire_form_is_exact() {
        let mut a = Summary::default();
        for v in [1, 17, 2_000, 59_000_000, 60_000_000] {
            a.record(Op::Open, v);
        }
        a.error(Op::Shake, "timeout");
        a.record_win(2_345);
        a.outcome("greeting", 2);
        a.hello(3);
        a.users_connected = 1;
        a.connected = 1;
        let bytes = postcard::to_stdvec(&a.to_wire().unwrap()).unwrap();
        let b = Summary::from_wire(postcard::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(
            b.ops[Op::Open as usize].latency,
            a.ops[Op::Open as usize].latency
        );
        assert_eq!(b.errors_by_kind, a.errors_by_kind);
        assert_eq!(b.wins.latency, a.wins.latency);
        assert_eq!(b.wins.latency.len(), 1);
        a.record(Op::Shake, 2_345);
        a.record(Op::Shake, 10);
        let rest = a.shakes_not_won();
        assert_eq!((rest.latency.len(), rest.latency.max()), (1, 10));
        assert_eq!(b.hellos_by_gateway, vec![0, 0, 0, 1]);
        let mut m = Summary::default();
        m.merge(&b);
        m.merge(&b);
        assert_eq!(m.count(Op::Open), 10);
        assert_eq!(m.tiers[&2], 2);
        a.clear_interval();
        assert_eq!(a.requests(), 0);
        assert_eq!(a.connected, 1);
    }

    #[test]
    fn op_names_round_trip() {
        for op in OPS {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("shook"), None);
    }
}
