//! The group committer: one task per database drains a channel; every operation waiting
//! at that moment goes into one write transaction, one fsync, then each sender gets its
//! result. Under load the fsync cost is shared by the whole batch; when idle a single
//! operation commits at once. Idempotency checks run inside the write transaction, so a
//! check and its insert can never be split by another writer.
//!
//! A failed write (a full disk, an I/O error) is logged with the file and the error,
//! counted (`sut_store_errors_total{db,kind}`) and answered as an error to the batch's
//! senders, who tell their users to retry; then the database is closed and reopened
//! (redb refuses every write after a failed one), retried with a growing pause while
//! the disk still refuses, so writes resume by themselves once the cause goes away.
//! Nothing committed is touched: a failed transaction commits nothing.

use crate::store::{open_db, StoreError};
use redb::{Database, WriteTransaction};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The first pause before reopening a database after a failed write; it doubles while
/// the reopen or the next write fails, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Batch and fault figures, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub largest_batch: AtomicU64,
    /// Failed writes by kind (`no_space`, `io`, `other`).
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Times the database was reopened after a failed write.
    pub reopens: AtomicU64,
}

type Job<Op, R> = (Op, oneshot::Sender<Result<R, Arc<StoreError>>>);

/// Submits operations to one database's committer task.
pub struct GroupCommitter<Op, R> {
    tx: mpsc::Sender<Job<Op, R>>,
    pub stats: Arc<CommitStats>,
}

impl<Op, R> Clone for GroupCommitter<Op, R> {
    fn clone(&self) -> Self {
        GroupCommitter {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// The database a committer writes, and where it lives (to reopen it, and to name it).
struct Store {
    db: Option<Arc<Database>>,
    path: PathBuf,
    /// No reopen before this.
    retry_at: Instant,
    pause: Duration,
}

impl Store {
    /// The database, reopening it first if a failed write closed it and the pause is
    /// over; `None` while it cannot be written.
    async fn writable(&mut self, stats: &CommitStats) -> Option<Arc<Database>> {
        if self.db.is_none() && Instant::now() >= self.retry_at {
            let path = self.path.clone();
            let reopened = tokio::task::spawn_blocking(move || open_db(&path))
                .await
                .unwrap_or(Err(StoreError::Closed));
            match reopened {
                Ok(db) => {
                    stats.reopens.fetch_add(1, Ordering::Relaxed);
                    crate::log_line!("{}: reopened after a failed write", self.path.display());
                    self.db = Some(Arc::new(db));
                }
                Err(e) => {
                    crate::log_line!("{}: cannot reopen yet: {e}", self.path.display());
                    self.back_off();
                }
            }
        }
        self.db.clone()
    }

    /// A write failed: log, count, and close the database if the disk failed.
    fn failed(&mut self, e: &StoreError, stats: &CommitStats) {
        let kind = e.kind();
        if let Ok(mut errors) = stats.errors.lock() {
            *errors.entry(kind).or_default() += 1;
        }
        if e.is_storage_fault() {
            crate::log_line!(
                "{}: write failed ({kind}): {e}; its requests were refused as retriable, and the database is reopened once the disk allows",
                self.path.display()
            );
            self.db = None;
            self.back_off();
        } else {
            crate::log_line!("{}: write failed ({kind}): {e}", self.path.display());
        }
    }

    fn back_off(&mut self) {
        self.retry_at = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }
}

impl<Op: Send + 'static, R: Send + 'static> GroupCommitter<Op, R> {
    /// Starts the committer of the database `db`, opened from `path`. `apply` runs each
    /// operation inside the batch's transaction; it returns an error only for storage
    /// failures (which abort the whole batch).
    pub fn spawn<F>(db: Database, path: PathBuf, max_batch: usize, apply: F) -> Self
    where
        F: Fn(&WriteTransaction, Op) -> Result<R, StoreError> + Send + Sync + 'static,
    {
        let batched = move |txn: &WriteTransaction, ops: Vec<Op>| {
            ops.into_iter().map(|op| apply(txn, op)).collect()
        };
        let here = tokio::runtime::Handle::current();
        Self::spawn_batched(&here, db, path, max_batch, batched)
    }

    /// Like [`GroupCommitter::spawn`], with `apply` given the whole batch at once (one
    /// result per operation, in order), so it can open its tables once per transaction,
    /// and the committer's task on the runtime `on`.
    pub fn spawn_batched<F>(
        on: &tokio::runtime::Handle,
        db: Database,
        path: PathBuf,
        max_batch: usize,
        apply: F,
    ) -> Self
    where
        F: Fn(&WriteTransaction, Vec<Op>) -> Result<Vec<R>, StoreError> + Send + Sync + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Op, R>>(max_batch * 4);
        let stats = Arc::new(CommitStats::default());
        let task_stats = stats.clone();
        let apply = Arc::new(apply);
        let mut store = Store {
            db: Some(Arc::new(db)),
            path,
            retry_at: Instant::now(),
            pause: FIRST_PAUSE,
        };
        on.spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let (ops, senders): (Vec<Op>, Vec<_>) = jobs.into_iter().unzip();
                let n = ops.len() as u64;
                let result = match store.writable(&task_stats).await {
                    Some(db) => commit(db, apply.clone(), ops).await,
                    None => Err(StoreError::Unwritable {
                        path: store.path.display().to_string(),
                    }),
                };
                match result {
                    Ok(outs) => {
                        store.pause = FIRST_PAUSE;
                        task_stats.batches.fetch_add(1, Ordering::Relaxed);
                        task_stats.ops.fetch_add(n, Ordering::Relaxed);
                        task_stats.largest_batch.fetch_max(n, Ordering::Relaxed);
                        for (s, r) in senders.into_iter().zip(outs) {
                            let _ = s.send(Ok(r));
                        }
                    }
                    Err(e) => {
                        if !matches!(e, StoreError::Unwritable { .. }) {
                            store.failed(&e, &task_stats);
                        }
                        let e = Arc::new(e);
                        for s in senders {
                            let _ = s.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        GroupCommitter { tx, stats }
    }

    /// Commits one operation durably and returns its result.
    pub async fn submit(&self, op: Op) -> Result<R, Arc<StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((op, tx))
            .await
            .map_err(|_| Arc::new(StoreError::Closed))?;
        rx.await.map_err(|_| Arc::new(StoreError::Closed))?
    }
}

/// One batch in one transaction, off the event loop (the fsync blocks).
async fn commit<Op: Send + 'static, R: Send + 'static, F>(
    db: Arc<Database>,
    apply: Arc<F>,
    ops: Vec<Op>,
) -> Result<Vec<R>, StoreError>
where
    F: Fn(&WriteTransaction, Vec<Op>) -> Result<Vec<R>, StoreError> + Send + Sync + 'static,
{
    tokio::task::spawn_blocking(move || -> Result<Vec<R>, StoreError> {
        let mut txn = db.begin_write()?;
        if !crate::store::fsync() {
            txn.set_durability(redb::Durability::None);
        }
        let out = apply(&txn, ops)?;
        txn.commit()?;
        Ok(out)
    })
    .await
    .unwrap_or(Err(StoreError::Closed))
}

/// `sut_store_batches_total`, `sut_store_operations_total`, `sut_store_errors_total`
/// and `sut_store_reopens_total` for one database, read at scrape time: operations
/// over batches is the group commit's batch size.
#[derive(Debug)]
pub struct CommitMetrics {
    pub db: &'static str,
    pub stats: Arc<CommitStats>,
}

impl prometheus_client::collector::Collector for CommitMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::MetricType;
        let labels = [("db", self.db)];
        for (name, help, value) in [
            (
                "sut_store_batches",
                "Write transactions committed (each one fsync when durable)",
                self.stats.batches.load(Ordering::Relaxed),
            ),
            (
                "sut_store_operations",
                "Operations committed; divided by batches, the group commit's batch size",
                self.stats.ops.load(Ordering::Relaxed),
            ),
            (
                "sut_store_reopens",
                "Times the database was reopened after a failed write",
                self.stats.reopens.load(Ordering::Relaxed),
            ),
        ] {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(e.encode_family(&labels)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "sut_store_errors",
            "Failed writes, by kind (no_space, io, other); each batch's requests were refused as retriable",
            None,
            MetricType::Counter,
        )?;
        let errors = self
            .stats
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        for kind in ["no_space", "io", "other"] {
            let n = errors.get(kind).copied().unwrap_or(0);
            ConstCounter::new(n).encode(e.encode_family(&[("db", self.db), ("kind", kind)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
    use std::sync::atomic::AtomicUsize;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// Opens `path` once its committer has let go of it.
    async fn reopen(path: &std::path::Path) -> Database {
        for _ in 0..1_000 {
            if let Ok(db) = open_db(path) {
                return db;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} stayed open", path.display());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_submits_share_batches_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let c: GroupCommitter<u64, bool> =
            GroupCommitter::spawn(open_db(&path).unwrap(), path.clone(), 64, |txn, k| {
                let mut t = txn.open_table(T)?;
                let fresh = t.get(k)?.is_none();
                if fresh {
                    t.insert(k, k * 2)?;
                }
                Ok(fresh)
            });
        let futs: Vec<_> = (0..200u64).map(|k| c.submit(k % 150)).collect();
        let results = futures_util::future::join_all(futs).await;
        let fresh = results.iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(fresh, 150, "check-then-insert is idempotent");
        assert_eq!(c.stats.ops.load(Ordering::Relaxed), 200);
        assert!(c.stats.batches.load(Ordering::Relaxed) < 200);
        drop(c);
        let db = reopen(&path).await;
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(T).unwrap().len().unwrap(), 150);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_write_is_counted_refused_and_recovered_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        // The first three batches hit a full disk (as redb reports it).
        let failures = Arc::new(AtomicUsize::new(3));
        let f = failures.clone();
        let c: GroupCommitter<u64, ()> =
            GroupCommitter::spawn(open_db(&path).unwrap(), path.clone(), 64, move |txn, k| {
                if f.load(Ordering::SeqCst) > 0 {
                    f.fetch_sub(1, Ordering::SeqCst);
                    let full = std::io::Error::from_raw_os_error(28);
                    return Err(StoreError::from(redb::Error::Io(full)));
                }
                txn.open_table(T)?.insert(k, k)?;
                Ok(())
            });
        let mut refused = 0;
        let mut k = 0;
        // Each write is refused (never a hang) until the disk takes writes again.
        while c.submit(k).await.is_err() {
            refused += 1;
            k += 1;
            assert!(refused < 1_000, "the committer never recovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused >= 3, "{refused}");
        assert_eq!(c.stats.errors.lock().unwrap().get("no_space"), Some(&3));
        assert!(c.stats.reopens.load(Ordering::Relaxed) >= 1);
        // What was committed after the recovery is there, once.
        c.submit(k + 1).await.unwrap();
        drop(c);
        let db = reopen(&path).await;
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(T).unwrap().len().unwrap(), 2);
    }
}
