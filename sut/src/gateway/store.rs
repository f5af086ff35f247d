//! The gateway's durable state: issuance leases and records, and the pass-through queue.

use crate::store::{decode, encode_fixed, open_db, StoreError};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use sut_core::passthrough::OpenEntry;
use sut_core::shake::IssueRecord;

/// Round → persisted lease end (an index into the round's shard).
pub const LEASES: TableDefinition<u32, u64> = TableDefinition::new("leases");
/// Issue sequence → issue record. Keyed by sequence, not envelope id, so that a duplicate
/// issue (the bug invariant 1 forbids) would show up in the audit instead of overwriting.
pub const ISSUED: TableDefinition<u64, [u8; RECORD_LEN]> = TableDefinition::new("issued");
/// Envelope id → the open the user was told succeeded (also the replay guard).
pub const OPENED: TableDefinition<u64, [u8; RECORD_LEN]> = TableDefinition::new("opened");
/// Queue sequence → open waiting for the backend's ack.
pub const QUEUE: TableDefinition<u64, [u8; RECORD_LEN]> = TableDefinition::new("queue");
/// The fixed width of an issue record or open entry (see [`crate::store::encode_fixed`]).
pub const RECORD_LEN: usize = 48;
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
    Queued {
        seq: u64,
    },
    /// This envelope was opened here before: the first entry stays.
    Repeat,
}

/// Applies one batch inside its transaction, opening each table once and keeping the
/// sequence counters in memory until the end: the queue's commit is the open path's
/// hottest write.
pub fn apply(
    txn: &WriteTransaction,
    ops: Vec<GatewayOp>,
) -> Result<Vec<GatewayResult>, StoreError> {
    let mut meta = txn.open_table(META)?;
    let mut issue_seq = meta.get("issue_seq")?.map(|v| v.value()).unwrap_or(0);
    let mut queue_seq = meta.get("queue_seq")?.map(|v| v.value()).unwrap_or(0);
    let (issue_start, queue_start) = (issue_seq, queue_seq);
    let mut leases = txn.open_table(LEASES)?;
    let mut issued = txn.open_table(ISSUED)?;
    let mut opened = txn.open_table(OPENED)?;
    let mut queue = txn.open_table(QUEUE)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(match op {
            GatewayOp::Lease { round, end } => {
                let old = leases.get(round)?.map(|v| v.value()).unwrap_or(0);
                leases.insert(round, old.max(end))?;
                GatewayResult::Done
            }
            GatewayOp::Issue(record) => {
                issued.insert(issue_seq, encode_fixed::<_, RECORD_LEN>(&record)?)?;
                issue_seq += 1;
                GatewayResult::Done
            }
            GatewayOp::Open(entry) => {
                // Insert first and look at what it replaced (one descent for a new
                // open); a replayed open puts the first entry back.
                let bytes = encode_fixed::<_, RECORD_LEN>(&entry)?;
                let previous = opened
                    .insert(entry.token.envelope_id, bytes)?
                    .map(|v| v.value());
                if let Some(first) = previous {
                    opened.insert(entry.token.envelope_id, first)?;
                    GatewayResult::Repeat
                } else {
                    let seq = queue_seq;
                    queue_seq += 1;
                    queue.insert(seq, bytes)?;
                    GatewayResult::Queued { seq }
                }
            }
            GatewayOp::Ack(seqs) => {
                for s in seqs {
                    queue.remove(s)?;
                }
                GatewayResult::Done
            }
        });
    }
    if issue_seq != issue_start {
        meta.insert("issue_seq", issue_seq)?;
    }
    if queue_seq != queue_start {
        meta.insert("queue_seq", queue_seq)?;
    }
    Ok(out)
}

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
        r.issued.push(decode(&e?.1.value())?);
    }
    for e in txn.open_table(QUEUE)?.iter()? {
        let (k, v) = e?;
        r.queue.push((k.value(), decode(&v.value())?));
    }
    r.opened = redb::ReadableTableMetadata::len(&txn.open_table(OPENED)?)?;
    Ok(r)
}

/// Every open the users were told succeeded (for the audit).
pub fn read_opened(db: &Database) -> Result<Vec<OpenEntry>, StoreError> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for e in txn.open_table(OPENED)?.iter()? {
        out.push(decode(&e?.1.value())?);
    }
    Ok(out)
}
