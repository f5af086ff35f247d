//! The gateway's QUIC side: an endpoint on the UDP port of the same number as its TCP
//! listener. Each connection's one bidirectional stream carries a session exactly as a
//! TCP connection does ([`super::session`] over [`super::link::QuicLink`]).
//!
//! What a connection may cost before it has a session is bounded too: the handshake and
//! the client's stream must come within the hello deadline, or the attempt is dropped
//! and counted (`limit="quic_handshake"`).

use super::link::QuicLink;
use super::session;
use super::state::Gateway;
use crate::listen::ListenError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The UDP socket's kernel buffers: many connections share it, so a burst of
/// handshakes is not dropped before the endpoint reads it.
const SOCKET_BUFFER: usize = 8 << 20;

/// An endpoint on `addr` (UDP) serving the identity in `identity`.
pub(super) fn bind(
    addr: SocketAddr,
    identity: &Path,
    idle: Duration,
) -> Result<quinn::Endpoint, ListenError> {
    let failed = |source: std::io::Error| ListenError {
        addr: format!("{addr} (udp, QUIC)"),
        source,
    };
    let config = shellkit::quic::server_config(identity, idle)
        .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    let socket = std::net::UdpSocket::bind(addr).map_err(failed)?;
    use nix::sys::socket::{setsockopt, sockopt};
    // Best effort: the kernel caps both at its own maximum.
    let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(Default::default(), Some(config), socket, runtime).map_err(failed)
}

/// Accepts QUIC connections until `shutdown`; each becomes a session (or a refusal when
/// the gateway is full) once its handshake is done and its client opened its stream.
pub(super) async fn accept(
    gw: Arc<Gateway>,
    endpoint: quinn::Endpoint,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        tokio::spawn(open(gw.clone(), incoming, max_connections));
    }
}

/// One connection's handshake and stream, within the hello deadline, then its session.
async fn open(gw: Arc<Gateway>, incoming: quinn::Incoming, max_connections: usize) {
    let opened = tokio::time::timeout(gw.limits.hello_timeout, async {
        let conn = incoming.await?;
        let (send, recv) = conn.accept_bi().await?;
        Ok::<_, quinn::ConnectionError>((conn, send, recv))
    })
    .await;
    let Ok(Ok((conn, send, recv))) = opened else {
        gw.limit_hit("quic_handshake");
        return;
    };
    let link = QuicLink::new(conn, send, recv);
    if gw.sessions.load(Ordering::Acquire) >= max_connections {
        session::refuse_full(gw, link).await;
    } else {
        session::serve(gw, link).await;
    }
}

/// Lets the sessions' last frames (refusals at shutdown) reach their clients, within
/// `within`.
pub(super) async fn close(endpoint: quinn::Endpoint, within: Duration) {
    if endpoint.open_connections() > 0 {
        let _ = tokio::time::timeout(within, endpoint.wait_idle()).await;
    }
    endpoint.close(0u32.into(), b"gateway stopped");
}
