//! The envelope backend: records every open exactly once (by envelope id) and forwards
//! the credit to payment, again exactly once, through a durable outbox. It also keeps
//! the split envelopes: shares, grabs (credited through the same outbox) and the
//! recycling of what expires (see [`split_store`]).

pub mod split_store;
mod splits;

use crate::drain::{Drain, Turn};
use crate::limit_view::{IssuanceLog, Issued};
use crate::metrics::{labels, prefill, Counters};
use crate::passthrough::{Backoff, OpenEntry};
use crate::rpc::{self, Credit, Rpc, RpcConn};
use crate::store::{decode, encode, encode_fixed, open_db, GroupCommitter, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::Rng;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use split_store::{ExpiryQueue, SplitAnswer, SplitRequest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Envelope id → the open as first recorded.
pub const OPENS: TableDefinition<u64, [u8; OPEN_RECORD_LEN]> = TableDefinition::new("opens");
/// Fixed widths of the hot tables' values (see [`crate::store::encode_fixed`]).
pub const OPEN_RECORD_LEN: usize = 56;
pub const CREDIT_LEN: usize = 32;
/// Envelope id → credit not yet acked by payment.
pub const OUTBOX: TableDefinition<u64, [u8; CREDIT_LEN]> = TableDefinition::new("outbox");
/// Position → issuance record of the shared limit view (see [`crate::limit_view`]), in
/// the order first published, so gateways' sync positions survive a restart.
pub const ISSUANCE: TableDefinition<u64, &[u8]> = TableDefinition::new("issuance");

pub fn db_path(data: &Path) -> PathBuf {
    data.join("envelope.redb")
}

/// An open as the backend keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub entry: OpenEntry,
    /// Which gateway delivered it first.
    pub via_gateway: u16,
}

/// What recording one delivered open did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen: recorded, and its credit is in the outbox.
    New(Credit),
    /// Seen before with the same content: a redelivery, acked again, nothing moves.
    Duplicate,
    /// Seen before with different content: impossible with signed tokens; kept out and
    /// counted so the audit and metrics show it.
    Conflict,
}

/// The idempotency rule, apart from storage.
pub fn classify(existing: Option<&OpenRecord>, entry: &OpenEntry) -> Recorded {
    match existing {
        None => Recorded::New(Credit {
            envelope_id: entry.token.envelope_id,
            user: entry.token.user,
            amount_cents: entry.token.amount_cents,
        }),
        Some(r) if r.entry.token == entry.token => Recorded::Duplicate,
        Some(_) => Recorded::Conflict,
    }
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
    }
}

/// Opens the backend's database and reads its outbox and issuance log.
pub fn open(path: &Path) -> Result<(Database, Vec<Credit>, IssuanceLog), StoreError> {
    let db = open_db(path)?;
    let txn = db.begin_write()?;
    txn.open_table(OPENS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(ISSUANCE)?;
    txn.open_table(split_store::SPLITS)?;
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

#[derive(Debug, Clone)]
pub struct EnvelopeConfig {
    pub listen: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    pub payment_addr: String,
    /// Most record requests in flight before new ones are refused with Busy.
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    /// How long a split pot may be shared and grabbed after its open.
    pub split_ttl: Duration,
    /// The show's start, Unix ms: opens and pots are stamped in show time.
    pub show_start_ms: i64,
}

#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}

struct Backend {
    committer: GroupCommitter<EnvelopeOp, Applied>,
    split_ttl_ms: i64,
    show_start_ms: i64,
    /// Pots not yet recycled, by expiry.
    expiry: Mutex<ExpiryQueue>,
    /// Shares and grabs by result, money dealt and recycled.
    splits: Counters,
    grabbed_cents: prometheus_client::metrics::counter::Counter,
    recycled_cents: prometheus_client::metrics::counter::Counter,
    /// The shared limit view's log; one publish at a time, so positions are assigned,
    /// made durable and appended in one order.
    issuance: tokio::sync::Mutex<IssuanceLog>,
    outbox: Mutex<BTreeMap<u64, Credit>>,
    outbox_notify: Notify,
    /// Requests being recorded now; bounded by `max_in_flight` (a gauge, so it is also
    /// what `/metrics` shows).
    in_flight: Gauge,
    max_in_flight: usize,
    recorded: Counters,
    outbox_depth: Gauge,
    credited: Counters,
}

/// Runs the backend until `shutdown`, then drains the outbox to payment (bounded).
pub async fn run(
    config: EnvelopeConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), EnvelopeError> {
    let (db, outbox, issuance) = open(&db_path(&config.data))?;
    let split_ttl_ms = config.split_ttl.as_millis().min(i64::MAX as u128) as i64;
    let expiry = ExpiryQueue::load(&db, split_ttl_ms)?;
    let mut registry = Registry::default();
    let backend = Arc::new(Backend {
        committer: GroupCommitter::spawn(Arc::new(db), 4096, apply),
        split_ttl_ms,
        show_start_ms: config.show_start_ms,
        expiry: Mutex::new(expiry),
        splits: Counters::default(),
        grabbed_cents: Default::default(),
        recycled_cents: Default::default(),
        issuance: tokio::sync::Mutex::new(issuance),
        outbox: Mutex::new(outbox.into_iter().map(|c| (c.envelope_id, c)).collect()),
        outbox_notify: Notify::new(),
        in_flight: Gauge::default(),
        max_in_flight: config.max_in_flight,
        recorded: Counters::default(),
        outbox_depth: Gauge::default(),
        credited: Counters::default(),
    });
    prefill(
        &backend.recorded,
        "result",
        &["new", "duplicate", "conflict", "busy"],
    );
    prefill(&backend.credited, "result", &["applied", "busy", "failed"]);
    splits::prefill(&backend.splits);
    registry.register(
        "sut_envelope_splits",
        "Shares and grabs at the backend, by request and result",
        backend.splits.clone(),
    );
    registry.register(
        "sut_envelope_grabbed_cents",
        "Cents dealt to friends' grabs (credited through the outbox)",
        backend.grabbed_cents.clone(),
    );
    registry.register(
        "sut_envelope_recycled_cents",
        "Cents of expired pots returned to their sponsors",
        backend.recycled_cents.clone(),
    );
    registry.register_collector(Box::new(crate::store::CommitMetrics {
        db: "envelope",
        stats: backend.committer.stats.clone(),
    }));
    registry.register(
        "sut_envelope_in_flight",
        "Open batches being recorded now (refused as busy past --max-in-flight)",
        backend.in_flight.clone(),
    );
    registry.register(
        "sut_envelope_opens",
        "Opens delivered to the backend, by result",
        backend.recorded.clone(),
    );
    registry.register(
        "sut_envelope_outbox_depth",
        "Credits waiting for payment's ack",
        backend.outbox_depth.clone(),
    );
    registry.register(
        "sut_envelope_credits_forwarded",
        "Credits sent to payment, by result",
        backend.credited.clone(),
    );
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!("envelope backend listening on {}", config.listen);

    let forwarder = tokio::spawn(forward(
        backend.clone(),
        config.payment_addr.clone(),
        shutdown.clone(),
        config.drain_timeout,
    ));
    let expirer = tokio::spawn(splits::expire(backend.clone(), shutdown.clone()));
    let handler_backend = backend.clone();
    rpc::serve(listener, shutdown, move |request| {
        let b = handler_backend.clone();
        async move { handle(&b, request).await }
    })
    .await;
    let _ = expirer.await;
    let _ = forwarder.await;
    let left = backend.outbox.lock().map(|o| o.len()).unwrap_or(0);
    crate::log_line!("envelope backend stopped ({left} credits left in its outbox)");
    Ok(())
}

async fn sync_issued(b: &Backend, publish: Vec<Issued>, since: u64) -> Rpc {
    let mut log = b.issuance.lock().await;
    let fresh = log.fresh(&publish);
    if !fresh.is_empty() {
        let start = log.len() as u64;
        let positioned = fresh
            .iter()
            .enumerate()
            .map(|(i, r)| (start + i as u64, *r))
            .collect();
        if let Err(e) = b.committer.submit(EnvelopeOp::Publish(positioned)).await {
            return Rpc::Failed {
                message: e.to_string(),
            };
        }
        log.append(&fresh);
    }
    let (records, next) = log.since(since, crate::limit_view::SYNC_PAGE);
    Rpc::IssuedSince { records, next }
}

async fn handle(b: &Backend, request: Rpc) -> Rpc {
    let (gateway, entries) = match request {
        Rpc::SyncIssued { publish, since, .. } => return sync_issued(b, publish, since).await,
        Rpc::Split { requests } => return splits::handle(b, requests).await,
        Rpc::RecordOpens { gateway, entries } => (gateway, entries),
        _ => {
            return Rpc::Failed {
                message: "the envelope backend takes RecordOpens, Split and SyncIssued".into(),
            }
        }
    };
    // The back rejects the front: refuse early and cheaply when full, the gateway's
    // queue holds the opens meanwhile.
    if b.in_flight.inc() >= b.max_in_flight as i64 {
        b.in_flight.dec();
        b.recorded
            .get_or_create(&labels(&[("result", "busy")]))
            .inc();
        return Rpc::Busy { retry_after_ms: 50 };
    }
    // What the reply and the expiry queue need of each entry, kept apart from the batch
    // the store takes: its queue sequence and its open's show time.
    let seqs: Vec<(u64, i64)> = entries.iter().map(|(s, e)| (*s, e.opened_ms)).collect();
    let result = b
        .committer
        .submit(EnvelopeOp::Record { gateway, entries })
        .await;
    b.in_flight.dec();
    match result {
        Ok(Applied::Recorded(verdicts)) => {
            let mut acked = Vec::with_capacity(seqs.len());
            let mut pots = Vec::new();
            let mut names = Vec::with_capacity(seqs.len());
            if let Ok(mut outbox) = b.outbox.lock() {
                for ((seq, opened_ms), v) in seqs.into_iter().zip(verdicts) {
                    let name = match v {
                        Recorded::New(credit) => {
                            outbox.insert(credit.envelope_id, credit);
                            pots.push((opened_ms + b.split_ttl_ms, credit.envelope_id));
                            "new"
                        }
                        Recorded::Duplicate => "duplicate",
                        Recorded::Conflict => "conflict",
                    };
                    names.push(name);
                    // A conflict is never acked: it stays in the gateway's queue, visible.
                    if v != Recorded::Conflict {
                        acked.push(seq);
                    }
                }
                b.outbox_depth.set(outbox.len() as i64);
            }
            crate::metrics::count_each(&b.recorded, "result", names);
            if let Ok(mut q) = b.expiry.lock() {
                for (at, id) in pots {
                    q.push(at, id);
                }
            }
            b.outbox_notify.notify_one();
            Rpc::OpensRecorded { seqs: acked }
        }
        Ok(_) => Rpc::Failed {
            message: "the store answered a record with another kind of result".into(),
        },
        Err(e) => Rpc::Failed {
            message: e.to_string(),
        },
    }
}

async fn forward(
    b: Arc<Backend>,
    payment: String,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    const BATCH: usize = 2048;
    let timeout = Duration::from_secs(5);
    let mut conn: Option<RpcConn> = None;
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
    let mut drain = Drain::new(drain_timeout);
    loop {
        let credits: Vec<Credit> = b
            .outbox
            .lock()
            .map(|o| o.values().take(BATCH).copied().collect())
            .unwrap_or_default();
        // The gateways are stopped before the backend, so nothing adds credits now.
        let shutting_down = *shutdown.borrow();
        match drain.turn(Instant::now(), shutting_down, credits.is_empty(), true) {
            Turn::Stop => return,
            Turn::Idle => {
                drain.idle(&b.outbox_notify, &mut shutdown).await;
                continue;
            }
            Turn::Work => {}
        }
        let reply = rpc::call_on(&mut conn, &payment, Rpc::ApplyCredits { credits }, timeout)
            .await
            .and_then(Result::ok);
        match reply {
            Some(Rpc::CreditsApplied { envelope_ids }) => {
                backoff.reset();
                if b.committer
                    .submit(EnvelopeOp::Settled(envelope_ids.clone()))
                    .await
                    .is_ok()
                {
                    if let Ok(mut o) = b.outbox.lock() {
                        for id in &envelope_ids {
                            o.remove(id);
                        }
                        b.outbox_depth.set(o.len() as i64);
                    }
                    b.credited
                        .get_or_create(&labels(&[("result", "applied")]))
                        .inc_by(envelope_ids.len() as u64);
                }
            }
            other => {
                let result = if matches!(other, Some(Rpc::Busy { .. })) {
                    "busy"
                } else {
                    "failed"
                };
                b.credited
                    .get_or_create(&labels(&[("result", result)]))
                    .inc();
                if !matches!(other, Some(Rpc::Busy { .. })) {
                    conn = None;
                }
                let jitter = rand::rng().random::<f64>();
                tokio::time::sleep(backoff.next_delay(jitter)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
