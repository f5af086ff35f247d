//! The payment stand-in (the transfer system): applies each credit exactly once, keyed by
//! envelope id, to an append-only ledger and per-user balances.

use crate::metrics::{labels, prefill, Counters};
use crate::payment_faults::Verdict;
use crate::rpc::{self, Credit, Rpc};
use crate::store::{decode, encode_fixed, open_db, GroupCommitter, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;

/// Ledger sequence → credit, append-only. Keyed by sequence so a double credit would show.
pub const LEDGER: TableDefinition<u64, [u8; crate::envelope::CREDIT_LEN]> =
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

#[derive(Debug, Clone)]
pub struct PaymentConfig {
    pub listen: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    /// Credit batches in flight before new ones are refused with Busy: the back
    /// rejects the front early and cheaply, and the backend's outbox holds the credits.
    pub max_in_flight: usize,
    /// Injected latency, failures and outages (none by default).
    pub faults: crate::payment_faults::PaymentFaults,
    /// Unix ms of the show's start: outage windows count from here.
    pub show_start_ms: i64,
}

#[derive(Debug, Error)]
pub enum PaymentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}

pub async fn run(
    config: PaymentConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PaymentError> {
    let db = open(&db_path(&config.data))?;
    let committer: GroupCommitter<Vec<Credit>, Vec<Applied>> =
        GroupCommitter::spawn(Arc::new(db), 256, apply);
    let credits = Counters::default();
    let mut registry = Registry::default();
    prefill(
        &credits,
        "result",
        &["credited", "duplicate", "busy", "down", "failed"],
    );
    registry.register(
        "sut_payment_credits",
        "Credits received, by result",
        credits.clone(),
    );
    registry.register_collector(Box::new(crate::store::CommitMetrics {
        db: "payment",
        stats: committer.stats.clone(),
    }));
    let in_flight: Gauge = Gauge::default();
    registry.register(
        "sut_payment_in_flight",
        "Credit batches being applied now (refused as busy past --max-in-flight)",
        in_flight.clone(),
    );
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!("payment listening on {}", config.listen);
    let max_in_flight = config.max_in_flight;
    let faults = Arc::new(config.faults.clone());
    let show_start_ms = config.show_start_ms;
    rpc::serve(listener, shutdown, move |request| {
        let committer = committer.clone();
        let counters = credits.clone();
        let in_flight = in_flight.clone();
        let faults = faults.clone();
        async move {
            let Rpc::ApplyCredits { credits } = request else {
                return Rpc::Failed {
                    message: "payment only takes ApplyCredits".into(),
                };
            };
            let roll = rand::random::<f64>();
            let delay = match faults.decide(crate::gateway::unix_ms() - show_start_ms, roll) {
                Verdict::Serve { delay } => delay,
                refused => {
                    let (name, message) = if refused == Verdict::Down {
                        ("down", "payment is down (an outage window)")
                    } else {
                        ("failed", "payment failed (an injected failure)")
                    };
                    counters.get_or_create(&labels(&[("result", name)])).inc();
                    return Rpc::Failed {
                        message: message.into(),
                    };
                }
            };
            if in_flight.inc() >= max_in_flight as i64 {
                in_flight.dec();
                counters.get_or_create(&labels(&[("result", "busy")])).inc();
                return Rpc::Busy { retry_after_ms: 50 };
            }
            // A slow transfer system holds its in-flight slot while it is slow, so that
            // latency turns into back-pressure on the backend as it would for real.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let ids: Vec<u64> = credits.iter().map(|c| c.envelope_id).collect();
            let committed = committer.submit(credits).await;
            in_flight.dec();
            match committed {
                Ok(results) => {
                    let names = results.into_iter().map(|r| {
                        if r == Applied::Credited {
                            "credited"
                        } else {
                            "duplicate"
                        }
                    });
                    crate::metrics::count_each(&counters, "result", names);
                    Rpc::CreditsApplied { envelope_ids: ids }
                }
                Err(e) => Rpc::Failed {
                    message: e.to_string(),
                },
            }
        }
    })
    .await;
    crate::log_line!("payment stopped");
    Ok(())
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
