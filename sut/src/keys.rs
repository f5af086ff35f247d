//! Key files: the gateways' signing key and the auth key, 32 bytes each in the data
//! directory, made on first start.

use rand::RngCore;
use std::path::Path;
use sut_wire::signing::{KeyError, SigningKey};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Reads a 32-byte key file.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(SigningKey::from_file_bytes(
        &bytes,
        &path.display().to_string(),
    )?)
}

/// Reads the key file, or creates it with fresh random bytes when it does not exist.
/// Parts started side by side on one data directory agree on one key: a new key is
/// written whole under a temporary name and linked into place only if no other part
/// got there first (then that one is read).
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyFileError> {
    if path.exists() {
        return load(path);
    }
    let werr = |source| KeyFileError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, secret).map_err(werr)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(SigningKey::from_bytes(secret)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load(path),
        Err(e) => Err(werr(e)),
    }
}
