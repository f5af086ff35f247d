//! The envelope backend's tests: idempotent records, fixed widths, the issuance log.
use super::store::*;
use crate::store::{decode, encode_fixed, CREDIT_LEN};
use sut_wire::issued::Issued;
use sut_wire::open::{Credit, OpenEntry};
use sut_wire::token::EnvelopeToken;

fn entry(id: u64, amount: u32) -> OpenEntry {
    OpenEntry {
        token: EnvelopeToken {
            user: 1,
            envelope_id: id,
            amount_cents: amount,
            sponsor: 1,
            round: 1,
            gateway: 0,
        },
        opened_ms: 0,
    }
}

/// The largest value of every field still fits each hot table's fixed width.
#[test]
fn the_largest_records_fit_their_fixed_widths() {
    use crate::gateway::store::RECORD_LEN;
    let token = EnvelopeToken {
        user: u64::MAX,
        envelope_id: u64::MAX,
        amount_cents: u32::MAX,
        sponsor: u16::MAX,
        round: u32::MAX,
        gateway: u16::MAX,
    };
    let entry = OpenEntry {
        token,
        opened_ms: i64::MIN,
    };
    let record = OpenRecord {
        entry,
        via_gateway: u16::MAX,
    };
    let credit = Credit {
        envelope_id: u64::MAX,
        user: u64::MAX,
        amount_cents: u32::MAX,
    };
    let issue = sut_core::shake::IssueRecord {
        round: u32::MAX,
        envelope_id: u64::MAX,
        user: u64::MAX,
        sponsor: u16::MAX,
        amount_cents: u32::MAX,
        gateway: u16::MAX,
        show_ms: i64::MIN,
        version: 1,
    };
    let back: OpenRecord = decode(&encode_fixed::<_, OPEN_RECORD_LEN>(&record).unwrap()).unwrap();
    assert_eq!(back, record);
    let back: Credit = decode(&encode_fixed::<_, CREDIT_LEN>(&credit).unwrap()).unwrap();
    assert_eq!(back, credit);
    let back: OpenEntry = decode(&encode_fixed::<_, RECORD_LEN>(&entry).unwrap()).unwrap();
    assert_eq!(back, entry);
    let back: sut_core::shake::IssueRecord =
        decode(&encode_fixed::<_, RECORD_LEN>(&issue).unwrap()).unwrap();
    assert_eq!(back, issue);
    assert!(
        encode_fixed::<_, 8>(&record).is_err(),
        "too narrow is an error"
    );
}

#[test]
fn each_envelope_is_recorded_once() {
    let e = entry(5, 100);
    assert!(matches!(classify(None, &e), Recorded::New(c) if c.amount_cents == 100));
    let rec = OpenRecord {
        entry: e,
        via_gateway: 0,
    };
    assert_eq!(classify(Some(&rec), &e), Recorded::Duplicate);
    assert_eq!(classify(Some(&rec), &entry(5, 999)), Recorded::Conflict);
}

#[test]
fn redelivered_batches_create_no_second_credit() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _, _) = open(&dir.path().join("e.redb")).unwrap();
    let batch = vec![(0, entry(1, 10)), (1, entry(2, 20))];
    for round in 0..2 {
        let txn = db.begin_write().unwrap();
        let r = apply(
            &txn,
            EnvelopeOp::Record {
                gateway: 0,
                entries: batch.clone(),
            },
        )
        .unwrap();
        txn.commit().unwrap();
        let Applied::Recorded(r) = r else {
            panic!("a record answers Recorded")
        };
        let new = r.iter().filter(|v| matches!(v, Recorded::New(_))).count();
        assert_eq!(new, if round == 0 { 2 } else { 0 });
    }
    assert_eq!(read_outbox(&db).unwrap().len(), 2);
    assert_eq!(read_opens(&db).unwrap().len(), 2);
    // A conflicting redelivery (impossible with signed tokens) changes nothing.
    let txn = db.begin_write().unwrap();
    let r = apply(
        &txn,
        EnvelopeOp::Record {
            gateway: 1,
            entries: vec![(2, entry(1, 999))],
        },
    )
    .unwrap();
    txn.commit().unwrap();
    assert!(matches!(r, Applied::Recorded(v) if v == vec![Recorded::Conflict]));
    let first = read_opens(&db).unwrap();
    assert_eq!(
        first[0].entry.token.amount_cents, 10,
        "the first record stays"
    );
    assert_eq!(first[0].via_gateway, 0);
}

#[test]
fn the_issuance_log_keeps_its_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let r = |user, envelope_id| Issued {
        user,
        envelope_id,
        sponsor: 1,
    };
    {
        let (db, _, mut log) = open(&path).unwrap();
        let fresh = log.fresh(&[r(9, 30), r(7, 10), r(9, 30)]);
        assert_eq!(fresh.len(), 2, "a record published twice is kept once");
        let txn = db.begin_write().unwrap();
        let positioned = fresh
            .iter()
            .enumerate()
            .map(|(i, x)| (i as u64, *x))
            .collect();
        apply(&txn, EnvelopeOp::Publish(positioned)).unwrap();
        txn.commit().unwrap();
        log.append(&fresh);
    }
    let (_, _, log) = open(&path).unwrap();
    assert_eq!(log.since(0, 10), (vec![r(9, 30), r(7, 10)], 2));
    assert_eq!(log.since(1, 10), (vec![r(7, 10)], 2));
    assert!(log.fresh(&[r(9, 30)]).is_empty());
}
