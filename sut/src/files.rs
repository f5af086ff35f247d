//! The run's small files: the timeline an operator writes, and the manifest `sut up`
//! leaves in its data directory for load generators and the audit. Errors name the file.

use std::path::Path;
use sut_wire::manifest::{self, Manifest, ManifestError};
use sut_wire::timeline::{Timeline, TimelineError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a file's bytes; the error names it.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads and checks a timeline file.
pub fn load_timeline(path: &Path) -> Result<Timeline, FileError> {
    Ok(Timeline::parse(&read(path)?, &path.display().to_string())?)
}

/// Reads the manifest of the data directory `data`.
pub fn load_manifest(data: &Path) -> Result<Manifest, FileError> {
    let p = manifest::path(data);
    Ok(Manifest::parse(&read(&p)?, &p)?)
}

/// Writes the manifest into `data`, atomically.
pub fn save_manifest(m: &Manifest, data: &Path) -> Result<(), FileError> {
    write_atomic(&manifest::path(data), &m.to_json())
}

/// Writes a file whole (temp file, then rename), so a reader never sees half of it.
pub fn write_atomic(p: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let werr = |source| FileError::Write {
        path: p.display().to_string(),
        source,
    };
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(werr)?;
    std::fs::rename(&tmp, p).map_err(werr)
}

/// Creates `p` with `bytes` unless it exists: written whole beside it, then hard-linked
/// into place. A hard link fails when the name is taken, so of two writers racing for
/// one name only one creates it. `Ok(false)` when `p` existed.
pub fn create_once(p: &Path, bytes: &[u8]) -> Result<bool, FileError> {
    let werr = |source| FileError::Write {
        path: p.display().to_string(),
        source,
    };
    let dir = p.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(werr)?;
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(werr)?;
    let linked = std::fs::hard_link(&tmp, p);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(werr(e)),
    }
}
