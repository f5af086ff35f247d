//! The shake decision, inside the gateway (seed mechanism 1): light, local, no network.
//!
//! Plain data in, plain data out: the caller passes the show time and the client's cookie,
//! and gets the outcome, the refreshed cookie and, for an envelope, the issue record it
//! must persist before answering. No I/O, no clock, no randomness of its own.

use crate::cursor::IssuanceCursor;
use crate::limit_view::{Issued, LimitView};
use crate::rate_budget::RateBudget;
use crate::seed_shard::SeedShard;
use crate::user_limits::{self, LimitCheck, UserTable};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use sut_wire::cookie::{Cookie, CookieError};
use sut_wire::protocol::Outcome;
use sut_wire::signing::SigningKey;
use sut_wire::timeline::{Round, Timeline};
use sut_wire::token::EnvelopeToken;

/// How long cookies outlive the last round.
const COOKIE_GRACE_MS: i64 = 3_600_000;
/// Leases are requested for rounds starting this soon, so the first shakes find one.
const LEASE_AHEAD_MS: i64 = 2_000;

/// The durable record of one issued envelope: what the audit checks invariants 1, 4, 5 on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRecord {
    pub round: u32,
    pub envelope_id: u64,
    pub user: u64,
    pub sponsor: u16,
    pub amount_cents: u32,
    pub gateway: u16,
    /// Show time of issuance, ms.
    pub show_ms: i64,
    /// The schedule version the shake was decided on: the audit checks the issue
    /// against that version's round window.
    pub version: u64,
}

impl IssueRecord {
    /// What the shared limit view needs of it.
    pub fn issued(&self) -> Issued {
        Issued {
            user: self.user,
            envelope_id: self.envelope_id,
            sponsor: self.sponsor,
        }
    }
}

/// Why a shake got what it got; a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Envelope,
    NoRound,
    UserLimit,
    SponsorTaken,
    RateLimited,
    Exhausted,
    LeaseWait,
    /// The user's owner refused the reservation: the user is at a limit elsewhere.
    LimitElsewhere,
    /// The owner could not be asked in time: no envelope without a reservation.
    OwnerUnavailable,
}

impl Reason {
    /// Every reason, in a fixed order (metrics resolve one counter per reason up front).
    pub const ALL: [Reason; 9] = [
        Reason::Envelope,
        Reason::NoRound,
        Reason::UserLimit,
        Reason::SponsorTaken,
        Reason::RateLimited,
        Reason::Exhausted,
        Reason::LeaseWait,
        Reason::LimitElsewhere,
        Reason::OwnerUnavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Envelope => "envelope",
            Reason::NoRound => "no_round",
            Reason::UserLimit => "user_limit",
            Reason::SponsorTaken => "sponsor_taken",
            Reason::RateLimited => "rate_limited",
            Reason::Exhausted => "exhausted",
            Reason::LeaseWait => "lease_wait",
            Reason::LimitElsewhere => "limit_elsewhere",
            Reason::OwnerUnavailable => "owner_unavailable",
        }
    }
}

/// What the gateway answers one shake with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShakeDecision {
    pub outcome: Outcome,
    pub cookie: Bytes,
    pub reason: Reason,
    /// Present for an envelope: persist it before the reply leaves.
    pub issued: Option<IssueRecord>,
}

struct RoundIssuer {
    shard: SeedShard,
    cursor: IssuanceCursor,
    rate: RateBudget,
}

/// The gateway's deciding state.
pub struct ShakeCore {
    gateway: u16,
    gateways: u16,
    key: SigningKey,
    timeline: Timeline,
    /// The schedule version `timeline` is.
    version: u64,
    rounds: BTreeMap<u32, RoundIssuer>,
    users: UserTable,
    /// The third limit layer: what every gateway issued, as last synced.
    shared: LimitView,
}

impl ShakeCore {
    pub fn new(gateway: u16, gateways: u16, key: SigningKey, timeline: Timeline) -> Self {
        ShakeCore {
            gateway,
            gateways: gateways.max(1),
            key,
            version: timeline.version,
            timeline,
            rounds: BTreeMap::new(),
            users: UserTable::default(),
            shared: LimitView::default(),
        }
    }

    /// Merges issuance records fetched from the shared view; how many users it knows.
    pub fn merge_view(&mut self, records: &[Issued]) -> usize {
        for r in records {
            self.shared.record(*r);
        }
        self.shared.users()
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Takes a new schedule version at show time `now_ms`: rounds start, end and issue
    /// by it from now on. A round whose rate changed gets a new rate budget (starting
    /// empty, as after a restart); a round new to this gateway issues nothing until its
    /// shard is loaded ([`ShakeCore::load_round`]), and a raised budget nothing beyond
    /// the shard until its new envelopes are added ([`ShakeCore::extend_round`]).
    pub fn set_schedule(&mut self, version: u64, timeline: Timeline, now_ms: i64) {
        let gateways = self.gateways as f64;
        for round in &timeline.rounds {
            let old_rate = self.timeline.round(round.id).map(|r| r.rate);
            if let Some(issuer) = self.rounds.get_mut(&round.id) {
                if old_rate != Some(round.rate) {
                    issuer.rate = RateBudget::new(
                        round.rate / gateways,
                        Duration::from_millis(now_ms.max(0) as u64),
                    );
                }
            }
        }
        self.timeline = timeline;
        self.version = version;
    }

    /// Envelopes in a round's shard (0 when none is loaded).
    pub fn shard_len(&self, round: u32) -> u64 {
        self.rounds
            .get(&round)
            .map_or(0, |r| r.shard.envelopes.len() as u64)
    }

    /// Whether a round's shard is loaded.
    pub fn has_round(&self, round: u32) -> bool {
        self.rounds.contains_key(&round)
    }

    /// Adds envelopes to a round's shard (a raised budget's batch), after those it has.
    pub fn extend_round(&mut self, round: u32, envelopes: &[crate::seed_shard::SeedEnvelope]) {
        if let Some(issuer) = self.rounds.get_mut(&round) {
            issuer.shard.envelopes.extend_from_slice(envelopes);
            issuer.cursor.extend(issuer.shard.envelopes.len() as u64);
        }
    }

    /// This gateway's share of a round's global rate.
    fn rate_share(&self, round: &Round) -> f64 {
        round.rate / self.gateways as f64
    }

    /// Adds a round's shard at show time `now_ms`, resuming after `leased_end` (0 for a
    /// fresh shard).
    pub fn load_round(&mut self, shard: SeedShard, leased_end: u64, now_ms: i64) {
        let Some(round) = self.timeline.round(shard.round) else {
            return;
        };
        let share = self.rate_share(round);
        // Half a second of issuance per lease: few fsyncs, little skipped on a crash.
        let chunk = ((share * 0.5).ceil() as u64).max(8);
        let cursor = IssuanceCursor::resume(leased_end, shard.envelopes.len() as u64, chunk);
        self.rounds.insert(
            shard.round,
            RoundIssuer {
                shard,
                cursor,
                rate: RateBudget::new(share, Duration::from_millis(now_ms.max(0) as u64)),
            },
        );
    }

    /// Replays an issue record from disk after a restart (the table's memory).
    pub fn restore_issue(&mut self, record: &IssueRecord) {
        self.users.record(record.user, record.sponsor);
    }

    /// How long the lease keeper may sleep before it asks [`ShakeCore::wanted_leases`]
    /// again: 50 ms while a round runs or leases for it are a second from being wanted, a
    /// second otherwise, so that an idle
    /// gateway (one of dozens on a machine) stays asleep.
    pub fn lease_check_pause(&self, show_ms: i64) -> Duration {
        let busy = self.timeline.rounds.iter().any(|r| {
            let start = r.start.as_millis() as i64;
            let end = (r.start + r.duration).as_millis() as i64;
            show_ms + LEASE_AHEAD_MS + 1_000 >= start && show_ms <= end
        });
        Duration::from_millis(if busy { 50 } else { 1_000 })
    }

    /// Leases to persist now: for rounds that are on or about to start.
    pub fn wanted_leases(&mut self, show_ms: i64) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for (id, issuer) in self.rounds.iter_mut() {
            let Some(round) = self.timeline.round(*id) else {
                continue;
            };
            let start = round.start.as_millis() as i64;
            let end = (round.start + round.duration).as_millis() as i64;
            if show_ms + LEASE_AHEAD_MS >= start && show_ms < end {
                if let Some(lease) = issuer.cursor.wanted_lease() {
                    out.push((*id, lease));
                }
            }
        }
        out
    }

    pub fn lease_granted(&mut self, round: u32, end: u64) {
        if let Some(r) = self.rounds.get_mut(&round) {
            r.cursor.lease_granted(end);
        }
    }

    pub fn lease_failed(&mut self, round: u32) {
        if let Some(r) = self.rounds.get_mut(&round) {
            r.cursor.lease_failed();
        }
    }

    /// Issue position per round: (round, next index, lease end, shard size), for
    /// inspection and tests.
    pub fn positions(&self) -> Vec<(u32, u64, u64, u64)> {
        self.rounds
            .iter()
            .map(|(id, r)| {
                let (next, end) = r.cursor.position();
                (*id, next, end, r.shard.envelopes.len() as u64)
            })
            .collect()
    }

    /// Takes back a win the user's owner did not reserve (it is not issued: its id is
    /// skipped, never reused): the user gets a greeting instead, and this gateway's
    /// table and the returned cookie learn the sponsors the owner says the user holds
    /// (`known`; empty when the owner could not be asked).
    pub fn withdraw(
        &mut self,
        mut decision: ShakeDecision,
        show_ms: i64,
        user: u64,
        known: &[u16],
        reason: Reason,
    ) -> ShakeDecision {
        let Some(record) = decision.issued.take() else {
            return decision;
        };
        self.users.forget(user, record.sponsor);
        for s in known {
            self.users.record(user, *s);
        }
        let mut cookie =
            Cookie::open(&decision.cookie, user, show_ms, &self.key).unwrap_or(Cookie {
                user,
                ..Cookie::default()
            });
        if let Some(i) = cookie.sponsors.iter().position(|s| *s == record.sponsor) {
            cookie.sponsors.remove(i);
        }
        for s in known {
            if !cookie.sponsors.contains(s) {
                cookie.sponsors.push(*s);
            }
        }
        cookie
            .sponsors
            .truncate(sut_wire::cookie::MAX_ENVELOPES_PER_USER);
        decision.cookie = cookie.seal(&self.key);
        decision.outcome = match self.timeline.active(show_ms) {
            Some(round) => greeting(round, user, show_ms),
            None => Outcome::Nothing,
        };
        decision.reason = reason;
        decision
    }

    /// Decides one shake of `user` at show time `show_ms`.
    pub fn shake(
        &mut self,
        show_ms: i64,
        user: u64,
        cookie: &[u8],
    ) -> Result<ShakeDecision, CookieError> {
        let raw = cookie;
        let cookie = Cookie::open(raw, user, show_ms, &self.key)?;
        // Layers: the cookie, this gateway's table, then every gateway's view.
        let mut sponsors = self.users.merged(user, &cookie.sponsors);
        for s in self.shared.sponsors(user) {
            if !sponsors.contains(&s) {
                sponsors.push(s);
            }
        }
        let expires_ms = self.timeline.end().as_millis() as i64 + COOKIE_GRACE_MS;
        let seal = |sponsors: Vec<u16>, key: &SigningKey| {
            // A cookie that would say what the one sent says is that one: its encoding
            // is canonical (`Cookie::open` takes no other) and its signature holds under
            // this key, so sealing it again would give the same bytes for a hash's cost.
            if !raw.is_empty() && sponsors == cookie.sponsors && expires_ms == cookie.expires_ms {
                return Bytes::copy_from_slice(raw);
            }
            Cookie {
                user,
                sponsors,
                expires_ms,
            }
            .seal(key)
        };

        let Some(round) = self.timeline.active(show_ms).cloned() else {
            return Ok(ShakeDecision {
                outcome: Outcome::Nothing,
                cookie: seal(sponsors, &self.key),
                reason: Reason::NoRound,
                issued: None,
            });
        };
        let greeting = greeting(&round, user, show_ms);
        let reason = self.try_issue(&round, show_ms, user, &sponsors);
        let (outcome, issued) = match reason {
            Ok(record) => {
                self.users.record(user, record.sponsor);
                sponsors.push(record.sponsor);
                let token = EnvelopeToken {
                    user,
                    envelope_id: record.envelope_id,
                    amount_cents: record.amount_cents,
                    sponsor: record.sponsor,
                    round: record.round,
                    gateway: self.gateway,
                }
                .seal(&self.key);
                (
                    Outcome::Envelope {
                        token,
                        sponsor: record.sponsor,
                        amount_cents: record.amount_cents,
                    },
                    Some(record),
                )
            }
            Err(_) => (greeting, None),
        };
        Ok(ShakeDecision {
            outcome,
            cookie: seal(sponsors, &self.key),
            reason: match reason {
                Ok(_) => Reason::Envelope,
                Err(r) => r,
            },
            issued,
        })
    }

    fn try_issue(
        &mut self,
        round: &Round,
        show_ms: i64,
        user: u64,
        sponsors: &[u16],
    ) -> Result<IssueRecord, Reason> {
        let issuer = self.rounds.get_mut(&round.id).ok_or(Reason::Exhausted)?;
        if issuer.cursor.exhausted() {
            return Err(Reason::Exhausted);
        }
        if sponsors.len() >= sut_wire::cookie::MAX_ENVELOPES_PER_USER {
            return Err(Reason::UserLimit);
        }
        let index = issuer.cursor.peek().ok_or(Reason::LeaseWait)? as usize;
        let (_, leased_end) = issuer.cursor.position();
        // The head envelope may be of a sponsor this user already has. Look for another
        // inside the lease and move it to the head: every leased index counts as used
        // after a crash, so reordering inside the lease can never re-issue an id.
        let allowed = (index..leased_end as usize).find(|&j| {
            user_limits::check(sponsors, issuer.shard.envelopes[j].sponsor) == LimitCheck::Allowed
        });
        match allowed {
            Some(j) => issuer.shard.envelopes.swap(index, j),
            // The envelopes stay for the next shaker; this user gets a greeting.
            None => return Err(Reason::SponsorTaken),
        }
        let envelope = issuer.shard.envelopes[index];
        if !issuer
            .rate
            .try_take(Duration::from_millis(show_ms.max(0) as u64))
        {
            return Err(Reason::RateLimited);
        }
        issuer.cursor.take();
        Ok(IssueRecord {
            round: round.id,
            envelope_id: envelope.id,
            user,
            sponsor: envelope.sponsor,
            amount_cents: envelope.amount_cents,
            gateway: self.gateway,
            show_ms,
            version: self.version,
        })
    }
}

/// The greeting a user who wins nothing sees: a sponsor of the round, by user and second.
fn greeting(round: &Round, user: u64, show_ms: i64) -> Outcome {
    Outcome::Greeting {
        sponsor: round.sponsors[(user as usize ^ (show_ms / 1000) as usize) % round.sponsors.len()],
        resources: round.resources.clone(),
    }
}

#[cfg(test)]
mod tests;
