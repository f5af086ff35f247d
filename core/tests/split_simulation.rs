//! Seeded simulation of the split-envelope core through crashes: random interleavings
//! of open, share, grab and expiry, where the backend may crash before a step commits
//! (the step is lost and the client tries again later) or after it commits but before
//! the reply (the client retries the same request at once). After every step the
//! durable book must hold the split invariants, and every amount a client was told it
//! grabbed must be exactly what the book records, once.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use sut_core::split::{pot_for, SplitBook, SplitError};

const USERS: u64 = 40;

fn is_friend(a: u64, b: u64) -> bool {
    a != b && !(a ^ b).is_multiple_of(3)
}

#[derive(Debug, Clone)]
enum Request {
    Open {
        envelope: u64,
        owner: u64,
        amount: u32,
    },
    Share {
        envelope: u64,
        user: u64,
        friends: Vec<u64>,
    },
    Grab {
        envelope: u64,
        user: u64,
        roll: f64,
    },
    Expire,
}

/// The amount (or cents recycled) and whether it was a repeat.
fn apply(book: &mut SplitBook, r: &Request, now: i64) -> Result<(u64, bool), SplitError> {
    match r {
        Request::Open {
            envelope,
            owner,
            amount,
        } => {
            book.opened(pot_for(*envelope, *owner, *amount, now, 3_000));
            Ok((0, false))
        }
        Request::Share {
            envelope,
            user,
            friends,
        } => book
            .share(*envelope, *user, friends, now, is_friend)
            .map(|_| (0, false)),
        Request::Grab {
            envelope,
            user,
            roll,
        } => book
            .grab(*envelope, *user, now, *roll)
            .map(|g| (g.cents, g.repeat)),
        Request::Expire => Ok((book.expire(now).iter().map(|(_, c)| c).sum(), false)),
    }
}

fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut durable = SplitBook::default();
    let mut owners: BTreeMap<u64, u64> = BTreeMap::new();
    // What clients were told they grabbed: (envelope, user) -> cents.
    let mut told: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut now = 0i64;
    let (mut crashes, mut lost_replies, mut grabs) = (0, 0, 0);
    for step in 0..3_000 {
        now += rng.random_range(0..40);
        let r = match rng.random_range(0..10) {
            0 | 1 => {
                let envelope = rng.random_range(0..200u64);
                let owner = *owners
                    .entry(envelope)
                    .or_insert_with(|| rng.random_range(0..USERS));
                Request::Open {
                    envelope,
                    owner,
                    amount: rng.random_range(1..500),
                }
            }
            2 | 3 => {
                let envelope = rng.random_range(0..200u64);
                let user = owners.get(&envelope).copied().unwrap_or(0);
                let n = rng.random_range(0..6);
                // Mostly real friends; now and then a stranger or oneself (refused).
                let mut friends = Vec::new();
                for _ in 0..n {
                    let f = rng.random_range(0..USERS);
                    if is_friend(user, f) || rng.random_bool(0.1) {
                        friends.push(f);
                    }
                }
                Request::Share {
                    envelope,
                    user,
                    friends,
                }
            }
            4 => Request::Expire,
            _ => {
                // Mostly a friend grabbing a pot shared to them; now and then anyone.
                let shared: Vec<(u64, Vec<u64>)> = durable
                    .splits
                    .iter()
                    .filter_map(|(id, s)| match &s.state {
                        sut_core::split::State::Shared { friends } => Some((*id, friends.clone())),
                        _ => None,
                    })
                    .collect();
                let (envelope, user) = if !shared.is_empty() && rng.random_bool(0.8) {
                    let (id, friends) = &shared[rng.random_range(0..shared.len())];
                    (*id, friends[rng.random_range(0..friends.len())])
                } else {
                    (rng.random_range(0..200u64), rng.random_range(0..USERS))
                };
                Request::Grab {
                    envelope,
                    user,
                    roll: rng.random::<f64>(),
                }
            }
        };
        let mut working = durable.clone();
        let result = apply(&mut working, &r, now);
        if rng.random_bool(0.1) {
            // Crash before the commit: nothing of this step survives.
            crashes += 1;
            continue;
        }
        durable = working;
        let reply = if rng.random_bool(0.1) {
            // Committed, but the reply was lost: the client sends the same request again.
            lost_replies += 1;
            let mut again = durable.clone();
            let retry = apply(&mut again, &r, now);
            if let (Request::Grab { .. }, Ok((cents, _))) = (&r, &result) {
                assert_eq!(
                    retry,
                    Ok((*cents, true)),
                    "seed {seed} step {step}: a retried grab gets its original answer, not a new deal"
                );
            }
            durable = again;
            retry
        } else {
            result
        };
        if let (Request::Grab { envelope, user, .. }, Ok((cents, repeat))) = (&r, reply) {
            match told.insert((*envelope, *user), cents) {
                None => grabs += 1,
                Some(before) => assert!(
                    repeat && before == cents,
                    "seed {seed}: told {before} then {cents} for one part"
                ),
            }
        }
        let problems = durable.check();
        assert!(problems.is_empty(), "seed {seed} step {step}: {problems:?}");
        // Every grab the book records was told to its client at most once, with its amount.
        for (id, s) in &durable.splits {
            for (user, cents) in &s.grabs {
                if let Some(t) = told.get(&(*id, *user)) {
                    assert_eq!(t, cents, "seed {seed}: told {t}, recorded {cents}");
                }
            }
        }
    }
    // In the end everything expires: each pot is fully grabbed or recycled.
    durable.expire(now + 10_000);
    assert!(durable.check().is_empty());
    for s in durable.splits.values() {
        assert_eq!(s.grabbed_cents() + s.recycled_cents(), s.pot.cents);
    }
    assert!(crashes > 0 && lost_replies > 0 && grabs > 0, "seed {seed}: the run exercised crashes ({crashes}), lost replies ({lost_replies}) and grabs ({grabs})");
}

#[test]
fn split_core_keeps_its_invariants_through_crashes() {
    for seed in 0..20 {
        run(seed);
    }
}
