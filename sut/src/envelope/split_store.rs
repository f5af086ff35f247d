//! The backend's durable split envelopes: one [`Split`] row per pot, changed only inside
//! the backend's group-commit transactions, so grabs of one pot are serialized by the
//! single writer and a grab's credit enters the outbox in the same transaction that
//! deals it (a crash loses both or neither).
//!
//! A pot's row is written when it is first shared, or when it expires unshared (then
//! recycled whole); until then the pot is implied by its open (see [`pot_of`]), so the
//! open path pays nothing for splits.

use super::tables::{OPENS, OPEN_RECORD_LEN, OUTBOX, SPLITS};
use crate::store::{decode, encode, StoreError};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use std::collections::BTreeSet;
use sut_core::opens::OpenRecord;
use sut_core::split::{pot_for, Pot, Split, SplitError, State};
use sut_wire::open::Credit;
use sut_wire::split::{grab_credit_id, SplitAnswer, SplitRequest, MAX_POT_ENVELOPE_ID};

/// The pot an open implies, with this backend's pot lifetime.
pub fn pot_of(record: &OpenRecord, ttl_ms: i64) -> Pot {
    let t = &record.entry.token;
    pot_for(
        t.envelope_id,
        t.user,
        t.amount_cents,
        record.entry.opened_ms,
        ttl_ms,
    )
}

fn load(
    splits: &Table<u64, &[u8]>,
    opens: &Table<u64, [u8; OPEN_RECORD_LEN]>,
    envelope_id: u64,
    ttl_ms: i64,
) -> Result<Option<Split>, StoreError> {
    if let Some(v) = splits.get(envelope_id)? {
        return Ok(Some(decode(v.value())?));
    }
    if envelope_id >= MAX_POT_ENVELOPE_ID {
        return Ok(None);
    }
    Ok(match opens.get(envelope_id)? {
        Some(v) => Some(Split::new(pot_of(&decode(&v.value())?, ttl_ms))),
        None => None,
    })
}

/// Runs share and grab requests in order inside `txn`. `rolls[i]` is request i's deal
/// roll. A dealt grab's credit goes into the outbox here; it is also returned, for the
/// in-memory outbox after the commit.
pub fn apply_requests(
    txn: &WriteTransaction,
    requests: Vec<(SplitRequest, f64)>,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Vec<(SplitAnswer, Option<Credit>)>, StoreError> {
    let mut splits = txn.open_table(SPLITS)?;
    let opens = txn.open_table(OPENS)?;
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut out = Vec::with_capacity(requests.len());
    for (request, roll) in requests {
        let envelope_id = match &request {
            SplitRequest::Share { envelope_id, .. } | SplitRequest::Grab { envelope_id, .. } => {
                *envelope_id
            }
        };
        let Some(mut split) = load(&splits, &opens, envelope_id, ttl_ms)? else {
            out.push((SplitAnswer::Refused(SplitError::NoSuchPot), None));
            continue;
        };
        let answer = match request {
            SplitRequest::Share { user, friends, .. } => split
                .share(user, &friends, now_ms, sut_core::friends::are_friends)
                .map(|()| (SplitAnswer::Shared { pot: split.pot }, None)),
            // A repeat is told its part again; its credit went out the first time.
            SplitRequest::Grab { user, .. } => split.grab(user, now_ms, roll).map(|g| {
                let credit = (!g.repeat).then(|| Credit {
                    envelope_id: grab_credit_id(envelope_id, g.part),
                    user,
                    amount_cents: g.cents.min(u64::from(u32::MAX)) as u32,
                });
                let answer = SplitAnswer::Grabbed {
                    cents: g.cents,
                    repeat: g.repeat,
                };
                (answer, credit)
            }),
        };
        match answer {
            Ok((answer, credit)) => {
                if credit.is_some() || matches!(answer, SplitAnswer::Shared { .. }) {
                    splits.insert(envelope_id, encode(&split)?.as_slice())?;
                }
                if let Some(c) = credit {
                    outbox.insert(c.envelope_id, crate::store::encode_fixed(&c)?)?;
                }
                out.push((answer, credit));
            }
            Err(e) => out.push((SplitAnswer::Refused(e), None)),
        }
    }
    Ok(out)
}

/// Recycles the pots of `envelope_ids` that are past their expiry at `now_ms`;
/// (envelope id, cents recycled) for each pot recycled now.
pub fn apply_expiry(
    txn: &WriteTransaction,
    envelope_ids: Vec<u64>,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut splits = txn.open_table(SPLITS)?;
    let opens = txn.open_table(OPENS)?;
    let mut out = Vec::new();
    for id in envelope_ids {
        let Some(mut split) = load(&splits, &opens, id, ttl_ms)? else {
            continue;
        };
        if let Some(cents) = split.expire(now_ms) {
            splits.insert(id, encode(&split)?.as_slice())?;
            out.push((id, cents));
        }
    }
    Ok(out)
}

/// Pots not yet recycled, by expiry: what the expiry task walks.
#[derive(Debug, Default)]
pub struct ExpiryQueue {
    due: BTreeSet<(i64, u64)>,
}

impl ExpiryQueue {
    /// Every pot of the database not yet recycled (at start, after any restart).
    pub fn load(db: &Database, ttl_ms: i64) -> Result<ExpiryQueue, StoreError> {
        let txn = db.begin_read()?;
        let splits = txn.open_table(SPLITS)?;
        let mut q = ExpiryQueue::default();
        for e in txn.open_table(OPENS)?.iter()? {
            let (k, v) = e?;
            let id = k.value();
            let expires_ms = match splits.get(id)? {
                Some(s) => {
                    let s: Split = decode(s.value())?;
                    if matches!(s.state, State::Recycled { .. }) {
                        continue;
                    }
                    s.pot.expires_ms
                }
                None => pot_of(&decode(&v.value())?, ttl_ms).expires_ms,
            };
            q.push(expires_ms, id);
        }
        Ok(q)
    }

    pub fn push(&mut self, expires_ms: i64, envelope_id: u64) {
        self.due.insert((expires_ms, envelope_id));
    }

    /// Up to `max` pots expired by `now_ms`, taken out of the queue.
    pub fn take_due(&mut self, now_ms: i64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.due.first() {
                Some(&(at, id)) if at <= now_ms => {
                    self.due.pop_first();
                    out.push(id);
                }
                _ => break,
            }
        }
        out
    }

    /// Puts pots back (their recycling did not commit).
    pub fn put_back(&mut self, ids: &[u64], expires_ms: i64) {
        for id in ids {
            self.push(expires_ms, *id);
        }
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// What the audit needs of the splits: every row written, and every recorded open's
/// implied pot (envelope id → pot) for those never written.
pub fn read_splits(db: &Database) -> Result<Vec<Split>, StoreError> {
    let txn = db.begin_read()?;
    let Ok(table) = txn.open_table(SPLITS) else {
        // A backend from before split envelopes: no rows.
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in table.iter()? {
        out.push(decode(e?.1.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sut_core::passthrough::OpenEntry;
    use sut_wire::split::grab_of_credit;
    use sut_wire::token::EnvelopeToken;

    fn record(db: &Database, id: u64, user: u64, amount: u32) {
        let txn = db.begin_write().unwrap();
        let entry = OpenEntry {
            token: EnvelopeToken {
                user,
                envelope_id: id,
                amount_cents: amount,
                sponsor: 1,
                round: 1,
                gateway: 0,
            },
            opened_ms: 1_000,
        };
        super::super::store::apply(
            &txn,
            super::super::store::EnvelopeOp::Record {
                gateway: 0,
                entries: vec![(0, entry)],
            },
        )
        .unwrap();
        txn.commit().unwrap();
    }

    fn run(db: &Database, reqs: Vec<SplitRequest>, now: i64) -> Vec<SplitAnswer> {
        let txn = db.begin_write().unwrap();
        let out = apply_requests(
            &txn,
            reqs.into_iter().map(|r| (r, 0.5)).collect(),
            now,
            10_000,
        )
        .unwrap();
        txn.commit().unwrap();
        out.into_iter().map(|(a, _)| a).collect()
    }

    #[test]
    fn shares_and_grabs_are_durable_and_credit_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, _) = super::super::store::open(&dir.path().join("e.redb")).unwrap();
        let grab = |user| SplitRequest::Grab {
            envelope_id: 5,
            user,
        };
        assert_eq!(
            run(&db, vec![grab(3)], 2_000),
            vec![SplitAnswer::Refused(SplitError::NoSuchPot)],
            "no open recorded yet"
        );
        record(&db, 5, 2, 100);
        let share = SplitRequest::Share {
            envelope_id: 5,
            user: 2,
            friends: vec![3, 4],
        };
        let out = run(
            &db,
            vec![grab(3), share.clone(), grab(3), grab(3), grab(2)],
            2_000,
        );
        assert_eq!(out[0], SplitAnswer::Refused(SplitError::NotShared));
        assert!(
            matches!(out[1], SplitAnswer::Shared { pot } if pot.cents == 200 && pot.expires_ms == 11_000)
        );
        let SplitAnswer::Grabbed {
            cents,
            repeat: false,
        } = out[2]
        else {
            panic!("a first grab is dealt: {:?}", out[2]);
        };
        assert_eq!(
            out[3],
            SplitAnswer::Grabbed {
                cents,
                repeat: true
            },
            "a repeat is told its part again"
        );
        assert_eq!(out[4], SplitAnswer::Refused(SplitError::OwnShare));
        assert!(
            matches!(
                run(&db, vec![share], 2_000)[..],
                [SplitAnswer::Shared { .. }]
            ),
            "the same share again stands"
        );
        let other = SplitRequest::Share {
            envelope_id: 5,
            user: 2,
            friends: vec![4],
        };
        assert_eq!(
            run(&db, vec![other], 2_000),
            vec![SplitAnswer::Refused(SplitError::AlreadyShared)]
        );
        let credits = super::super::store::read_outbox(&db).unwrap();
        let grabs: Vec<_> = credits
            .iter()
            .filter(|c| grab_of_credit(c.envelope_id).is_some())
            .collect();
        assert_eq!(grabs.len(), 1, "one credit for one grab");
        assert_eq!(grabs[0].user, 3);

        // Expiry: the queue knows the pot; recycling it settles the rest, once.
        let mut q = ExpiryQueue::load(&db, 10_000).unwrap();
        assert_eq!(q.take_due(10_999, 10), Vec::<u64>::new());
        let due = q.take_due(11_000, 10);
        assert_eq!(due, vec![5]);
        let txn = db.begin_write().unwrap();
        let recycled = apply_expiry(&txn, due.clone(), 11_000, 10_000).unwrap();
        let again = apply_expiry(&txn, due, 11_000, 10_000).unwrap();
        txn.commit().unwrap();
        assert_eq!(recycled.len(), 1);
        assert!(again.is_empty(), "recycled once");
        let splits = read_splits(&db).unwrap();
        assert_eq!(splits[0].grabbed_cents() + splits[0].recycled_cents(), 200);
        assert!(splits[0].check().is_empty());
        assert!(ExpiryQueue::load(&db, 10_000).unwrap().is_empty());
        assert_eq!(
            run(&db, vec![grab(4)], 11_500),
            vec![SplitAnswer::Refused(SplitError::Recycled)]
        );
    }
}
