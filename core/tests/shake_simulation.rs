//! Seeded simulation of the shake core: random users, dropped and replayed cookies,
//! failed lease writes and crashes at random points, with the durable state a real
//! gateway keeps (persisted lease ends, issue records). After every step: no id issued
//! twice, none beyond a persisted lease, no user over the limit, the rate held.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use sut_core::seed_shard::{generate, SeedShard};
use sut_core::shake::{IssueRecord, ShakeCore};
use sut_wire::signing::SigningKey;
use sut_wire::timeline::Timeline;

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 0s, duration: 40s, envelopes: 600, rate: 50, amount_cents: [1, 100], sponsors: [1, 2, 3, 4] }
";

struct Durable {
    lease_end: u64,
    issued: Vec<IssueRecord>,
}

fn boot(timeline: &Timeline, shard: &SeedShard, durable: &Durable, now: i64) -> ShakeCore {
    let mut core = ShakeCore::new(0, 1, SigningKey::from_bytes([9; 32]), timeline.clone());
    core.load_round(shard.clone(), durable.lease_end, now);
    for r in &durable.issued {
        core.restore_issue(r);
    }
    core
}

fn simulate(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let timeline = Timeline::parse(TIMELINE, "sim").unwrap();
    let shard = generate(&timeline.rounds[0], 1, seed).remove(0);
    let index_of: HashMap<u64, u64> = shard
        .envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i as u64))
        .collect();
    let mut durable = Durable {
        lease_end: 0,
        issued: Vec::new(),
    };
    let mut core = boot(&timeline, &shard, &durable, 0);
    let mut cookies: HashMap<u64, Vec<Bytes>> = HashMap::new();
    let mut now = 0i64;
    let mut crashes = 0;
    while now < 40_000 {
        now += rng.random_range(0..15);
        for (_, end) in core.wanted_leases(now) {
            // A lease write may fail; only a written one may be used.
            if rng.random_bool(0.9) {
                durable.lease_end = durable.lease_end.max(end);
                core.lease_granted(1, end);
            } else {
                core.lease_failed(1);
            }
        }
        let user = rng.random_range(0..150u64);
        let history = cookies.entry(user).or_default();
        let cookie = match rng.random_range(0..20) {
            0 => Bytes::new(), // dropped
            1 if !history.is_empty() => history[rng.random_range(0..history.len())].clone(), // replayed
            _ => history.last().cloned().unwrap_or_default(),
        };
        let decision = core
            .shake(now, user, &cookie)
            .expect("genuine cookies verify");
        history.push(decision.cookie.clone());
        if let Some(record) = decision.issued {
            let index = index_of[&record.envelope_id];
            assert!(
                index < durable.lease_end,
                "seed {seed}: issued index {index} beyond the persisted lease {}",
                durable.lease_end
            );
            durable.issued.push(record);
        }
        if rng.random_bool(0.002) {
            crashes += 1;
            core = boot(&timeline, &shard, &durable, now);
        }
    }
    assert!(
        crashes > 0,
        "seed {seed}: the simulation should crash at least once"
    );

    let ids: HashSet<u64> = durable.issued.iter().map(|r| r.envelope_id).collect();
    assert_eq!(
        ids.len(),
        durable.issued.len(),
        "seed {seed}: an id was issued twice"
    );
    let mut per_user: HashMap<u64, Vec<u16>> = HashMap::new();
    for r in &durable.issued {
        per_user.entry(r.user).or_default().push(r.sponsor);
    }
    for (user, sponsors) in per_user {
        let distinct: HashSet<u16> = sponsors.iter().copied().collect();
        assert!(
            sponsors.len() <= 3 && distinct.len() == sponsors.len(),
            "seed {seed}: user {user} got {sponsors:?}"
        );
    }
    // 50/s plus a burst of 3 (50 ms worth), and one more for window edges.
    let mut times: Vec<i64> = durable.issued.iter().map(|r| r.show_ms).collect();
    times.sort_unstable();
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= 1000 {
            lo += 1;
        }
        assert!(
            hi - lo < 54,
            "seed {seed}: {} issued within 1 s",
            hi - lo + 1
        );
    }
    assert!(
        durable.issued.len() > 100,
        "seed {seed}: only {} issued",
        durable.issued.len()
    );
}

#[test]
fn shake_core_holds_its_invariants_through_crashes() {
    for seed in 0..12 {
        simulate(seed);
    }
}
