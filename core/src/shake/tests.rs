//! The shake decision against its rules: rounds, limits, rate, budget, restarts.

use super::*;
use crate::seed_shard::generate;

fn core(envelopes: u64, rate: f64) -> ShakeCore {
    let timeline = Timeline::parse(
        &format!(
            "rounds:\n  - {{ id: 1, start: 1s, duration: 100s, envelopes: {envelopes}, rate: {rate}, amount_cents: [1, 100], sponsors: [1, 2, 3, 4, 5], resources: [9] }}\n"
        ),
        "test",
    )
    .unwrap();
    let key = SigningKey::from_bytes([4; 32]);
    let round = timeline.rounds[0].clone();
    let mut c = ShakeCore::new(0, 1, key, timeline);
    c.load_round(generate(&round, 1, 42).remove(0), 0, 0);
    c
}

fn grant_all(c: &mut ShakeCore, now: i64) {
    for (r, end) in c.wanted_leases(now) {
        c.lease_granted(r, end);
    }
}

#[test]
fn nothing_between_rounds() {
    let mut c = core(10, 100.0);
    let d = c.shake(500, 1, &[]).unwrap();
    assert_eq!(d.outcome, Outcome::Nothing);
    assert_eq!(d.reason, Reason::NoRound);
}

#[test]
fn no_lease_no_envelope() {
    let mut c = core(10, 100.0);
    let d = c.shake(1_000, 1, &[]).unwrap();
    assert_eq!(d.reason, Reason::LeaseWait);
    assert!(matches!(d.outcome, Outcome::Greeting { .. }));
}

#[test]
fn envelope_then_limits_hold_across_cookie_and_table() {
    let mut c = core(1000, 1000.0);
    grant_all(&mut c, 1_000);
    let mut cookie = Bytes::new();
    let mut got = Vec::new();
    for i in 0..200 {
        let now = 1_000 + i * 10;
        grant_all(&mut c, now);
        let d = c.shake(now, 7, &cookie).unwrap();
        cookie = d.cookie.clone();
        if let Some(rec) = d.issued {
            got.push(rec.sponsor);
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let mut uniq = got.clone();
    uniq.dedup();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3);
    // Dropping the cookie does not reset the count: the table remembers.
    let d = c.shake(5_000, 7, &[]).unwrap();
    assert_eq!(d.reason, Reason::UserLimit);
}

#[test]
fn a_withdrawn_win_is_a_greeting_and_teaches_the_table() {
    let mut c = core(1000, 1000.0);
    grant_all(&mut c, 1_000);
    let d = c.shake(1_000, 7, &[]).unwrap();
    let won = d.issued.expect("a first shake wins").sponsor;
    let elsewhere: Vec<u16> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|s| *s != won)
        .take(3)
        .collect();
    let w = c.withdraw(d, 1_000, 7, &elsewhere, Reason::LimitElsewhere);
    assert_eq!(w.issued, None);
    assert_eq!(w.reason, Reason::LimitElsewhere);
    assert!(matches!(w.outcome, Outcome::Greeting { .. }));
    let cookie = Cookie::open(&w.cookie, 7, 1_000, &c.key).unwrap();
    assert_eq!(cookie.sponsors, elsewhere, "the won sponsor is taken back");
    // The table now knows the user is at the limit, even without the cookie.
    grant_all(&mut c, 1_010);
    assert_eq!(c.shake(1_010, 7, &[]).unwrap().reason, Reason::UserLimit);
}

#[test]
fn a_win_withdrawn_for_an_unreachable_owner_costs_the_user_nothing() {
    let mut c = core(1000, 1000.0);
    grant_all(&mut c, 1_000);
    let d = c.shake(1_000, 7, &[]).unwrap();
    assert!(d.issued.is_some());
    let w = c.withdraw(d, 1_000, 7, &[], Reason::OwnerUnavailable);
    let cookie = Cookie::open(&w.cookie, 7, 1_000, &c.key).unwrap();
    assert!(cookie.sponsors.is_empty());
    grant_all(&mut c, 1_010);
    let again = c.shake(1_010, 7, &w.cookie).unwrap();
    assert_eq!(again.reason, Reason::Envelope, "{:?}", again.reason);
}

#[test]
fn the_shared_view_limits_a_user_this_gateway_never_saw() {
    let mut c = core(1000, 1000.0);
    c.merge_view(&[1u64, 2, 3].map(|i| Issued {
        user: 9,
        envelope_id: 100 + i,
        sponsor: i as u16,
    }));
    let mut other_won = 0;
    for i in 0..200 {
        let now = 1_000 + i * 10;
        grant_all(&mut c, now);
        assert!(
            c.shake(now, 9, &[]).unwrap().issued.is_none(),
            "a user at the limit on other gateways got another"
        );
        other_won += usize::from(c.shake(now, 10, &[]).unwrap().issued.is_some());
    }
    assert_eq!(
        other_won, 3,
        "a user the view does not know is served as before"
    );
}

#[test]
fn tampered_cookie_is_an_error() {
    let mut c = core(10, 10.0);
    let mut cookie = c.shake(1_000, 3, &[]).unwrap().cookie.to_vec();
    cookie[10] ^= 0xff;
    assert_eq!(c.shake(1_000, 3, &cookie), Err(CookieError::Tampered));
}

#[test]
fn issuance_respects_rate_and_budget() {
    let mut c = core(50, 10.0);
    let mut issued = Vec::new();
    // 20 s of shakes by many users, one every 5 ms.
    for step in 0..4000 {
        let now = 1_000 + step * 5;
        grant_all(&mut c, now);
        if let Some(r) = c.shake(now, step as u64, &[]).unwrap().issued {
            issued.push(r);
        }
    }
    assert_eq!(issued.len(), 50, "budget is all issued, no more");
    // Rate: 10/s plus a burst of 1; the first 3 seconds see at most 31.
    let early = issued.iter().filter(|r| r.show_ms < 4_000).count();
    assert!(early <= 31, "{early}");
    let mut ids: Vec<u64> = issued.iter().map(|r| r.envelope_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[test]
fn restart_never_reissues() {
    let mut c = core(10_000, 1000.0);
    let timeline_round = c.timeline().rounds[0].clone();
    grant_all(&mut c, 1_000);
    let mut first = Vec::new();
    for u in 0..5 {
        first.extend(c.shake(1_000 + u, u as u64, &[]).unwrap().issued);
    }
    let (_, _, leased, _) = c.positions()[0];
    // A new life resumes at the persisted lease end.
    let mut c2 = core(10_000, 1000.0);
    c2.rounds.clear();
    c2.load_round(generate(&timeline_round, 1, 42).remove(0), leased, 1_500);
    grant_all(&mut c2, 2_000);
    let second: Vec<_> = (0..5)
        .filter_map(|u| c2.shake(2_000 + u, 100 + u as u64, &[]).unwrap().issued)
        .collect();
    assert!(!second.is_empty());
    for r in &second {
        assert!(first.iter().all(|f| f.envelope_id != r.envelope_id));
    }
}

#[test]
fn a_new_version_moves_the_round_and_a_batch_raises_its_budget() {
    let mut c = core(10, 1000.0);
    let mut later = c.timeline().clone();
    later.rounds[0].start = Duration::from_secs(50);
    later.rounds[0].envelopes = 20;
    c.set_schedule(2, later.clone(), 2_000);
    // Off until its new start, whatever the old one said.
    assert_eq!(c.shake(2_000, 1, &[]).unwrap().reason, Reason::NoRound);
    let round = later.rounds[0].clone();
    let batch = crate::seed_shard::generate_batch(&round, 10, 20, 1, 42).remove(0);
    c.extend_round(1, &batch.envelopes);
    assert_eq!(c.shard_len(1), 20);
    let mut issued = Vec::new();
    for i in 0..400 {
        let now = 50_000 + i * 10;
        grant_all(&mut c, now);
        issued.extend(c.shake(now, i as u64, &[]).unwrap().issued);
    }
    assert_eq!(issued.len(), 20, "the raised budget, all of it");
    assert!(issued.iter().all(|r| r.version == 2 && r.show_ms >= 50_000));
}

#[test]
fn a_cookie_a_shake_does_not_change_comes_back_as_sent_and_equals_a_fresh_seal() {
    let mut c = core(1000, 1000.0);
    grant_all(&mut c, 1_000);
    let mut cookie = Bytes::new();
    for i in 0..200 {
        let now = 1_000 + i * 10;
        grant_all(&mut c, now);
        let d = c.shake(now, 7, &cookie).unwrap();
        let opened = Cookie::open(&d.cookie, 7, now, &c.key).unwrap();
        // Whatever path made it, the cookie is what sealing its contents gives.
        assert_eq!(d.cookie, opened.seal(&c.key), "shake {i}");
        if d.issued.is_none() && !cookie.is_empty() {
            assert_eq!(d.cookie, cookie, "shake {i}: nothing changed");
        }
        cookie = d.cookie.clone();
    }
    // An expired cookie carries nothing and is sealed afresh, not echoed.
    let expired = Cookie {
        user: 8,
        sponsors: vec![],
        expires_ms: 500,
    }
    .seal(&c.key);
    let d = c.shake(3_000, 8, &expired).unwrap();
    assert_ne!(d.cookie, expired);
    let back = Cookie::open(&d.cookie, 8, 3_000, &c.key).unwrap();
    assert!(back.expires_ms > 3_000, "{back:?}");
}
