//! The gateways' QUIC certificate: made on first start into the data directory, kept
//! across restarts. Gateways read the identity file (key and certificate); load
//! generators trust the certificate file (`shellkit::quic::CERT_FILE`) and nothing else.

use shellkit::quic::{CERT_FILE, KEY_FILE};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CertError {
    #[error("cannot make the QUIC certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no certificate after its key: delete it to have a new one made")]
    NoCertificate { path: PathBuf },
}

/// The names every certificate covers besides the gateways' own host.
const ALWAYS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The gateways' identity file in `data` (key, then certificate, PEM), made for `hosts`
/// (and loopback) when it does not exist yet; the certificate alone is (re)written to
/// `data/quic-cert.pem` for clients. Parts started side by side agree on one identity:
/// a new one is written whole under a temporary name and linked into place only if no
/// other part got there first.
pub fn ensure(data: &Path, hosts: &[String]) -> Result<PathBuf, CertError> {
    let identity = data.join(KEY_FILE);
    if !identity.exists() {
        let mut names: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
        for h in hosts {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        let made = rcgen::generate_simple_self_signed(names)?;
        let text = format!("{}{}", made.signing_key.serialize_pem(), made.cert.pem());
        let tmp = identity.with_extension(format!("{}.tmp", std::process::id()));
        let werr = |source| CertError::Write {
            path: identity.clone(),
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(werr)?;
        let linked = std::fs::hard_link(&tmp, &identity);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(werr(e)),
        }
    }
    write_certificate(data, &identity)?;
    Ok(identity)
}

/// Writes the identity's certificate part to the clients' file (atomically, so a
/// reader never sees half of it).
fn write_certificate(data: &Path, identity: &Path) -> Result<(), CertError> {
    let text = std::fs::read_to_string(identity).map_err(|source| CertError::Read {
        path: identity.to_path_buf(),
        source,
    })?;
    let start =
        text.find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| CertError::NoCertificate {
                path: identity.to_path_buf(),
            })?;
    let cert = data.join(CERT_FILE);
    let tmp = cert.with_extension(format!("{}.tmp", std::process::id()));
    let werr = |source| CertError::Write {
        path: cert.clone(),
        source,
    };
    std::fs::write(&tmp, &text[start..]).map_err(werr)?;
    std::fs::rename(&tmp, &cert).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_and_its_certificate_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.2".to_string()];
        let identity = ensure(dir.path(), &hosts).unwrap();
        let first = std::fs::read(&identity).unwrap();
        assert_eq!(ensure(dir.path(), &hosts).unwrap(), identity);
        assert_eq!(std::fs::read(&identity).unwrap(), first, "made again");
        let idle = std::time::Duration::from_secs(30);
        shellkit::quic::server_config(&identity, idle).unwrap();
        shellkit::quic::client_config(&dir.path().join(CERT_FILE), idle).unwrap();
        // The clients' file holds the certificate and never the key.
        let cert = std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
        assert!(!cert.contains("PRIVATE KEY"));
    }
}
