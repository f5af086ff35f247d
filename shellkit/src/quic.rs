//! QUIC as both sides configure it: the gateway's server (quinn-proto driven by its
//! endpoint task) and the load generator's clients (quinn-proto driven by the worker's
//! own event loop) agree here on the ALPN, the certificate files and what a shake
//! session may cost a connection.
//!
//! A shake session is one bidirectional stream of small frames, so the defaults (sized
//! for bulk transfers: megabytes of windows, many streams, path-MTU probing) are cut to
//! what it needs; every cap below bounds the bytes a peer can make the other side hold.

use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{ClientConfig, IdleTimeout, ServerConfig, TransportConfig, VarInt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The application protocol both sides name in the handshake.
pub const ALPN: &[u8] = b"shake/1";
/// The gateways' certificate in a data directory (PEM), which load generators trust.
pub const CERT_FILE: &str = "quic-cert.pem";
/// The gateways' identity: its private key, then the certificate (PEM), read by the
/// gateways only.
pub const KEY_FILE: &str = "quic-key.pem";

/// Bytes a peer may have in flight to us on the session's stream.
pub const STREAM_WINDOW: u32 = 8 * 1024;
/// Bytes a peer may have in flight to us over the whole connection.
pub const CONNECTION_WINDOW: u32 = 16 * 1024;
/// Bytes we keep unacknowledged towards a peer.
pub const SEND_WINDOW: u64 = 16 * 1024;
/// Handshake bytes buffered per encryption level.
const CRYPTO_BUFFER: usize = 4 * 1024;

#[derive(Debug, Error)]
pub enum QuicError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate: give the gateways' {CERT_FILE} from the system's data directory")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate in {path} cannot be trusted: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

fn read(path: &Path) -> Result<Vec<u8>, QuicError> {
    std::fs::read(path).map_err(|source| QuicError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates in a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    certificates_in(&read(path)?, path)
}

/// The certificates in PEM text read from `path`.
fn certificates_in(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(QuicError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// ring, with the TLS record-layer keys (which QUIC never uses) expanded only if used.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(crate::record_keys::provider())
}

/// The transport limits of a shake session. `idle` closes a connection that heard
/// nothing for that long; each side sends a keep-alive after half of it without
/// sending anything, so a session whose frames (heartbeats included) are sparser than
/// that is not lost to the idle timer.
pub fn transport(idle: Duration) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(SEND_WINDOW)
        .crypto_buffer_size(CRYPTO_BUFFER)
        .datagram_receive_buffer_size(None)
        .mtu_discovery_config(None)
        // A session's frames are small: sending in batches (GSO) only makes each
        // connection keep a send buffer of several datagrams.
        .enable_segmentation_offload(false)
        .max_idle_timeout(IdleTimeout::try_from(idle).ok())
        .keep_alive_interval(Some(idle / 2));
    t
}

/// The gateway's server configuration from its identity file (key and certificate).
pub fn server_config(identity: &Path, idle: Duration) -> Result<ServerConfig, QuicError> {
    let pem = read(identity)?;
    let chain = certificates_in(&pem, identity)?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| QuicError::NoKey {
        path: identity.to_path_buf(),
    })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    // No session tickets: each would cost the gateway an encryption per handshake and
    // leave both sides' 1-RTT handshake buffers allocated for the connection's life
    // (a few hundred bytes each), for resumptions no client here makes.
    tls.send_tls13_tickets = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(idle)));
    Ok(config)
}

/// A client configuration that trusts exactly the certificates in `cert` (the
/// gateways' own, from the system's data directory).
pub fn client_config(cert: &Path, idle: Duration) -> Result<ClientConfig, QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(cert)? {
        roots.add(c).map_err(|e| QuicError::BadCertificate {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport(idle)));
    Ok(config)
}

/// The name a client checks the gateway's certificate against: its IP address (the
/// certificate `sut up` makes names every gateway address and `localhost`).
pub fn server_name(addr: &std::net::SocketAddr) -> String {
    addr.ip().to_string()
}
