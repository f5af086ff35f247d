//! Embedded durable storage (redb) and its group committer.
//!
//! One committer task per database drains a channel: every operation waiting at that
//! moment goes into one write transaction, one fsync, then each sender gets its result.
//! Under load the fsync cost is shared by the whole batch; when idle a single operation
//! commits at once. Idempotency checks run inside the write transaction, so a check and
//! its insert can never be split by another writer.

use redb::{Database, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {message}; if the file is corrupt, move it aside (its data will be missing from the audit)")]
    Open { path: String, message: String },
    #[error("storage error: {0}")]
    Redb(Box<redb::Error>),
    #[error("stored record is corrupt: {0}")]
    Record(#[from] postcard::Error),
    #[error("the committer has stopped")]
    Closed,
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
redb_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opens (or creates) a database, naming the file in any error. A database is created
/// only where none ever was: its first creation leaves a marker beside it
/// (`NAME.redb.created`), and a database file that is then missing, empty or truncated
/// is refused rather than silently re-created empty (DESIGN.md section 4, invariant 8).
pub fn open_db(path: &Path) -> Result<Database, StoreError> {
    let refuse = |message: String| StoreError::Open {
        path: path.display().to_string(),
        message,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| refuse(e.to_string()))?;
    }
    let marker = created_marker(path);
    match std::fs::metadata(path) {
        Ok(_) => check_not_emptied(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && marker.exists() => {
            return Err(refuse(format!(
                "it was created here before ({} says so) and is gone; restore it, or remove both to start this part with no data",
                marker.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.to_string())),
    }
    let db = without_panics(path, || Database::create(path))?;
    if !marker.exists() {
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| refuse(format!("cannot write {}: {e}", marker.display())))?;
    }
    Ok(db)
}

/// Opens an existing database (the audit): a missing, empty or truncated file is an
/// error naming it.
pub fn open_existing(path: &Path) -> Result<Database, StoreError> {
    check_not_emptied(path)?;
    without_panics(path, || Database::open(path))
}

/// Where the marker of a database's first creation lives.
fn created_marker(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".created");
    name.into()
}

/// An empty file is what a lost write or a careless copy leaves: redb would take it
/// for a new database.
fn check_not_emptied(path: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(StoreError::Open {
            path: path.display().to_string(),
            message: "the file is empty (0 bytes): its data is lost; restore it from a backup, or remove it (and its .created marker) to start this part with no data".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Runs a redb open, turning its errors, and any panic it raises on a damaged file
/// (a truncated file trips its assertions), into an error naming the file.
fn without_panics(
    path: &Path,
    open: impl FnOnce() -> Result<Database, redb::DatabaseError>,
) -> Result<Database, StoreError> {
    let refuse = |message: String| StoreError::Open {
        path: path.display().to_string(),
        message,
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(refuse(e.to_string())),
        Err(_) => Err(refuse(
            "the file is damaged (truncated or corrupt) and cannot be read; restore it from a backup".into(),
        )),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_stdvec(value)?)
}

/// The fixed width of a stored credit (the backend's outbox, payment's ledger).
pub const CREDIT_LEN: usize = 32;

/// Encodes a record into a fixed-width, zero-padded array. Hot tables keep their values
/// at a fixed width because redb then leaves a leaf's other entries alone on an insert;
/// with variable-width values every insert rewrites the offset of every entry in its
/// leaf, which was the envelope backend's largest cost on the open path. (Postcard
/// reads a record back from the front and ignores the padding.)
pub fn encode_fixed<T: Serialize, const N: usize>(value: &T) -> Result<[u8; N], StoreError> {
    let mut buf = [0u8; N];
    postcard::to_slice(value, &mut buf)?;
    Ok(buf)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Whether commits wait for the disk (fsync). On by default; `--no-fsync` turns it off
/// for a whole process, to measure what durability costs (never for a real run: a crash
/// may then lose what was acknowledged).
static FSYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_fsync(on: bool) {
    FSYNC.store(on, Ordering::Relaxed);
}

pub fn fsync() -> bool {
    FSYNC.load(Ordering::Relaxed)
}

/// Batch figures, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub largest_batch: AtomicU64,
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

impl<Op: Send + 'static, R: Send + 'static> GroupCommitter<Op, R> {
    /// Starts the committer. `apply` runs each operation inside the batch's transaction;
    /// it returns an error only for storage failures (which abort the whole batch).
    pub fn spawn<F>(db: Arc<Database>, max_batch: usize, apply: F) -> Self
    where
        F: Fn(&WriteTransaction, Op) -> Result<R, StoreError> + Send + Sync + 'static,
    {
        Self::spawn_batched(db, max_batch, move |txn, ops| {
            ops.into_iter().map(|op| apply(txn, op)).collect()
        })
    }

    /// Like [`GroupCommitter::spawn`], with `apply` given the whole batch at once (one
    /// result per operation, in order), so it can open its tables once per transaction.
    pub fn spawn_batched<F>(db: Arc<Database>, max_batch: usize, apply: F) -> Self
    where
        F: Fn(&WriteTransaction, Vec<Op>) -> Result<Vec<R>, StoreError> + Send + Sync + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Op, R>>(max_batch * 4);
        let stats = Arc::new(CommitStats::default());
        let task_stats = stats.clone();
        let apply = Arc::new(apply);
        tokio::spawn(async move {
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
                let db = db.clone();
                let apply = apply.clone();
                // The fsync blocks: keep it off the event loop.
                let result = tokio::task::spawn_blocking(move || -> Result<Vec<R>, StoreError> {
                    let mut txn = db.begin_write()?;
                    if !fsync() {
                        txn.set_durability(redb::Durability::None);
                    }
                    let out = apply(&txn, ops)?;
                    txn.commit()?;
                    Ok(out)
                })
                .await
                .unwrap_or(Err(StoreError::Closed));
                task_stats.batches.fetch_add(1, Ordering::Relaxed);
                task_stats.ops.fetch_add(n, Ordering::Relaxed);
                task_stats.largest_batch.fetch_max(n, Ordering::Relaxed);
                match result {
                    Ok(outs) => {
                        for (s, r) in senders.into_iter().zip(outs) {
                            let _ = s.send(Ok(r));
                        }
                    }
                    Err(e) => {
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

/// `sut_store_batches_total` and `sut_store_operations_total` for one database, read at
/// scrape time: operations over batches is the group commit's batch size.
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
        ] {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(e.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_submits_share_batches_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open_db(&dir.path().join("x.redb")).unwrap());
        let c: GroupCommitter<u64, bool> = GroupCommitter::spawn(db.clone(), 64, |txn, k| {
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
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(T).unwrap().len().unwrap(), 150);
        assert_eq!(c.stats.ops.load(Ordering::Relaxed), 200);
        assert!(c.stats.batches.load(Ordering::Relaxed) < 200);
    }

    #[test]
    fn corrupt_database_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.redb");
        std::fs::write(&p, vec![0x5au8; 8192]).unwrap();
        let e = open_db(&p).unwrap_err().to_string();
        assert!(e.contains("bad.redb"), "{e}");
    }

    #[test]
    fn a_database_that_existed_is_never_recreated_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.redb");
        {
            let db = open_db(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(redb::TableDefinition::<u64, u64>::new("t"))
                .unwrap()
                .insert(1, 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        let named = |e: StoreError| {
            let m = e.to_string();
            assert!(m.contains(&path.display().to_string()), "{m}");
            m
        };
        // Emptied.
        std::fs::write(&path, b"").unwrap();
        assert!(named(open_db(&path).unwrap_err()).contains("empty"));
        assert!(named(open_existing(&path).unwrap_err()).contains("empty"));
        // Truncated: an error, not a panic.
        std::fs::write(&path, &full[..full.len() / 3]).unwrap();
        named(open_db(&path).unwrap_err());
        named(open_existing(&path).unwrap_err());
        // Gone.
        std::fs::remove_file(&path).unwrap();
        assert!(named(open_db(&path).unwrap_err()).contains("gone"));
        // Whole again: opens.
        std::fs::write(&path, &full).unwrap();
        open_db(&path).unwrap();
    }
}
