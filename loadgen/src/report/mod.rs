//! The end-of-run summary: a table for people, JSON for machines.

pub use crate::limit_report::LimitReport;
use crate::op_report::ms;
pub use crate::op_report::OpReport;
pub use crate::origin::Origin;
use crate::promises::PromiseReport;
use crate::resources::ResourceReport;
use crate::stats::{Summary, OPS};
use crate::threshold::Threshold;
use serde::Serialize;
use std::collections::BTreeMap;
use sut_core::audit::AuditReport;

mod table;

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub observed: String,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub profile: String,
    pub duration_s: f64,
    pub users: u64,
    pub ops: BTreeMap<&'static str, OpReport>,
    /// The shakes that won an envelope, already in `ops.shake`: they waited for their
    /// reservation and durable record, the others were decided in memory.
    pub shake_wins: OpReport,
    /// The other decided shakes (`ops.shake` without the wins).
    pub shake_not_won: OpReport,
    pub shake_outcomes: BTreeMap<String, u64>,
    pub tiers_seen: BTreeMap<u8, u64>,
    /// User-seconds spent at each tier, and how often users changed tier.
    pub tier_seconds: BTreeMap<u8, f64>,
    pub tier_transitions: u64,
    /// Shakes users wanted, which the shake requests carried coalesced.
    pub desired_shakes: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub error_rate: f64,
    pub opened_cents: u64,
    /// Cents users were told their grabs of split parts brought.
    pub grabbed_cents: u64,
    /// How shares and grabs ended (`share/ok`, `grab/no_parts_left`, ...).
    pub split_outcomes: BTreeMap<String, u64>,
    pub connection_drops: u64,
    /// The generator's own lateness in sending (included in the latencies above).
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    /// Users that held a session at least once, and sessions established per gateway
    /// (in the order of the gateway list): with no drops, each user's one session.
    pub users_connected: u64,
    pub sessions_by_gateway: Vec<u64>,
    /// The honest users' figures by transport, when the run's users use QUIC (empty
    /// otherwise).
    pub transports: BTreeMap<&'static str, crate::transport_report::TransportReport>,
    /// The profile's network conditions and what the run could not apply (see
    /// `crate::network::describe`).
    pub network: Vec<String>,
    /// Requests (answered or failed) by worker; they sum to `requests`.
    pub requests_by_worker: Vec<u64>,
    pub requests: u64,
    pub resources: Option<ResourceReport>,
    /// The run second by second.
    pub series: Vec<Second>,
    pub thresholds: Vec<ThresholdResult>,
    pub audit: Option<AuditReport>,
    /// What the profile's faults did to the system, in order.
    pub faults: Vec<crate::faults::FaultEvent>,
    /// Each live programme change: when every gateway applied it, by which channel,
    /// and the shakes decided on the version it replaced.
    #[serde(default)]
    pub timeline: Vec<crate::live_timeline::ChangeReport>,
    /// Decided shakes by the schedule version their reply named (the clients' side).
    #[serde(default)]
    pub shake_versions: BTreeMap<u64, u64>,
    /// Resource pre-push: coverage, bytes, tampered copies, greetings' hits.
    pub pre_push: Option<crate::pre_push::report::PrePushReport>,
    pub limits: Option<LimitReport>,
    /// What each user was told against what payment credited it.
    pub promises: Option<PromiseReport>,
    /// Hostile users' figures, apart from everything above (which is the honest users').
    pub hostile: Option<crate::hostile::HostileFigures>,
    /// Which users this process's figures cover, and when they started.
    pub origin: Origin,
    /// A distributed run's agents.
    pub cluster: Option<crate::cluster::report::ClusterReport>,
    /// Which run this is: when, which build, seed, profile, command line, machine.
    pub identity: Option<crate::identity::Identity>,
    /// What the command line changed in the profile (`--users`, `-e`, ...).
    pub overrides: Vec<String>,
    /// The aborting threshold that stopped the run early, and what it observed.
    pub aborted: Option<String>,
    /// Whether the run was interrupted (Ctrl-C).
    pub interrupted: bool,
    pub passed: bool,
    /// What `loadgen run` exits with (set by [`crate::exit::stamp`]).
    pub exit_code: u8,
    /// Each operation's latency at percentiles from 0 to 99.999 (percentile, ms): the
    /// whole distribution, which the HTML report plots.
    pub latency_distribution: BTreeMap<&'static str, Vec<(f64, f64)>>,
}

/// Whether every open and every grab a user was told succeeded was credited: user by
/// user when the credits by user are known (see [`crate::promises`]); otherwise the
/// money the gateways promised is at most what payment credited, for opens and grabs
/// each (more is possible: one recorded whose reply the user never got).
pub fn promises_kept(
    audit: &AuditReport,
    promises: Option<&PromiseReport>,
    opened_cents: u64,
    grabbed_cents: u64,
) -> bool {
    match promises {
        Some(p) => p.kept(),
        None => {
            audit.credited_cents >= opened_cents && audit.split.grab_credited_cents >= grabbed_cents
        }
    }
}

/// Whether the audit passed (or there was none). Adversarial users over the limit are
/// measured, not failures: invariant 4 is for honest users, and any other violation
/// still fails.
pub fn audit_passed(audit: Option<&AuditReport>, limits: Option<&LimitReport>) -> bool {
    audit.is_none_or(|a| match limits {
        Some(l) => a.passed_excusing(|u| l.excuses(u)) && l.honest_over_limit == 0,
        None => a.passed(),
    })
}

/// The percentiles the distribution is read at: 0, then 1 - 10^(-k/4), up to 99.999,
/// then the maximum (100).
pub fn distribution_percentiles() -> Vec<f64> {
    let mut ps = vec![0.0];
    ps.extend((1..=20).map(|k| 100.0 * (1.0 - 10f64.powf(-(k as f64) / 4.0))));
    ps.push(100.0);
    ps
}

/// What the run itself cost; reported, never asserted.
pub struct RunCost {
    /// With adversarial users: how the limits held.
    pub limits: Option<LimitReport>,
    /// With an audit: what each user was told against what payment credited it.
    pub promises: Option<PromiseReport>,
    /// With hostile users: what they did and saw, kept apart from the honest users'.
    pub hostile: Option<crate::hostile::HostileFigures>,
    /// Parts the profile's faults took down and brought back.
    pub faults: Vec<crate::faults::FaultEvent>,
    pub series: Vec<Second>,
    pub requests_by_worker: Vec<u64>,
    pub resources: Option<ResourceReport>,
}

impl RunReport {
    pub fn build(
        profile: &str,
        summary: &Summary,
        duration_s: f64,
        users: u64,
        thresholds: &[Threshold],
        audit: Option<AuditReport>,
        cost: RunCost,
    ) -> RunReport {
        let ops = OPS
            .iter()
            .map(|op| {
                (
                    op.name(),
                    OpReport::of(&summary.ops[*op as usize], duration_s),
                )
            })
            .collect();
        let thresholds: Vec<ThresholdResult> = thresholds
            .iter()
            .map(|t| {
                let (observed, passed) = t.evaluate(summary, cost.resources.as_ref(), duration_s);
                ThresholdResult {
                    threshold: t.source.clone(),
                    observed: t.format_value(observed),
                    passed,
                }
            })
            .collect();
        let thresholds_held = thresholds.iter().all(|t| t.passed);
        let latency_distribution = OPS
            .iter()
            .filter(|op| !summary.ops[**op as usize].latency.is_empty())
            .map(|op| {
                let h = &summary.ops[*op as usize].latency;
                let points = distribution_percentiles()
                    .into_iter()
                    .map(|p| (p, ms(h.value_at_quantile(p / 100.0))))
                    .collect();
                (op.name(), points)
            })
            .collect();
        let seconds: Vec<_> = cost
            .series
            .iter()
            .filter_map(|s| s.pre_push.clone().map(|p| (s.t_s, p)))
            .collect();
        let pre_push = crate::pre_push::report::PrePushReport::build(&summary.pre_push, &seconds);
        let mut report = RunReport {
            profile: profile.to_string(),
            duration_s,
            users,
            ops,
            shake_wins: OpReport::of(&summary.wins, duration_s),
            shake_not_won: OpReport::of(&summary.shakes_not_won(), duration_s),
            shake_outcomes: summary.outcomes.clone(),
            tiers_seen: summary.tiers.clone(),
            tier_seconds: summary.tier_seconds.clone(),
            tier_transitions: summary.tier_transitions,
            desired_shakes: summary.desired_shakes,
            errors_by_kind: summary.errors_by_kind.clone(),
            error_rate: summary.error_rate(),
            opened_cents: summary.opened_cents,
            grabbed_cents: summary.grabbed_cents,
            split_outcomes: summary.split_outcomes.clone(),
            connection_drops: summary.drops,
            send_lag_p50_ms: ms(summary.send_lag.latency.value_at_quantile(0.5)),
            send_lag_p99_ms: ms(summary.send_lag.latency.value_at_quantile(0.99)),
            users_connected: summary.users_connected,
            sessions_by_gateway: summary.hellos_by_gateway.clone(),
            transports: crate::transport_report::TransportReport::of_run(summary, duration_s),
            network: Vec::new(),
            requests_by_worker: cost.requests_by_worker,
            requests: summary.requests(),
            resources: cost.resources,
            series: cost.series,
            thresholds,
            audit,
            faults: cost.faults,
            timeline: Vec::new(),
            shake_versions: summary.versions.clone(),
            pre_push,
            limits: cost.limits,
            promises: cost.promises,
            hostile: cost.hostile,
            origin: Origin::default(),
            cluster: None,
            identity: None,
            overrides: Vec::new(),
            aborted: None,
            interrupted: false,
            passed: false,
            exit_code: 0,
            latency_distribution,
        };
        report.passed = thresholds_held && report.system_held();
        report
    }

    /// Whether the system under test held (or was not audited): its audit passed,
    /// every promise of money was kept, and every part a fault took down came back (the
    /// audit would otherwise judge a system that was not whole).
    pub fn system_held(&self) -> bool {
        let audit_held = self.audit.as_ref().is_none_or(|a| {
            audit_passed(Some(a), self.limits.as_ref())
                && promises_kept(
                    a,
                    self.promises.as_ref(),
                    self.opened_cents,
                    self.grabbed_cents,
                )
        });
        audit_held && crate::faults::all_came_back(&self.faults)
    }

    /// Records whether a threshold aborted the run or it was interrupted (then
    /// [`crate::exit::stamp`] gives it its exit code).
    pub fn conclude(&mut self, aborted: Option<String>, interrupted: bool) {
        self.passed &= aborted.is_none() && !interrupted;
        self.aborted = aborted;
        self.interrupted = interrupted;
    }

    /// Records where the figures come from; a late start or a failed cluster fails the
    /// run.
    pub fn set_origin(
        &mut self,
        origin: Origin,
        cluster: Option<crate::cluster::report::ClusterReport>,
    ) {
        self.passed &= !origin.late() && cluster.as_ref().is_none_or(|c| c.passed);
        self.origin = origin;
        self.cluster = cluster;
    }

    pub fn breached(&self) -> Vec<&ThresholdResult> {
        self.thresholds.iter().filter(|t| !t.passed).collect()
    }
}

/// One second of a run, for the report's time series.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t_s: f64,
    pub connected: u64,
    /// Users the stages asked for.
    pub target: u64,
    /// Shakes decided in this second (not counting "come back later" replies).
    pub shakes: u64,
    pub come_back_later: u64,
    pub shake_p50_ms: f64,
    pub shake_p99_ms: f64,
    pub shake_p999_ms: f64,
    pub opens: u64,
    pub open_p50_ms: f64,
    pub open_p99_ms: f64,
    pub errors: u64,
    /// Shake replies in this second, by the tier they carried.
    pub replies_by_tier: BTreeMap<u8, u64>,
    /// Connected users by their current tier.
    pub clients_by_tier: BTreeMap<u8, u64>,
    /// Every operation answered or failed in this second: counts and p50, p99, p99.9 (ms).
    pub ops: BTreeMap<String, OpSecond>,
    /// Pre-push coverage and bytes, when phones pre-download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_push: Option<crate::pre_push::stats::PrePushSecond>,
}

/// One operation's figures in one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpSecond {
    /// Answered requests, and failed ones.
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}
