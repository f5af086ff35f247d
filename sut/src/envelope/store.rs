//! The backend's durable records: opens by envelope id, the credit outbox, the shared
//! limit view's issuance log and the split pots ([`super::split_store`]), all changed in
//! group-commit transactions ([`apply`]).

use super::split_store;
use crate::store::{decode, encode, encode_fixed, open_db, StoreError};
use redb::{Database, ReadableTable, WriteTransaction};
use std::path::{Path, PathBuf};
use sut_core::limit_view::{IssuanceLog, Issued};
pub use sut_core::opens::{classify, OpenRecord, Recorded};
use sut_core::passthrough::OpenEntry;
use sut_core::reservations::{self, Held};
use sut_wire::open::Credit;
use sut_wire::reserve::ReserveAnswer;
use sut_wire::split::{SplitAnswer, SplitRequest};

pub use super::tables::{ISSUANCE, OPENS, OPEN_RECORD_LEN, OUTBOX, RESERVATIONS, SPLITS};

pub fn db_path(data: &Path) -> PathBuf {
    data.join("envelope.redb")
}

#[derive(Debug)]
pub enum EnvelopeOp {
    Record {
        gateway: u16,
        entries: Vec<(u64, OpenEntry)>,
    },
    Settled(Vec<u64>),
    /// Fresh issuance records at their log positions.
    Publish(Vec<(u64, Issued)>),
    /// Shares and grabs, each with its deal roll, at show time `now_ms`.
    Split {
        requests: Vec<(SplitRequest, f64)>,
        now_ms: i64,
        ttl_ms: i64,
    },
    /// Recycle these pots if expired at `now_ms`.
    /// Reservations for the users this backend owns, before their envelopes are issued.
    Reserve(Vec<Issued>),
    Expire {
        envelope_ids: Vec<u64>,
        now_ms: i64,
        ttl_ms: i64,
    },
}

/// What one [`EnvelopeOp`] did.
#[derive(Debug)]
pub enum Applied {
    Recorded(Vec<Recorded>),
    Split(Vec<(SplitAnswer, Option<Credit>)>),
    /// (envelope id, cents recycled) per pot recycled.
    Expired(Vec<(u64, u64)>),
    Reserved(Vec<ReserveAnswer>),
    Done,
}

pub fn apply(txn: &WriteTransaction, op: EnvelopeOp) -> Result<Applied, StoreError> {
    match op {
        EnvelopeOp::Record { gateway, entries } => {
            let mut opens = txn.open_table(OPENS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut out = Vec::with_capacity(entries.len());
            for (_, entry) in entries {
                let id = entry.token.envelope_id;
                let record = OpenRecord {
                    entry,
                    via_gateway: gateway,
                };
                // Insert first and look at what it replaced: one descent of the tree
                // for the common case, a new open. A redelivery puts the first record
                // back (rare).
                let previous = opens
                    .insert(id, encode_fixed(&record)?)?
                    .map(|v| decode::<OpenRecord>(&v.value()))
                    .transpose()?;
                let verdict = classify(previous.as_ref(), &entry);
                match (verdict, previous) {
                    (Recorded::New(credit), _) => {
                        outbox.insert(id, encode_fixed(&credit)?)?;
                    }
                    (_, Some(first)) => {
                        opens.insert(id, encode_fixed(&first)?)?;
                    }
                    (_, None) => {}
                }
                out.push(verdict);
            }
            Ok(Applied::Recorded(out))
        }
        EnvelopeOp::Publish(records) => {
            let mut t = txn.open_table(ISSUANCE)?;
            for (pos, r) in records {
                t.insert(pos, encode(&r)?.as_slice())?;
            }
            Ok(Applied::Done)
        }
        EnvelopeOp::Settled(ids) => {
            let mut outbox = txn.open_table(OUTBOX)?;
            for id in ids {
                outbox.remove(id)?;
            }
            Ok(Applied::Done)
        }
        EnvelopeOp::Split {
            requests,
            now_ms,
            ttl_ms,
        } => split_store::apply_requests(txn, requests, now_ms, ttl_ms).map(Applied::Split),
        EnvelopeOp::Expire {
            envelope_ids,
            now_ms,
            ttl_ms,
        } => split_store::apply_expiry(txn, envelope_ids, now_ms, ttl_ms).map(Applied::Expired),
        EnvelopeOp::Reserve(requests) => reserve(txn, &requests).map(Applied::Reserved),
    }
}

/// Each reservation by the owner's rule, in order, on what the user holds so far
/// (earlier requests of the same batch included).
fn reserve(txn: &WriteTransaction, requests: &[Issued]) -> Result<Vec<ReserveAnswer>, StoreError> {
    let mut table = txn.open_table(RESERVATIONS)?;
    let mut answers = Vec::with_capacity(requests.len());
    for r in requests {
        let mut held: Held = match table.get(r.user)? {
            Some(v) => decode(v.value())?,
            None => Held::new(),
        };
        let before = held.len();
        answers.push(reservations::reserve(&mut held, r));
        if held.len() != before {
            table.insert(r.user, encode(&held)?.as_slice())?;
        }
    }
    Ok(answers)
}

/// Opens the backend's database and reads its outbox and issuance log.
pub fn open(path: &Path) -> Result<(Database, Vec<Credit>, IssuanceLog), StoreError> {
    let db = open_db(path)?;
    let txn = db.begin_write()?;
    txn.open_table(OPENS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(ISSUANCE)?;
    txn.open_table(SPLITS)?;
    txn.open_table(RESERVATIONS)?;
    txn.commit()?;
    let outbox = read_outbox(&db)?;
    let mut log = IssuanceLog::default();
    let txn = db.begin_read()?;
    let records: Vec<Issued> = txn
        .open_table(ISSUANCE)?
        .iter()?
        .map(|e| decode(e?.1.value()))
        .collect::<Result<_, StoreError>>()?;
    log.append(&records);
    drop(txn);
    Ok((db, outbox, log))
}

pub fn read_outbox(db: &Database) -> Result<Vec<Credit>, StoreError> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for e in txn.open_table(OUTBOX)?.iter()? {
        out.push(decode(&e?.1.value())?);
    }
    Ok(out)
}

pub fn read_opens(db: &Database) -> Result<Vec<OpenRecord>, StoreError> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for e in txn.open_table(OPENS)?.iter()? {
        out.push(decode(&e?.1.value())?);
    }
    Ok(out)
}
