//! Payment's durable ledger: each credit applied once, keyed by its envelope (or grab)
//! id, to an append-only ledger and per-user balances, in group-commit transactions.

use crate::store::{decode, encode_fixed, open_db, StoreError};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use std::path::{Path, PathBuf};
use sut_wire::open::Credit;

/// Ledger sequence → credit, append-only. Keyed by sequence so a double credit would show.
pub const LEDGER: TableDefinition<u64, [u8; crate::store::CREDIT_LEN]> =
    TableDefinition::new("ledger");
/// Envelope id → ledger sequence: the idempotency index.
pub const CREDITED: TableDefinition<u64, u64> = TableDefinition::new("credited");
/// User → balance in cents.
pub const BALANCES: TableDefinition<u64, u64> = TableDefinition::new("balances");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub fn db_path(data: &Path) -> PathBuf {
    data.join("payment.redb")
}

/// Whether a credit moved money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Credited,
    AlreadyCredited,
}

/// Applies credits inside one transaction: check-then-insert on the envelope id.
pub fn apply(txn: &WriteTransaction, credits: Vec<Credit>) -> Result<Vec<Applied>, StoreError> {
    let mut credited = txn.open_table(CREDITED)?;
    let mut ledger = txn.open_table(LEDGER)?;
    let mut balances = txn.open_table(BALANCES)?;
    let mut meta = txn.open_table(META)?;
    let mut seq = meta.get("ledger_seq")?.map(|v| v.value()).unwrap_or(0);
    let mut out = Vec::with_capacity(credits.len());
    for c in credits {
        // Insert first and look at what it replaced (one descent for a new credit); a
        // repeat puts the first sequence back and moves nothing.
        let previous = credited.insert(c.envelope_id, seq)?.map(|v| v.value());
        if let Some(first) = previous {
            credited.insert(c.envelope_id, first)?;
            out.push(Applied::AlreadyCredited);
            continue;
        }
        ledger.insert(seq, encode_fixed(&c)?)?;
        let balance = balances.get(c.user)?.map(|v| v.value()).unwrap_or(0);
        balances.insert(c.user, balance + c.amount_cents as u64)?;
        seq += 1;
        out.push(Applied::Credited);
    }
    meta.insert("ledger_seq", seq)?;
    Ok(out)
}

pub fn open(path: &Path) -> Result<Database, StoreError> {
    let db = open_db(path)?;
    let txn = db.begin_write()?;
    txn.open_table(LEDGER)?;
    txn.open_table(CREDITED)?;
    txn.open_table(BALANCES)?;
    txn.open_table(META)?;
    txn.commit()?;
    Ok(db)
}

/// The ledger in order, and the sum of all balances (for the audit).
pub fn read_ledger(db: &Database) -> Result<(Vec<Credit>, u64), StoreError> {
    let txn = db.begin_read()?;
    let mut ledger = Vec::new();
    for e in txn.open_table(LEDGER)?.iter()? {
        ledger.push(decode(&e?.1.value())?);
    }
    let mut total = 0;
    for e in txn.open_table(BALANCES)?.iter()? {
        total += e?.1.value();
    }
    Ok((ledger, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("p.redb")).unwrap();
        let c = |id, amount| Credit {
            envelope_id: id,
            user: 9,
            amount_cents: amount,
        };
        for _ in 0..2 {
            let txn = db.begin_write().unwrap();
            apply(&txn, vec![c(1, 10), c(2, 25), c(1, 10)]).unwrap();
            txn.commit().unwrap();
        }
        let (ledger, total) = read_ledger(&db).unwrap();
        assert_eq!(ledger.len(), 2);
        assert_eq!(total, 35);
        let txn = db.begin_read().unwrap();
        let index = txn.open_table(CREDITED).unwrap();
        let seq_of = |id: u64| index.get(id).unwrap().map(|v| v.value());
        assert_eq!(
            (seq_of(1), seq_of(2)),
            (Some(0), Some(1)),
            "repeats keep the first"
        );
    }
}
