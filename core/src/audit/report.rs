//! What the audit found: figures per invariant, and every violation by kind.

use serde::{Deserialize, Serialize};

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
    /// The round's window in the last schedule version, show ms (none: cancelled).
    #[serde(default)]
    pub window_ms: Option<[i64; 2]>,
    #[serde(default)]
    pub first_issue_ms: Option<i64>,
    #[serde(default)]
    pub last_issue_ms: Option<i64>,
    /// Issues outside the round's window in the version they were decided on.
    #[serde(default)]
    pub outside_window: u64,
}

impl RoundFigures {
    /// Where the round's issues fell against its last window, when it has any.
    pub fn window_line(&self) -> Option<String> {
        let (Some(first), Some(last)) = (self.first_issue_ms, self.last_issue_ms) else {
            return None;
        };
        let s = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
        let window = match self.window_ms {
            Some([a, b]) => format!("window {} to {}", s(a), s(b)),
            None => "cancelled".to_string(),
        };
        Some(format!(
            "{window}; issued from {} to {}, {} outside the window of their version",
            s(first),
            s(last),
            self.outside_window
        ))
    }
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
            if let Some(line) = r.window_line() {
                writeln!(f, "             {line}")?;
            }
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
