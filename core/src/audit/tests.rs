//! The checker against a clean run, and against runs broken on purpose: each of
//! invariants 1 to 5 must be reported when violated.

use super::*;
use crate::seed_shard::generate;
use std::time::Duration;
use sut_wire::token::EnvelopeToken;

fn round() -> Round {
    Round {
        id: 1,
        start: Duration::ZERO,
        duration: Duration::from_secs(10),
        envelopes: 40,
        rate: 10.0,
        amount_cents: [1, 500],
        sponsors: vec![1, 2, 3, 4],
        resources: vec![],
    }
}

/// A run of 2 gateways where each issues its shard's first 4 envelopes (one a second),
/// each to its own user, every one opened and credited; one pot shared and grabbed
/// once, its grab credited.
fn clean() -> Records {
    let shards = generate(&round(), 2, 9);
    let mut r = Records {
        gateways: 2,
        rounds: vec![round()],
        shards: shards.clone(),
        ..Records::default()
    };
    for shard in &shards {
        r.leases.insert((shard.gateway, 1), 4);
        for (i, e) in shard.envelopes.iter().take(4).enumerate() {
            let user = 100 + e.id;
            r.issued.push(IssueRecord {
                round: 1,
                envelope_id: e.id,
                user,
                sponsor: e.sponsor,
                amount_cents: e.amount_cents,
                gateway: shard.gateway,
                show_ms: i as i64 * 1_000,
                version: 1,
            });
            let entry = OpenEntry {
                token: EnvelopeToken {
                    user,
                    envelope_id: e.id,
                    amount_cents: e.amount_cents,
                    sponsor: e.sponsor,
                    round: 1,
                    gateway: shard.gateway,
                },
                opened_ms: 5_000,
            };
            r.told_opened.push(entry);
            r.recorded_opens.push(entry);
            r.ledger.push(Credit {
                envelope_id: e.id,
                user,
                amount_cents: e.amount_cents,
            });
        }
    }
    let first = r.recorded_opens[0];
    let t = first.token;
    let mut split = Split::new(pot_for(
        t.envelope_id,
        t.user,
        t.amount_cents,
        5_000,
        60_000,
    ));
    let friend = t.user + 1;
    split.share(t.user, &[friend], 6_000, |_, _| true).unwrap();
    let cents = split.grab(friend, 7_000, 0.5).unwrap().cents;
    r.ledger.push(Credit {
        envelope_id: grab_credit_id(t.envelope_id, 0),
        user: friend,
        amount_cents: cents as u32,
    });
    r.splits.push(split);
    r.balances_cents = r.ledger.iter().map(|c| u64::from(c.amount_cents)).sum();
    r
}

fn violations(r: &Records) -> Vec<String> {
    check(r).violations
}

fn assert_reports(r: &Records, kind: &str) {
    let v = violations(r);
    assert!(
        v.iter().any(|line| line.starts_with(kind)),
        "expected `{kind}` in {v:?}"
    );
}

#[test]
fn a_clean_run_passes_with_its_figures() {
    let report = check(&clean());
    assert!(report.passed(), "{report}");
    assert_eq!(report.issued, 8);
    assert_eq!(report.opened, 8);
    assert_eq!(report.credited, 8);
    assert_eq!((report.lost, report.duplicated, report.skipped), (0, 0, 0));
    assert_eq!(report.split.shared, 1);
    assert_eq!(report.split.grabs, 1);
    assert_eq!(report.split.grab_credits, 1);
    assert_eq!(report.rounds[0].issued, 8);
    assert_eq!(report.rounds[0].max_issued_in_1s, 2);
}

#[test]
fn invariant_1_an_id_issued_twice_is_reported() {
    let mut r = clean();
    let again = r.issued[0];
    r.issued.push(again);
    assert_reports(&r, ISSUED_TWICE);
    assert_eq!(check(&r).duplicated, 1);
}

#[test]
fn invariant_1_an_issue_unlike_its_seed_is_reported() {
    let mut r = clean();
    r.issued[1].amount_cents += 1;
    assert_reports(&r, "issue differs from its seed");
    let mut r = clean();
    r.issued[2].envelope_id = 1 << 50;
    assert_reports(&r, "issued an id in no seed shard");
}

#[test]
fn invariant_2_a_lost_or_doubled_credit_is_reported() {
    let mut lost = clean();
    let id = lost.told_opened[3].token.envelope_id;
    lost.ledger.retain(|c| c.envelope_id != id);
    lost.balances_cents = lost.ledger.iter().map(|c| u64::from(c.amount_cents)).sum();
    assert_reports(&lost, LOST_OPEN);
    assert_eq!(check(&lost).lost, 1);

    let mut doubled = clean();
    let c = doubled.ledger[0];
    doubled.ledger.push(c);
    doubled.balances_cents += u64::from(c.amount_cents);
    assert_reports(&doubled, CREDITED_TWICE);
}

#[test]
fn invariant_2_a_credit_without_an_open_or_at_another_amount_is_reported() {
    let mut r = clean();
    let id = r.told_opened[0].token.envelope_id;
    r.told_opened.retain(|e| e.token.envelope_id != id);
    assert_reports(&r, "credit without an open");

    let mut r = clean();
    r.ledger[2].amount_cents += 1;
    r.balances_cents += 1;
    assert_reports(&r, "credit differs from the seed");

    let mut r = clean();
    r.balances_cents += 7;
    assert_reports(&r, "balances differ from the ledger");
}

#[test]
fn opens_still_queued_are_pending_not_lost() {
    let mut r = clean();
    // One open still in a gateway's queue: told ok, not yet credited.
    let id = r.told_opened[5].token.envelope_id;
    r.ledger.retain(|c| c.envelope_id != id);
    r.balances_cents = r.ledger.iter().map(|c| u64::from(c.amount_cents)).sum();
    r.pending = vec![id];
    let report = check(&r);
    assert_reports(&r, "queues not drained");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.in_flight, 1);
    // The same open, not queued anywhere, is lost.
    r.pending.clear();
    assert_eq!(check(&r).lost, 1);
}

#[test]
fn invariant_3_broken_split_money_is_reported() {
    let mut lost = clean();
    lost.ledger
        .retain(|c| grab_of_credit(c.envelope_id).is_none());
    lost.balances_cents = lost.ledger.iter().map(|c| u64::from(c.amount_cents)).sum();
    assert_reports(&lost, LOST_GRAB);

    let mut doubled = clean();
    let grab = *doubled.ledger.last().unwrap();
    doubled.ledger.push(grab);
    doubled.balances_cents += u64::from(grab.amount_cents);
    assert_reports(&doubled, DOUBLE_GRAB_CREDIT);

    let mut grabbed_twice = clean();
    let part = grabbed_twice.splits[0].grabs[0];
    grabbed_twice.splits[0].grabs.push(part);
    assert_reports(&grabbed_twice, "split invariant broken");

    let mut bigger = clean();
    bigger.splits[0].pot.cents += 10;
    assert_reports(&bigger, "pot differs from its open");
}

#[test]
fn invariant_4_a_user_over_the_limits_is_reported_by_id() {
    let mut r = clean();
    // Give the first user every other issue of gateway 0 as well: 4 envelopes.
    let user = r.issued[0].user;
    for i in 1..4 {
        r.issued[i].user = user;
        r.told_opened[i].token.user = user;
        r.recorded_opens[i].token.user = user;
        r.ledger[i].user = user;
    }
    let report = check(&r);
    assert!(report.violations.iter().any(|v| v.starts_with(OVER_LIMIT)));
    assert_eq!(report.over_limit, vec![user]);
    assert!(report.passed_excusing(|u| u == user));
    assert!(!report.passed_excusing(|_| false));
}

#[test]
fn invariant_5_over_budget_or_over_rate_is_reported() {
    let mut r = clean();
    r.rounds[0].envelopes = 5;
    assert_reports(&r, "round over budget");

    let mut r = clean();
    r.rounds[0].rate = 0.5;
    for i in r.issued.iter_mut() {
        i.show_ms = 0;
    }
    assert_reports(&r, "round over its rate");
}

/// The clean run's round moved by a second version from 0-10 s to 20-30 s, with the
/// issues of gateway 1 decided on the new version inside the new window.
fn moved() -> Records {
    let mut r = clean();
    let mut later = round();
    later.start = Duration::from_secs(20);
    r.versions.insert(1, vec![round()]);
    r.versions.insert(2, vec![later]);
    for i in r.issued.iter_mut().filter(|i| i.gateway == 1) {
        i.version = 2;
        i.show_ms += 20_000;
    }
    r
}

#[test]
fn a_moved_round_issues_in_the_window_of_each_version() {
    let report = check(&moved());
    assert!(report.passed(), "{:?}", report.violations);
    let figures = &report.rounds[0];
    assert_eq!(figures.window_ms, Some([20_000, 30_000]));
    assert_eq!(figures.outside_window, 0);
    assert_eq!(figures.last_issue_ms, Some(23_000));
}

#[test]
fn invariant_5_an_issue_outside_its_versions_window_is_reported() {
    // Decided on version 2 while its round was still in the old window.
    let mut r = moved();
    let i = r.issued.iter().position(|i| i.version == 2).unwrap();
    r.issued[i].show_ms -= 20_000;
    assert_reports(&r, "issued outside its round's window");
    assert_eq!(check(&r).rounds[0].outside_window, 1);
    // A version nobody signed.
    let mut r = moved();
    r.issued[0].version = 7;
    assert_reports(&r, "issued outside its round's window");
}
