//! The live timeline's files in a data directory: the operator's key pair, and every
//! signed schedule version the operator made (`timeline/v000002.json`, ...), which is
//! both the pull channel's versioned source and what the audit judges issues by.
//!
//! A version file is created, never replaced: two operators racing for one version
//! number cannot both win it (the loser takes the next).

use crate::files::{read_bytes as read, write_atomic, FileError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
pub use sut_wire::schedule::versions_dir;
use sut_wire::schedule::{
    recorded_numbers, version_path, OperatorKey, OperatorPublic, Schedule, ScheduleError,
    SignedSchedule,
};
use sut_wire::timeline::Timeline;
use thiserror::Error;

pub const PRIVATE_KEY: &str = "operator.key";
pub const PUBLIC_KEY: &str = "operator.pub";

#[derive(Debug, Error)]
pub enum ScheduleFileError {
    #[error("{path}: {source}")]
    Schedule { path: String, source: ScheduleError },
    #[error(transparent)]
    File(#[from] FileError),
}

/// A write to `path` failed.
fn write_error(path: &Path) -> impl Fn(std::io::Error) -> ScheduleFileError + '_ {
    move |source| {
        ScheduleFileError::File(FileError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The operator's key pair in `data`, made on first use (the private key owner-only).
pub fn operator_key(data: &Path) -> Result<OperatorKey, ScheduleFileError> {
    let path = data.join(PRIVATE_KEY);
    let name = path.display().to_string();
    if !path.exists() {
        let pkcs8 =
            OperatorKey::generate_pkcs8().map_err(|source| ScheduleFileError::Schedule {
                path: name.clone(),
                source,
            })?;
        let key = OperatorKey::from_pkcs8(&pkcs8, &name).map_err(|source| {
            ScheduleFileError::Schedule {
                path: name.clone(),
                source,
            }
        })?;
        create_private(&path, &pkcs8)?;
        write_atomic(&data.join(PUBLIC_KEY), key.public().as_bytes())?;
    }
    let key = OperatorKey::from_pkcs8(&read(&path)?, &name).map_err(|source| {
        ScheduleFileError::Schedule {
            path: name.clone(),
            source,
        }
    })?;
    // The public half is what gateways trust: keep it the private key's.
    let public = data.join(PUBLIC_KEY);
    if read(&public).ok().as_deref() != Some(key.public().as_bytes().as_slice()) {
        write_atomic(&public, key.public().as_bytes())?;
    }
    Ok(key)
}

/// Creates the private key file readable by its owner alone; another part that made
/// one first wins (then that one is used).
fn create_private(path: &Path, bytes: &[u8]) -> Result<(), ScheduleFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = write_error(path);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => f.write_all(bytes).and_then(|_| f.sync_all()).map_err(&werr),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(werr(e)),
    }
}

/// The operator's public key, which gateways and config services check versions
/// with (the pair is made when `data` has none).
pub fn operator_public(data: &Path) -> Result<OperatorPublic, ScheduleFileError> {
    let path = data.join(PUBLIC_KEY);
    if !path.exists() {
        return Ok(operator_key(data)?.public());
    }
    OperatorPublic::from_bytes(&read(&path)?, &path.display().to_string()).map_err(|source| {
        ScheduleFileError::Schedule {
            path: path.display().to_string(),
            source,
        }
    })
}

/// The version a timeline file starts a show at.
pub fn first_schedule(timeline: &Timeline) -> Schedule {
    Schedule {
        version: timeline.version,
        signed_unix_ms: 0,
        change: "the timeline at start".into(),
        clock_offset_ms: 0,
        timeline: timeline.clone(),
    }
}

/// Records a new signed version; `Ok(false)` when that version number is taken (the
/// number is claimed atomically, see [`crate::files::create_once`]).
pub fn save_version(
    data: &Path,
    version: u64,
    signed: &SignedSchedule,
) -> Result<bool, ScheduleFileError> {
    Ok(crate::files::create_once(
        &version_path(data, version),
        &signed.to_json(),
    )?)
}

/// The highest version number recorded in `data` (0 when none).
pub fn latest_number(data: &Path) -> u64 {
    recorded_numbers(data).last().copied().unwrap_or(0)
}

/// Reads and verifies one recorded version.
pub fn load_version(
    data: &Path,
    version: u64,
    public: &OperatorPublic,
) -> Result<(Schedule, SignedSchedule), ScheduleFileError> {
    let path = version_path(data, version);
    let bad = |source| ScheduleFileError::Schedule {
        path: path.display().to_string(),
        source,
    };
    let signed = SignedSchedule::from_json(&read(&path)?).map_err(bad)?;
    let schedule = public.verify(&signed).map_err(bad)?;
    Ok((schedule, signed))
}

/// Every recorded version, verified, by number; plus the first (from the timeline the
/// show started with) when `first` is given.
pub fn all_versions(
    data: &Path,
    public: &OperatorPublic,
    first: Option<&Timeline>,
) -> Result<BTreeMap<u64, Schedule>, ScheduleFileError> {
    let mut out = BTreeMap::new();
    if let Some(t) = first {
        out.insert(t.version, first_schedule(t));
    }
    for v in recorded_numbers(data) {
        out.insert(v, load_version(data, v, public)?.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_claimed_once_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let key = operator_key(dir.path()).unwrap();
        let public = operator_public(dir.path()).unwrap();
        assert_eq!(public, key.public());
        let t = Timeline::parse("rounds: []\n", "t").unwrap();
        let mut s = first_schedule(&t);
        s.version = 2;
        let signed = key.sign(&s);
        assert!(save_version(dir.path(), 2, &signed).unwrap());
        assert!(!save_version(dir.path(), 2, &signed).unwrap(), "taken");
        assert_eq!(latest_number(dir.path()), 2);
        let all = all_versions(dir.path(), &public, Some(&t)).unwrap();
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        // A version file changed on disk no longer verifies.
        let p = version_path(dir.path(), 2);
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("start", "START");
        std::fs::write(&p, text).unwrap();
        assert!(load_version(dir.path(), 2, &public).is_err());
    }
}
