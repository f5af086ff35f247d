//! The audit: after a run, proves DESIGN.md §4 invariants 1 to 5 from the durable
//! records alone (seed shards, gateway issue and open logs, backend opens and split
//! pots, payment ledger).

use crate::cookie::MAX_ENVELOPES_PER_USER;
use crate::envelope::split_store;
use crate::manifest::{Manifest, ManifestError};
use crate::rate_budget::burst_for;
use crate::seed_shard::{shard_path, SeedEnvelope, SeedShard, ShardError};
use crate::shake::IssueRecord;
use crate::store::{open_existing, StoreError};
use crate::{envelope, gateway, payment};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Figures for one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundFigures {
    pub round: u32,
    pub budget: u64,
    pub issued: u64,
    pub skipped: u64,
    pub rate_limit_per_s: f64,
    pub max_issued_in_1s: u64,
    pub allowed_in_1s: u64,
}

/// The split envelopes' money (invariant 3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitFigures {
    /// Pots: one per recorded open, and what they hold.
    pub pots: u64,
    pub pot_cents: u64,
    pub shared: u64,
    pub grabs: u64,
    pub grabbed_cents: u64,
    /// Grabs payment credited, and how much.
    pub grab_credits: u64,
    pub grab_credited_cents: u64,
    pub recycled_pots: u64,
    pub recycled_cents: u64,
    /// Neither grabbed nor recycled yet: pots still within their lifetime.
    pub open_cents: u64,
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub issued: u64,
    pub opened: u64,
    pub unopened: u64,
    pub credited: u64,
    pub credited_cents: u64,
    pub balances_cents: u64,
    /// Opens still in a gateway queue or the backend outbox.
    pub in_flight: u64,
    /// Leased ids never issued (a restart skips the rest of a lease): recycled, not lost.
    pub skipped: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub over_limit_users: u64,
    /// Who they are, sorted: a load generator with adversarial users tells honest from
    /// adversarial ones by id.
    pub over_limit: Vec<u64>,
    pub rounds: Vec<RoundFigures>,
    #[serde(default)]
    pub split: SplitFigures,
    pub violations: Vec<String>,
}

/// The kind of violation a user over the limit is reported as.
pub const OVER_LIMIT: &str = "user over the limit";

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Passed, excusing users over the limit for whom `excused` holds: the load
    /// generator's cheaters (the layers bound them; invariant 4 is for honest clients),
    /// and honest users whose clients never received the excess. Any other violation
    /// still fails.
    pub fn passed_excusing(&self, excused: impl Fn(u64) -> bool) -> bool {
        self.violations.iter().all(|v| v.starts_with(OVER_LIMIT))
            && self.over_limit.iter().all(|u| excused(*u))
    }
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

/// Audits the run whose data directory is `data`.
pub fn run(data: &Path) -> Result<AuditReport, AuditError> {
    let manifest = Manifest::load(data)?;
    let seeds = data.join("seeds");
    let mut seed_of: HashMap<u64, (u16, SeedEnvelope)> = HashMap::new();
    let mut shard_len: HashMap<(u16, u32), u64> = HashMap::new();
    for round in &manifest.timeline.rounds {
        for g in 0..manifest.gateways {
            let shard = SeedShard::load(&shard_path(&seeds, round.id, g), round.id, g)?;
            shard_len.insert((g, round.id), shard.envelopes.len() as u64);
            for e in shard.envelopes {
                seed_of.insert(e.id, (g, e));
            }
        }
    }

    let mut f = Findings::default();
    let mut report = AuditReport::default();
    let mut issued: Vec<IssueRecord> = Vec::new();
    let mut told_opened: HashMap<u64, crate::passthrough::OpenEntry> = HashMap::new();
    let mut leases: HashMap<(u16, u32), u64> = HashMap::new();
    for g in 0..manifest.gateways {
        let db = open_existing(&gateway::store::db_path(data, g))?;
        let rec = gateway::store::read(&db)?;
        report.in_flight += rec.queue.len() as u64;
        for (round, end) in rec.leases {
            leases.insert((g, round), end);
        }
        issued.extend(rec.issued);
        for entry in gateway::store::read_opened(&db)? {
            told_opened.insert(entry.token.envelope_id, entry);
        }
    }

    // Invariant 1: no id issued twice; every issued id is a real envelope of its gateway.
    let mut issued_by_id: HashMap<u64, IssueRecord> = HashMap::new();
    for r in &issued {
        match seed_of.get(&r.envelope_id) {
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
        if issued_by_id.insert(r.envelope_id, *r).is_some() {
            f.add("envelope issued twice", format!("id {}", r.envelope_id));
        }
    }
    report.issued = issued_by_id.len() as u64;

    // Invariant 2: every open told succeeded is credited exactly once, at the seed amount.
    let (ledger, balances) = payment::read_ledger(&open_existing(&payment::db_path(data))?)?;
    let env_db = open_existing(&envelope::db_path(data))?;
    report.in_flight += envelope::read_outbox(&env_db)?.len() as u64;
    let recorded_opens = envelope::read_opens(&env_db)?;
    let backend_opens = recorded_opens.len() as u64;
    let mut credits: HashMap<u64, Vec<crate::rpc::Credit>> = HashMap::new();
    let mut grab_credits: HashMap<u64, Vec<crate::rpc::Credit>> = HashMap::new();
    for c in &ledger {
        if split_store::grab_of_credit(c.envelope_id).is_some() {
            grab_credits.entry(c.envelope_id).or_default().push(*c);
            report.split.grab_credited_cents += c.amount_cents as u64;
            continue;
        }
        credits.entry(c.envelope_id).or_default().push(*c);
        report.credited_cents += c.amount_cents as u64;
    }
    report.split.grab_credits = grab_credits.len() as u64;
    report.credited = credits.len() as u64;
    report.balances_cents = balances;
    for (id, entry) in &told_opened {
        match issued_by_id.get(id) {
            None => f.add("open of an envelope never issued", format!("id {id}")),
            Some(r) if r.user != entry.token.user => {
                f.add("open by a user it was not issued to", format!("id {id}"))
            }
            _ => {}
        }
        match credits.get(id).map(|v| v.as_slice()) {
            None | Some([]) => f.add("lost: opened but never credited", format!("id {id}")),
            Some([c]) => {
                let seed_amount = seed_of.get(id).map(|(_, e)| e.amount_cents);
                if Some(c.amount_cents) != seed_amount || c.user != entry.token.user {
                    f.add("credit differs from the seed", format!("id {id}"));
                }
            }
            Some(more) => f.add(
                "credited more than once",
                format!("id {id} x{}", more.len()),
            ),
        }
    }
    for id in credits.keys() {
        if !told_opened.contains_key(id) {
            f.add("credit without an open", format!("id {id}"));
        }
    }
    let ledger_cents = report.credited_cents + report.split.grab_credited_cents;
    if balances != ledger_cents {
        f.add(
            "balances differ from the ledger",
            format!("{balances} vs {ledger_cents} cents"),
        );
    }
    audit_splits(
        &mut f,
        &mut report.split,
        &recorded_opens,
        &split_store::read_splits(&env_db)?,
        &grab_credits,
    );
    if report.in_flight > 0 {
        f.add(
            "queues not drained",
            format!(
                "{} opens not yet credited; stop the system cleanly and audit again",
                report.in_flight
            ),
        );
    }
    report.opened = told_opened.len() as u64;
    report.unopened = report.issued.saturating_sub(
        told_opened
            .keys()
            .filter(|id| issued_by_id.contains_key(id))
            .count() as u64,
    );
    report.lost = f.count("lost: opened but never credited") + f.count(LOST_GRAB);
    report.duplicated = f.count("envelope issued twice")
        + f.count("credited more than once")
        + f.count(DOUBLE_GRAB_CREDIT);
    if backend_opens < report.credited {
        f.add(
            "payment credited what the backend never recorded",
            format!("{backend_opens} < {}", report.credited),
        );
    }

    // Invariant 4: honest users get at most 3 envelopes, at most 1 per sponsor.
    let mut per_user: HashMap<u64, Vec<u16>> = HashMap::new();
    for r in issued_by_id.values() {
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

    // Invariant 5: within budget, and within the global rate plus each gateway's burst.
    for round in &manifest.timeline.rounds {
        let mut times: Vec<i64> = issued_by_id
            .values()
            .filter(|r| r.round == round.id)
            .map(|r| r.show_ms)
            .collect();
        times.sort_unstable();
        let n = manifest.gateways as u64;
        let burst = n * (burst_for(round.rate / n as f64) as u64 + 1);
        let allowed = (round.rate * 1.0).ceil() as u64 + burst;
        let mut max_in_window = 0u64;
        let mut lo = 0usize;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= 1000 {
                lo += 1;
            }
            max_in_window = max_in_window.max((hi - lo + 1) as u64);
        }
        let issued_here = times.len() as u64;
        let leased: u64 = (0..manifest.gateways)
            .map(|g| {
                let end = leases.get(&(g, round.id)).copied().unwrap_or(0);
                end.min(shard_len.get(&(g, round.id)).copied().unwrap_or(0))
            })
            .sum();
        let skipped = leased.saturating_sub(issued_here);
        report.skipped += skipped;
        if issued_here > round.envelopes {
            f.add(
                "round over budget",
                format!("round {}: {issued_here} > {}", round.id, round.envelopes),
            );
        }
        if max_in_window > allowed {
            f.add(
                "round over its rate",
                format!("round {}: {max_in_window} in 1 s > {allowed}", round.id),
            );
        }
        report.rounds.push(RoundFigures {
            round: round.id,
            budget: round.envelopes,
            issued: issued_here,
            skipped,
            rate_limit_per_s: round.rate,
            max_issued_in_1s: max_in_window,
            allowed_in_1s: allowed,
        });
    }
    report.violations = f.lines();
    Ok(report)
}

const LOST_GRAB: &str = "lost: grabbed but never credited";
const DOUBLE_GRAB_CREDIT: &str = "grab credited more than once";

/// Invariant 3: every pot's grabs and recycling add up, no part is grabbed twice, each
/// grab is credited once at the amount dealt, and no grab credit stands alone.
fn audit_splits(
    f: &mut Findings,
    figures: &mut SplitFigures,
    opens: &[envelope::OpenRecord],
    splits: &[crate::split::Split],
    grab_credits: &HashMap<u64, Vec<crate::rpc::Credit>>,
) {
    // The pots the opens imply (the lifetime does not change what a pot holds).
    let implied: HashMap<u64, crate::split::Pot> = opens
        .iter()
        .filter(|o| o.entry.token.envelope_id < split_store::MAX_POT_ENVELOPE_ID)
        .map(|o| (o.entry.token.envelope_id, split_store::pot_of(o, 0)))
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
        if matches!(s.state, crate::split::State::Recycled { .. }) {
            figures.recycled_pots += 1;
            figures.recycled_cents += s.recycled_cents();
        }
        for (part, (user, cents)) in s.grabs.iter().enumerate() {
            let credit_id = split_store::grab_credit_id(id, part as u32);
            dealt.insert(credit_id);
            match grab_credits.get(&credit_id).map(|v| v.as_slice()) {
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

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "audit")?;
        writeln!(f, "  envelopes issued   {:>10}", self.issued)?;
        writeln!(f, "    opened           {:>10}", self.opened)?;
        writeln!(f, "    unopened         {:>10}", self.unopened)?;
        writeln!(
            f,
            "  credited           {:>10}  ({} cents; balances {} cents)",
            self.credited, self.credited_cents, self.balances_cents
        )?;
        writeln!(f, "  in flight          {:>10}", self.in_flight)?;
        writeln!(f, "  skipped (recycled) {:>10}", self.skipped)?;
        writeln!(f, "  lost               {:>10}", self.lost)?;
        writeln!(f, "  duplicated         {:>10}", self.duplicated)?;
        writeln!(f, "  users over limit   {:>10}", self.over_limit_users)?;
        let sp = &self.split;
        writeln!(
            f,
            "  split pots         {:>10}  ({} cents): shared {}, grabs {} ({} cents; credited {} for {} cents), recycled {} pots ({} cents), still open {} cents",
            sp.pots, sp.pot_cents, sp.shared, sp.grabs, sp.grabbed_cents, sp.grab_credits, sp.grab_credited_cents, sp.recycled_pots, sp.recycled_cents, sp.open_cents
        )?;
        for r in &self.rounds {
            writeln!(
                f,
                "  round {:<4} issued {}/{} budget, peak {} in 1 s (allowed {} at {}/s), skipped {}",
                r.round, r.issued, r.budget, r.max_issued_in_1s, r.allowed_in_1s, r.rate_limit_per_s, r.skipped
            )?;
        }
        if self.passed() {
            writeln!(
                f,
                "verdict: PASS - nothing lost, nothing duplicated, every limit held"
            )
        } else {
            writeln!(f, "verdict: FAIL")?;
            for v in &self.violations {
                writeln!(f, "  violation: {v}")?;
            }
            Ok(())
        }
    }
}
