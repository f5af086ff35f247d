//! Seeded simulation of the envelope backend's durable split envelopes, on the real
//! database: random interleavings of opens, shares, grabs and expiry sweeps go through
//! `envelope::apply` in redb transactions, while the backend crashes before a commit
//! (the transaction is dropped: nothing of it survives), loses a reply after a commit
//! (the gateway sends the same request again), or restarts (the database is opened
//! again from its file). After every step, what is on disk must hold the split
//! invariants, every grab must have exactly one credit in the outbox at the amount
//! dealt, no grab credit may stand alone, and the expiry queue rebuilt from disk must
//! hold exactly the pots not yet recycled.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use sut::envelope::split_store::{read_splits, ExpiryQueue};
use sut::envelope::store::{self as envelope, Applied, EnvelopeOp};
use sut_core::passthrough::OpenEntry;
use sut_wire::split::{grab_credit_id, grab_of_credit, SplitAnswer, SplitRequest};
use sut_wire::token::EnvelopeToken;

/// Users 0..USERS share one friend circle; user `STRANGER` is in another.
const USERS: u64 = 30;
const STRANGER: u64 = 10_000;
const TTL_MS: i64 = 3_000;

fn open_op(envelope: u64, owner: u64, amount: u32, now: i64) -> EnvelopeOp {
    EnvelopeOp::Record {
        gateway: 0,
        entries: vec![(
            envelope,
            OpenEntry {
                token: EnvelopeToken {
                    user: owner,
                    envelope_id: envelope,
                    amount_cents: amount,
                    sponsor: 1,
                    round: 1,
                    gateway: 0,
                },
                opened_ms: now,
            },
        )],
    }
}

/// Checks what is on disk; `told` is what gateways were told each grab dealt.
fn check(db: &redb::Database, told: &BTreeMap<(u64, u64), u64>, seed: u64, step: usize) {
    let splits = read_splits(db).unwrap();
    let outbox: BTreeMap<u64, sut_wire::open::Credit> = envelope::read_outbox(db)
        .unwrap()
        .into_iter()
        .map(|c| (c.envelope_id, c))
        .collect();
    let mut dealt = BTreeSet::new();
    for s in &splits {
        let problems = s.check();
        assert!(problems.is_empty(), "seed {seed} step {step}: {problems:?}");
        for (part, (user, cents)) in s.grabs.iter().enumerate() {
            let id = grab_credit_id(s.pot.envelope_id, part as u32);
            dealt.insert(id);
            let c = outbox
                .get(&id)
                .unwrap_or_else(|| panic!("seed {seed} step {step}: a grab without its credit"));
            assert_eq!((c.user, u64::from(c.amount_cents)), (*user, *cents));
            if let Some(t) = told.get(&(s.pot.envelope_id, *user)) {
                assert_eq!(
                    t, cents,
                    "seed {seed} step {step}: told {t}, recorded {cents}"
                );
            }
        }
    }
    for id in outbox.keys().filter(|id| grab_of_credit(**id).is_some()) {
        assert!(
            dealt.contains(id),
            "seed {seed} step {step}: a credit without a grab"
        );
    }
    // Told grabs are all on disk (a reply is only sent after the commit).
    for (envelope, user) in told.keys() {
        let recorded = splits
            .iter()
            .any(|s| s.pot.envelope_id == *envelope && s.grabs.iter().any(|(u, _)| u == user));
        assert!(
            recorded,
            "seed {seed} step {step}: a told grab is not on disk"
        );
    }
    let live: BTreeSet<u64> = envelope::read_opens(db)
        .unwrap()
        .iter()
        .map(|o| o.entry.token.envelope_id)
        .filter(|id| {
            !splits.iter().any(|s| {
                s.pot.envelope_id == *id
                    && matches!(s.state, sut_core::split::State::Recycled { .. })
            })
        })
        .collect();
    let mut q = ExpiryQueue::load(db, TTL_MS).unwrap();
    let queued: BTreeSet<u64> = q.take_due(i64::MAX, usize::MAX).into_iter().collect();
    assert_eq!(
        queued, live,
        "seed {seed} step {step}: the expiry queue from disk"
    );
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envelope.redb");
    let (mut db, _, _) = envelope::open(&path).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut owners: BTreeMap<u64, u64> = BTreeMap::new();
    let mut told: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut now = 0i64;
    let (mut crashes, mut lost, mut restarts, mut grabs, mut recycled) = (0, 0, 0, 0, 0);
    for step in 0..400 {
        now += rng.random_range(0..60);
        let kind = rng.random_range(0..10);
        let shared: Vec<(u64, Vec<u64>)> = read_splits(&db)
            .unwrap()
            .into_iter()
            .filter_map(|s| match s.state {
                sut_core::split::State::Shared { friends } => Some((s.pot.envelope_id, friends)),
                _ => None,
            })
            .collect();
        let make = |rng: &mut ChaCha8Rng, owners: &mut BTreeMap<u64, u64>| -> EnvelopeOp {
            match kind {
                0 | 1 => {
                    let envelope = rng.random_range(0..60u64);
                    let owner = *owners
                        .entry(envelope)
                        .or_insert_with(|| rng.random_range(0..USERS));
                    open_op(envelope, owner, rng.random_range(1..500), now)
                }
                2 | 3 => {
                    let envelope = rng.random_range(0..60u64);
                    let user = owners.get(&envelope).copied().unwrap_or(0);
                    let mut friends = Vec::new();
                    for _ in 0..rng.random_range(1..6) {
                        friends.push(match rng.random_range(0..20) {
                            0 => user,     // oneself: refused
                            1 => STRANGER, // not a friend: refused
                            _ => rng.random_range(0..USERS),
                        });
                    }
                    friends.retain(|f| *f != user || rng.random_bool(0.5));
                    EnvelopeOp::Split {
                        requests: vec![(
                            SplitRequest::Share {
                                envelope_id: envelope,
                                user,
                                friends,
                            },
                            0.0,
                        )],
                        now_ms: now,
                        ttl_ms: TTL_MS,
                    }
                }
                4 => EnvelopeOp::Expire {
                    envelope_ids: (0..60).collect(),
                    now_ms: now,
                    ttl_ms: TTL_MS,
                },
                _ => {
                    // Mostly a friend grabbing a pot shared to them; now and then anyone.
                    let (envelope_id, user) = if !shared.is_empty() && rng.random_bool(0.8) {
                        let (id, friends) = &shared[rng.random_range(0..shared.len())];
                        (*id, friends[rng.random_range(0..friends.len())])
                    } else {
                        (rng.random_range(0..60u64), rng.random_range(0..USERS))
                    };
                    EnvelopeOp::Split {
                        requests: vec![(
                            SplitRequest::Grab { envelope_id, user },
                            rng.random::<f64>(),
                        )],
                        now_ms: now,
                        ttl_ms: TTL_MS,
                    }
                }
            }
        };
        let op = make(&mut rng, &mut owners);
        let retry = match &op {
            EnvelopeOp::Split {
                requests,
                now_ms,
                ttl_ms,
            } => Some(EnvelopeOp::Split {
                requests: requests.clone(),
                now_ms: *now_ms,
                ttl_ms: *ttl_ms,
            }),
            _ => None,
        };
        let grab_of = match &op {
            EnvelopeOp::Split { requests, .. } => match requests[0].0 {
                SplitRequest::Grab { envelope_id, user } => Some((envelope_id, user)),
                _ => None,
            },
            _ => None,
        };
        let txn = db.begin_write().unwrap();
        let applied = envelope::apply(&txn, op).unwrap();
        if rng.random_bool(0.1) {
            // Crash before the commit: the transaction is dropped, nothing survives.
            drop(txn);
            crashes += 1;
        } else {
            txn.commit().unwrap();
            if let Applied::Expired(r) = &applied {
                recycled += r.len();
            }
            let reply = match (retry, rng.random_bool(0.1)) {
                (Some(again), true) => {
                    // Committed, but the reply was lost: the same request again.
                    lost += 1;
                    let txn = db.begin_write().unwrap();
                    let second = envelope::apply(&txn, again).unwrap();
                    txn.commit().unwrap();
                    if let (Applied::Split(first), Applied::Split(second)) = (&applied, &second) {
                        if let SplitAnswer::Grabbed { cents, .. } = first[0].0 {
                            assert_eq!(
                                second[0].0,
                                SplitAnswer::Grabbed {
                                    cents,
                                    repeat: true
                                },
                                "seed {seed} step {step}: a retried grab gets its original answer, not a new deal"
                            );
                            assert!(second[0].1.is_none(), "a repeat credits nothing");
                        }
                    }
                    second
                }
                _ => applied,
            };
            if let (Some(key), Applied::Split(answers)) = (grab_of, &reply) {
                if let SplitAnswer::Grabbed { cents, repeat } = answers[0].0 {
                    match told.insert(key, cents) {
                        None => grabs += 1,
                        Some(before) => assert!(
                            repeat && before == cents,
                            "seed {seed}: told {before} then {cents} for one part"
                        ),
                    }
                }
            }
        }
        if rng.random_bool(0.03) {
            // Restart: everything in memory is gone; the file is all there is.
            drop(db);
            db = envelope::open(&path).unwrap().0;
            restarts += 1;
        }
        check(&db, &told, seed, step);
    }
    // In the end everything expires: each pot is fully grabbed or recycled.
    let txn = db.begin_write().unwrap();
    envelope::apply(
        &txn,
        EnvelopeOp::Expire {
            envelope_ids: (0..60).collect(),
            now_ms: now + 10 * TTL_MS,
            ttl_ms: TTL_MS,
        },
    )
    .unwrap();
    txn.commit().unwrap();
    check(&db, &told, seed, usize::MAX);
    let opened = envelope::read_opens(&db).unwrap().len();
    let splits = read_splits(&db).unwrap();
    assert_eq!(splits.len(), opened, "every pot has its row once settled");
    for s in &splits {
        assert_eq!(s.grabbed_cents() + s.recycled_cents(), s.pot.cents);
    }
    assert!(
        crashes > 0 && lost > 0 && restarts > 0 && grabs > 0 && recycled > 0,
        "seed {seed}: crashes {crashes}, lost replies {lost}, restarts {restarts}, grabs {grabs}, recycled {recycled}"
    );
}

#[test]
fn durable_splits_keep_their_invariants_through_crashes_and_restarts() {
    for seed in 0..8 {
        run(seed);
    }
}
