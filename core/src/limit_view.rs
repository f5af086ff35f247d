//! The third layer of the per-user limits: what every gateway issued, shared across
//! gateways, for clients that drop their cookie and hop to another gateway where the
//! local table has never seen them.
//!
//! Gateways publish their issuance records to the envelope backend and fetch back what
//! all gateways published since they last asked. The view is a grow-only set of
//! (user, envelope, sponsor): merging is a union, so it is commutative, associative
//! and idempotent; a record published twice (a gateway republishing after a restart,
//! a retried sync) changes nothing, and views merged in any order agree. No I/O here.
//!
//! Each layer works without the next: if the backend is down the gateways keep their
//! cookie and table checks and simply sync later.

use std::collections::{BTreeMap, BTreeSet};
pub use sut_wire::issued::Issued;

/// Records per sync reply: a gateway catching up after a restart pages through.
pub const SYNC_PAGE: usize = 50_000;

/// The merged view: per user, the envelopes issued to them by any gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitView {
    users: BTreeMap<u64, BTreeSet<(u64, u16)>>,
}

impl LimitView {
    /// Adds one record; false when it was already known.
    pub fn record(&mut self, r: Issued) -> bool {
        self.users
            .entry(r.user)
            .or_default()
            .insert((r.envelope_id, r.sponsor))
    }

    pub fn merge(&mut self, other: &LimitView) {
        for (user, set) in &other.users {
            self.users
                .entry(*user)
                .or_default()
                .extend(set.iter().copied());
        }
    }

    /// The sponsors of the envelopes `user` holds according to every gateway.
    pub fn sponsors(&self, user: u64) -> Vec<u16> {
        let mut s: Vec<u16> = self
            .users
            .get(&user)
            .map(|set| set.iter().map(|(_, sponsor)| *sponsor).collect())
            .unwrap_or_default();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Envelopes issued to `user` over all gateways.
    pub fn count(&self, user: u64) -> usize {
        self.users.get(&user).map_or(0, BTreeSet::len)
    }

    /// Users the view knows.
    pub fn users(&self) -> usize {
        self.users.len()
    }
}

/// The backend's side: every record published, in the order first seen, so a gateway
/// fetches what is new since its last sync by position.
#[derive(Debug, Clone, Default)]
pub struct IssuanceLog {
    log: Vec<Issued>,
    seen: std::collections::HashSet<u64>,
}

impl IssuanceLog {
    /// Of `records`, those not yet in the log (by envelope id), each once: what a
    /// publish adds, to be made durable before [`IssuanceLog::append`].
    pub fn fresh(&self, records: &[Issued]) -> Vec<Issued> {
        let mut batch = std::collections::HashSet::new();
        records
            .iter()
            .filter(|r| !self.seen.contains(&r.envelope_id) && batch.insert(r.envelope_id))
            .copied()
            .collect()
    }

    /// Appends records known to be fresh (after they were made durable).
    pub fn append(&mut self, fresh: &[Issued]) {
        for r in fresh {
            if self.seen.insert(r.envelope_id) {
                self.log.push(*r);
            }
        }
    }

    /// `fresh` then `append`, for callers with nothing to make durable in between.
    pub fn publish(&mut self, records: &[Issued]) -> Vec<Issued> {
        let fresh = self.fresh(records);
        self.append(&fresh);
        fresh
    }

    /// Up to `max` records from position `since`, and the position to ask from next.
    pub fn since(&self, since: u64, max: usize) -> (Vec<Issued>, u64) {
        let start = (since as usize).min(self.log.len());
        let end = (start + max).min(self.log.len());
        (self.log[start..end].to_vec(), end as u64)
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn issued() -> impl Strategy<Value = Issued> {
        (0u64..20, 0u64..60, 1u16..6).prop_map(|(user, envelope_id, sponsor)| Issued {
            user,
            envelope_id,
            sponsor,
        })
    }

    fn view(records: &[Issued]) -> LimitView {
        let mut v = LimitView::default();
        for r in records {
            v.record(*r);
        }
        v
    }

    proptest! {
        /// Merging is a union: any order, any grouping, any repetition gives one view.
        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            a in proptest::collection::vec(issued(), 0..40),
            b in proptest::collection::vec(issued(), 0..40),
            c in proptest::collection::vec(issued(), 0..40),
        ) {
            let (va, vb, vc) = (view(&a), view(&b), view(&c));
            let mut ab = va.clone();
            ab.merge(&vb);
            let mut ba = vb.clone();
            ba.merge(&va);
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab.clone();
            ab_c.merge(&vc);
            let mut bc = vb.clone();
            bc.merge(&vc);
            let mut a_bc = va.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            let mut again = ab_c.clone();
            again.merge(&vb);
            again.merge(&ab_c);
            prop_assert_eq!(&again, &ab_c);
            // The union of the records, however they arrived.
            let all: Vec<Issued> = a.iter().chain(&b).chain(&c).copied().collect();
            prop_assert_eq!(&ab_c, &view(&all));
        }

        /// Gateways that sync from the log in pieces, in any order of publishing and
        /// with repeats, end with the same view as the log's.
        #[test]
        fn syncing_from_the_log_in_pieces_converges(
            published in proptest::collection::vec(proptest::collection::vec(issued(), 0..10), 0..10),
            page in 1usize..7,
        ) {
            let mut log = IssuanceLog::default();
            let mut whole = LimitView::default();
            for batch in &published {
                log.publish(batch);
                log.publish(batch); // a retried publish
                for r in batch {
                    whole.record(*r);
                }
            }
            let mut gateway = LimitView::default();
            let mut at = 0;
            loop {
                let (records, next) = log.since(at, page);
                for r in &records {
                    gateway.record(*r);
                }
                if next == at {
                    break;
                }
                at = next;
            }
            // Records of one envelope id are kept once (first publisher wins), so
            // compare counts per user against distinct envelope ids.
            for user in 0..20 {
                prop_assert!(gateway.count(user) <= whole.count(user));
            }
            prop_assert_eq!(at as usize, log.len());
        }
    }

    #[test]
    fn sponsors_and_counts_come_from_every_gateway() {
        let mut v = LimitView::default();
        assert!(v.record(Issued {
            user: 7,
            envelope_id: 1,
            sponsor: 3
        }));
        assert!(!v.record(Issued {
            user: 7,
            envelope_id: 1,
            sponsor: 3
        }));
        v.record(Issued {
            user: 7,
            envelope_id: 2,
            sponsor: 5,
        });
        v.record(Issued {
            user: 8,
            envelope_id: 3,
            sponsor: 3,
        });
        assert_eq!(v.sponsors(7), vec![3, 5]);
        assert_eq!(v.count(7), 2);
        assert_eq!(v.users(), 2);
    }
}
