//! Embedded durable storage (redb): opening a database without ever re-creating one
//! that existed, record encoding, and what a storage error is. Writes go through the
//! group committer ([`crate::committer`]).

use redb::Database;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::Ordering;
use thiserror::Error;

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
    #[error("{path} cannot be written since a storage failure; it is reopened as soon as the disk allows")]
    Unwritable { path: String },
}

impl StoreError {
    /// The I/O error underneath, if the storage itself failed (rather than a record).
    fn io(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Redb(e) => match e.as_ref() {
                redb::Error::Io(io) => Some(io),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the disk under the database failed: the database must be reopened
    /// before it takes writes again (redb refuses every write after one that failed).
    pub fn is_storage_fault(&self) -> bool {
        self.io().is_some()
            || matches!(self, StoreError::Redb(e) if matches!(e.as_ref(), redb::Error::PreviousIo))
    }

    /// A short name for metrics: `no_space`, `io` or `other`.
    pub fn kind(&self) -> &'static str {
        match self.io() {
            Some(io) if io.kind() == std::io::ErrorKind::StorageFull => "no_space",
            Some(io) if io.raw_os_error() == Some(28) => "no_space",
            Some(_) => "io",
            None if self.is_storage_fault() => "io",
            None => "other",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
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
