//! The audit's checker: proves DESIGN.md §4 invariants 1 to 5 from a run's durable
//! records alone (seed shards, gateway issue and open logs, backend opens and split
//! pots, payment ledger). A pure function of [`Records`]: reading them from disk is the
//! services' part (`sut audit`), and tests break each invariant on purpose here.

mod report;
#[cfg(test)]
mod tests;

pub use report::{AuditReport, RoundFigures, SplitFigures, OVER_LIMIT};

use crate::rate_budget::burst_for;
use crate::seed_shard::{SeedEnvelope, SeedShard};
use crate::shake::IssueRecord;
use crate::split::{pot_for, Pot, Split, State};
use std::collections::{BTreeMap, HashMap, HashSet};
use sut_wire::cookie::MAX_ENVELOPES_PER_USER;
use sut_wire::open::{Credit, OpenEntry};
use sut_wire::split::{grab_credit_id, grab_of_credit, MAX_POT_ENVELOPE_ID};
use sut_wire::timeline::Round;

/// Everything a run left behind, as read from its files.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub gateways: u16,
    pub rounds: Vec<Round>,
    /// Every signed schedule version's rounds, by version, when the show's timeline
    /// changed live; empty when it never did (then `rounds` is every issue's).
    pub versions: BTreeMap<u64, Vec<Round>>,
    /// Every gateway's shard of every round.
    pub shards: Vec<SeedShard>,
    /// Every gateway's issue records.
    pub issued: Vec<IssueRecord>,
    /// (gateway, round) -> end of the issuance lease it persisted.
    pub leases: HashMap<(u16, u32), u64>,
    /// Opens the gateways told users succeeded.
    pub told_opened: Vec<OpenEntry>,
    /// Ids of opens still in a gateway queue and of credits still in the backend's
    /// outbox: pending at the stop, not lost.
    pub pending: Vec<u64>,
    /// Opens the envelope backend recorded.
    pub recorded_opens: Vec<OpenEntry>,
    /// The backend's split pots, once shared or recycled.
    pub splits: Vec<Split>,
    /// Payment's ledger, and the sum of its balances.
    pub ledger: Vec<Credit>,
    pub balances_cents: u64,
}

/// What payment credited to each user (opens and grabs alike), by user: the other
/// side of what a load generator's users were told.
pub fn credits_by_user(ledger: &[Credit]) -> BTreeMap<u64, u64> {
    let mut by_user = BTreeMap::new();
    for c in ledger {
        *by_user.entry(c.user).or_insert(0) += u64::from(c.amount_cents);
    }
    by_user
}

/// Checks a run's records against invariants 1 to 5.
pub fn check(r: &Records) -> AuditReport {
    let mut f = Findings::default();
    let mut report = AuditReport {
        in_flight: r.pending.len() as u64,
        ..AuditReport::default()
    };
    let seeds = seed_index(&r.shards);
    let issued = check_issues(&mut f, &seeds, &r.issued);
    report.issued = issued.len() as u64;
    let ledger = split_ledger(&r.ledger);
    check_credits(&mut f, &mut report, r, &seeds, &issued, &ledger);
    check_splits(&mut f, &mut report.split, r, &ledger.grabs);
    if report.in_flight > 0 {
        f.add(
            "queues not drained",
            format!(
                "{} opens pending at the stop (queued, not lost); stop the system cleanly and audit again",
                report.in_flight
            ),
        );
    }
    check_limits(&mut f, &mut report, &issued);
    check_rounds(&mut f, &mut report, r, &seeds, &issued);
    report.lost = f.count(LOST_OPEN) + f.count(LOST_GRAB);
    report.duplicated =
        f.count(ISSUED_TWICE) + f.count(CREDITED_TWICE) + f.count(DOUBLE_GRAB_CREDIT);
    report.violations = f.lines();
    report
}

const ISSUED_TWICE: &str = "envelope issued twice";
const LOST_OPEN: &str = "lost: opened but never credited";
const CREDITED_TWICE: &str = "credited more than once";
const LOST_GRAB: &str = "lost: grabbed but never credited";
const DOUBLE_GRAB_CREDIT: &str = "grab credited more than once";

/// Every seed envelope by id, with its gateway; and each (gateway, round) shard's length.
struct SeedIndex {
    by_id: HashMap<u64, (u16, SeedEnvelope)>,
    shard_len: HashMap<(u16, u32), u64>,
}

fn seed_index(shards: &[SeedShard]) -> SeedIndex {
    let mut by_id = HashMap::new();
    let mut shard_len = HashMap::new();
    for shard in shards {
        shard_len.insert((shard.gateway, shard.round), shard.envelopes.len() as u64);
        for e in &shard.envelopes {
            by_id.insert(e.id, (shard.gateway, *e));
        }
    }
    SeedIndex { by_id, shard_len }
}

/// Invariant 1: no id issued twice; every issued id is a real envelope of its gateway.
/// Returns the issues by id.
fn check_issues(
    f: &mut Findings,
    seeds: &SeedIndex,
    issued: &[IssueRecord],
) -> HashMap<u64, IssueRecord> {
    let mut by_id: HashMap<u64, IssueRecord> = HashMap::new();
    for r in issued {
        match seeds.by_id.get(&r.envelope_id) {
            None => f.add(
                "issued an id in no seed shard",
                format!("id {}", r.envelope_id),
            ),
            Some((g, e)) => {
                if *g != r.gateway || e.amount_cents != r.amount_cents || e.sponsor != r.sponsor {
                    f.add(
                        "issue differs from its seed",
                        format!("id {}", r.envelope_id),
                    );
                }
            }
        }
        if by_id.insert(r.envelope_id, *r).is_some() {
            f.add(ISSUED_TWICE, format!("id {}", r.envelope_id));
        }
    }
    by_id
}

/// Payment's ledger, by credit id: opens' credits apart from grabs' credits.
struct Ledger {
    opens: HashMap<u64, Vec<Credit>>,
    grabs: HashMap<u64, Vec<Credit>>,
}

fn split_ledger(ledger: &[Credit]) -> Ledger {
    let mut l = Ledger {
        opens: HashMap::new(),
        grabs: HashMap::new(),
    };
    for c in ledger {
        let side = if grab_of_credit(c.envelope_id).is_some() {
            &mut l.grabs
        } else {
            &mut l.opens
        };
        side.entry(c.envelope_id).or_default().push(*c);
    }
    l
}

/// Invariant 2: every open told succeeded is credited exactly once, at the seed amount;
/// no credit without an open; balances equal the ledger.
fn check_credits(
    f: &mut Findings,
    report: &mut AuditReport,
    r: &Records,
    seeds: &SeedIndex,
    issued: &HashMap<u64, IssueRecord>,
    ledger: &Ledger,
) {
    let sum = |m: &HashMap<u64, Vec<Credit>>| -> u64 {
        m.values()
            .flatten()
            .map(|c| u64::from(c.amount_cents))
            .sum()
    };
    report.credited_cents = sum(&ledger.opens);
    report.credited = ledger.opens.len() as u64;
    report.split.grab_credited_cents = sum(&ledger.grabs);
    report.split.grab_credits = ledger.grabs.len() as u64;
    report.balances_cents = r.balances_cents;
    let pending: HashSet<u64> = r.pending.iter().copied().collect();
    let told: HashMap<u64, &OpenEntry> = r
        .told_opened
        .iter()
        .map(|e| (e.token.envelope_id, e))
        .collect();
    for (id, entry) in &told {
        match issued.get(id) {
            None => f.add("open of an envelope never issued", format!("id {id}")),
            Some(i) if i.user != entry.token.user => {
                f.add("open by a user it was not issued to", format!("id {id}"))
            }
            _ => {}
        }
        match ledger.opens.get(id).map(|v| v.as_slice()) {
            // Still queued: pending, reported as such below, never lost.
            None | Some([]) if pending.contains(id) => {}
            None | Some([]) => f.add(LOST_OPEN, format!("id {id}")),
            Some([c]) => {
                let seed_amount = seeds.by_id.get(id).map(|(_, e)| e.amount_cents);
                if Some(c.amount_cents) != seed_amount || c.user != entry.token.user {
                    f.add("credit differs from the seed", format!("id {id}"));
                }
            }
            Some(more) => f.add(CREDITED_TWICE, format!("id {id} x{}", more.len())),
        }
    }
    for id in ledger.opens.keys() {
        if !told.contains_key(id) {
            f.add("credit without an open", format!("id {id}"));
        }
    }
    let ledger_cents = report.credited_cents + report.split.grab_credited_cents;
    if r.balances_cents != ledger_cents {
        f.add(
            "balances differ from the ledger",
            format!("{} vs {ledger_cents} cents", r.balances_cents),
        );
    }
    let backend_opens = r.recorded_opens.len() as u64;
    if backend_opens < report.credited {
        f.add(
            "payment credited what the backend never recorded",
            format!("{backend_opens} < {}", report.credited),
        );
    }
    report.opened = told.len() as u64;
    let opened_issued = told.keys().filter(|id| issued.contains_key(id)).count() as u64;
    report.unopened = report.issued.saturating_sub(opened_issued);
}

/// Invariant 3: every pot's grabs and recycling add up, no part is grabbed twice, each
/// grab is credited once at the amount dealt, and no grab credit stands alone.
fn check_splits(
    f: &mut Findings,
    figures: &mut SplitFigures,
    r: &Records,
    grab_credits: &HashMap<u64, Vec<Credit>>,
) {
    let (opens, splits) = (&r.recorded_opens, &r.splits);
    // The pots the opens imply (the lifetime does not change what a pot holds).
    let implied: HashMap<u64, Pot> = opens
        .iter()
        .filter(|o| o.token.envelope_id < MAX_POT_ENVELOPE_ID)
        .map(|o| {
            let t = &o.token;
            let pot = pot_for(t.envelope_id, t.user, t.amount_cents, o.opened_ms, 0);
            (t.envelope_id, pot)
        })
        .collect();
    figures.pots = implied.len() as u64;
    figures.pot_cents = implied.values().map(|p| p.cents).sum();
    let mut dealt: HashSet<u64> = HashSet::new();
    for s in splits {
        let id = s.pot.envelope_id;
        match implied.get(&id) {
            None => f.add("pot without a recorded open", format!("pot {id}")),
            Some(p) if (p.cents, p.parts, p.owner) != (s.pot.cents, s.pot.parts, s.pot.owner) => {
                f.add("pot differs from its open", format!("pot {id}"))
            }
            Some(_) => {}
        }
        for problem in s.check() {
            f.add("split invariant broken", problem);
        }
        if s.was_shared() {
            figures.shared += 1;
        }
        figures.grabs += s.grabs.len() as u64;
        figures.grabbed_cents += s.grabbed_cents();
        if matches!(s.state, State::Recycled { .. }) {
            figures.recycled_pots += 1;
            figures.recycled_cents += s.recycled_cents();
        }
        for (part, (user, cents)) in s.grabs.iter().enumerate() {
            let credit_id = grab_credit_id(id, part as u32);
            dealt.insert(credit_id);
            match grab_credits.get(&credit_id).map(|v| v.as_slice()) {
                None | Some([]) if r.pending.contains(&credit_id) => {}
                None | Some([]) => f.add(LOST_GRAB, format!("pot {id} part {part}")),
                Some([c]) => {
                    if c.user != *user || u64::from(c.amount_cents) != *cents {
                        f.add(
                            "grab credit differs from the grab",
                            format!("pot {id} part {part}"),
                        );
                    }
                }
                Some(more) => f.add(
                    DOUBLE_GRAB_CREDIT,
                    format!("pot {id} part {part} x{}", more.len()),
                ),
            }
        }
    }
    for id in grab_credits.keys() {
        if !dealt.contains(id) {
            f.add("credit without a grab", format!("credit {id}"));
        }
    }
    figures.open_cents = figures
        .pot_cents
        .saturating_sub(figures.grabbed_cents + figures.recycled_cents);
}

/// Invariant 4: users get at most 3 envelopes, at most 1 per sponsor. Who is over is
/// listed (sorted), so a load generator can tell honest users from its cheaters.
fn check_limits(f: &mut Findings, report: &mut AuditReport, issued: &HashMap<u64, IssueRecord>) {
    let mut per_user: HashMap<u64, Vec<u16>> = HashMap::new();
    for r in issued.values() {
        per_user.entry(r.user).or_default().push(r.sponsor);
    }
    for (user, sponsors) in &per_user {
        let distinct: HashSet<u16> = sponsors.iter().copied().collect();
        if sponsors.len() > MAX_ENVELOPES_PER_USER || distinct.len() != sponsors.len() {
            report.over_limit_users += 1;
            report.over_limit.push(*user);
            f.add(OVER_LIMIT, format!("user {user} got sponsors {sponsors:?}"));
        }
    }
    report.over_limit.sort_unstable();
}

/// Invariant 5: within budget, and within the global rate plus each gateway's burst.
fn check_rounds(
    f: &mut Findings,
    report: &mut AuditReport,
    r: &Records,
    seeds: &SeedIndex,
    issued: &HashMap<u64, IssueRecord>,
) {
    let versions = RoundVersions::of(r);
    for issue in issued.values() {
        if !versions.on_at(issue.version, issue.round, issue.show_ms) {
            f.add(
                OUTSIDE_WINDOW,
                format!(
                    "envelope {} of round {} at {} ms on version {}",
                    issue.envelope_id, issue.round, issue.show_ms, issue.version
                ),
            );
        }
    }
    for id in versions.ids() {
        let (budget, rate) = versions.most(id);
        let mine = issued.values().filter(|i| i.round == id);
        let mut times: Vec<i64> = mine.clone().map(|i| i.show_ms).collect();
        times.sort_unstable();
        let outside_window = mine
            .filter(|i| !versions.on_at(i.version, id, i.show_ms))
            .count() as u64;
        let n = r.gateways.max(1) as u64;
        let burst = n * (burst_for(rate / n as f64) as u64 + 1);
        let allowed = rate.ceil() as u64 + burst;
        let max_in_window = most_in_one_second(&times);
        let issued_here = times.len() as u64;
        let leased: u64 = (0..r.gateways)
            .map(|g| {
                let end = r.leases.get(&(g, id)).copied().unwrap_or(0);
                end.min(seeds.shard_len.get(&(g, id)).copied().unwrap_or(0))
            })
            .sum();
        let skipped = leased.saturating_sub(issued_here);
        report.skipped += skipped;
        if issued_here > budget {
            f.add(
                "round over budget",
                format!("round {id}: {issued_here} > {budget}"),
            );
        }
        if max_in_window > allowed {
            f.add(
                "round over its rate",
                format!("round {id}: {max_in_window} in 1 s > {allowed}"),
            );
        }
        report.rounds.push(RoundFigures {
            round: id,
            budget,
            issued: issued_here,
            skipped,
            rate_limit_per_s: rate,
            max_issued_in_1s: max_in_window,
            allowed_in_1s: allowed,
            window_ms: versions.last_window(id),
            first_issue_ms: times.first().copied(),
            last_issue_ms: times.last().copied(),
            outside_window,
        });
    }
}

const OUTSIDE_WINDOW: &str = "issued outside its round's window";

/// The rounds of every schedule version, as the audit judges issues by them.
struct RoundVersions<'a> {
    /// (version, rounds), oldest first; one entry (version 0) when the timeline never
    /// changed, which then judges every issue whatever version it names.
    by_version: Vec<(u64, &'a [Round])>,
}

impl<'a> RoundVersions<'a> {
    fn of(r: &'a Records) -> Self {
        let by_version = if r.versions.is_empty() {
            vec![(0, r.rounds.as_slice())]
        } else {
            r.versions
                .iter()
                .map(|(v, rs)| (*v, rs.as_slice()))
                .collect()
        };
        RoundVersions { by_version }
    }

    fn rounds(&self, version: u64) -> Option<&'a [Round]> {
        match self.by_version.as_slice() {
            [(0, only)] => Some(only),
            all => all.iter().find(|(v, _)| *v == version).map(|(_, rs)| *rs),
        }
    }

    /// Whether `round` was on at `show_ms` in `version` (false for an unknown version).
    fn on_at(&self, version: u64, round: u32, show_ms: i64) -> bool {
        let Some(rounds) = self.rounds(version) else {
            return false;
        };
        let t = show_ms as i128;
        rounds.iter().any(|r| {
            r.id == round
                && r.start.as_millis() as i128 <= t
                && t < (r.start + r.duration).as_millis() as i128
        })
    }

    /// Every round id any version had, ascending.
    fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .by_version
            .iter()
            .flat_map(|(_, rs)| rs.iter().map(|r| r.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The largest budget and rate any version gave the round.
    fn most(&self, id: u32) -> (u64, f64) {
        self.by_version
            .iter()
            .flat_map(|(_, rs)| rs.iter().filter(|r| r.id == id))
            .fold((0, 0.0), |(b, rate), r| {
                (b.max(r.envelopes), f64::max(rate, r.rate))
            })
    }

    /// The round's window in the last version (None: cancelled by then).
    fn last_window(&self, id: u32) -> Option<[i64; 2]> {
        let (_, last) = self.by_version.last()?;
        last.iter().find(|r| r.id == id).map(|r| {
            [
                r.start.as_millis() as i64,
                (r.start + r.duration).as_millis() as i64,
            ]
        })
    }
}

/// The most of `sorted` (ms) that fall within any one second.
fn most_in_one_second(sorted: &[i64]) -> u64 {
    let mut most = 0u64;
    let mut lo = 0usize;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= 1000 {
            lo += 1;
        }
        most = most.max((hi - lo + 1) as u64);
    }
    most
}

/// Keeps at most a few examples per kind of violation, with a count of the rest.
#[derive(Default)]
struct Findings {
    by_kind: BTreeMap<&'static str, (u64, Vec<String>)>,
}

impl Findings {
    fn add(&mut self, kind: &'static str, example: String) {
        let e = self.by_kind.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < 3 {
            e.1.push(example);
        }
    }
    fn count(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).map(|e| e.0).unwrap_or(0)
    }
    fn lines(&self) -> Vec<String> {
        self.by_kind
            .iter()
            .map(|(k, (n, ex))| format!("{k}: {n} (e.g. {})", ex.join("; ")))
            .collect()
    }
}
