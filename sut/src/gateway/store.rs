//! The gateway's durable state: issuance leases and records, and the pass-through queue.

use crate::passthrough::OpenEntry;
use crate::shake::IssueRecord;
use crate::store::{decode, encode, open_db, StoreError};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Round → persisted lease end (an index into the round's shard).
pub const LEASES: TableDefinition<u32, u64> = TableDefinition::new("leases");
/// Issue sequence → issue record. Keyed by sequence, not envelope id, so that a duplicate
/// issue (the bug invariant 1 forbids) would show up in the audit instead of overwriting.
pub const ISSUED: TableDefinition<u64, &[u8]> = TableDefinition::new("issued");
/// Envelope id → the open the user was told succeeded (also the replay guard).
pub const OPENED: TableDefinition<u64, &[u8]> = TableDefinition::new("opened");
/// Queue sequence → open waiting for the backend's ack.
pub const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// Counters for the two sequences.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub fn db_path(data: &Path, gateway: u16) -> PathBuf {
    data.join(format!("gateway-{gateway}.redb"))
}

/// A write the gateway commits through its group committer.
#[derive(Debug, Clone)]
pub enum GatewayOp {
    Lease { round: u32, end: u64 },
    Issue(IssueRecord),
    Open(OpenEntry),
    Ack(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayResult {
    Done,
    Queued { seq: u64 },
    AlreadyOpened,
}

fn next_seq(txn: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let seq = meta.get(name)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(name, seq + 1)?;
    Ok(seq)
}

/// Applies one operation inside the batch's transaction.
pub fn apply(txn: &WriteTransaction, op: GatewayOp) -> Result<GatewayResult, StoreError> {
    match op {
        GatewayOp::Lease { round, end } => {
            let mut t = txn.open_table(LEASES)?;
            let old = t.get(round)?.map(|v| v.value()).unwrap_or(0);
            t.insert(round, old.max(end))?;
            Ok(GatewayResult::Done)
        }
        GatewayOp::Issue(record) => {
            let seq = next_seq(txn, "issue_seq")?;
            txn.open_table(ISSUED)?
                .insert(seq, encode(&record)?.as_slice())?;
            Ok(GatewayResult::Done)
        }
        GatewayOp::Open(entry) => {
            let mut opened = txn.open_table(OPENED)?;
            if opened.get(entry.token.envelope_id)?.is_some() {
                return Ok(GatewayResult::AlreadyOpened);
            }
            let bytes = encode(&entry)?;
            opened.insert(entry.token.envelope_id, bytes.as_slice())?;
            drop(opened);
            let seq = next_seq(txn, "queue_seq")?;
            txn.open_table(QUEUE)?.insert(seq, bytes.as_slice())?;
            Ok(GatewayResult::Queued { seq })
        }
        GatewayOp::Ack(seqs) => {
            let mut q = txn.open_table(QUEUE)?;
            for s in seqs {
                q.remove(s)?;
            }
            Ok(GatewayResult::Done)
        }
    }
}

/// What a restarting gateway reads back.
#[derive(Debug, Default)]
pub struct Recovered {
    pub leases: HashMap<u32, u64>,
    pub issued: Vec<IssueRecord>,
    pub queue: Vec<(u64, OpenEntry)>,
    pub opened: u64,
}

/// Opens the gateway's database, creating its tables, and reads its state back.
pub fn open(path: &Path) -> Result<(Database, Recovered), StoreError> {
    let db = open_db(path)?;
    let txn = db.begin_write()?;
    for t in [ISSUED, OPENED, QUEUE] {
        txn.open_table(t)?;
    }
    txn.open_table(LEASES)?;
    txn.open_table(META)?;
    txn.commit()?;
    let recovered = read(&db)?;
    Ok((db, recovered))
}

/// Reads every table (also used by the audit).
pub fn read(db: &Database) -> Result<Recovered, StoreError> {
    let txn = db.begin_read()?;
    let mut r = Recovered::default();
    for e in txn.open_table(LEASES)?.iter()? {
        let (k, v) = e?;
        r.leases.insert(k.value(), v.value());
    }
    for e in txn.open_table(ISSUED)?.iter()? {
        r.issued.push(decode(e?.1.value())?);
    }
    for e in txn.open_table(QUEUE)?.iter()? {
        let (k, v) = e?;
        r.queue.push((k.value(), decode(v.value())?));
    }
    r.opened = redb::ReadableTableMetadata::len(&txn.open_table(OPENED)?)?;
    Ok(r)
}

/// Every open the users were told succeeded (for the audit).
pub fn read_opened(db: &Database) -> Result<Vec<OpenEntry>, StoreError> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for e in txn.open_table(OPENED)?.iter()? {
        out.push(decode(e?.1.value())?);
    }
    Ok(out)
}
