//! The gateway's QUIC side: an endpoint on the UDP port of the same number as its TCP
//! listener. Each connection's one bidirectional stream carries a session exactly as a
//! TCP connection does ([`super::session`] over [`stream::QuicLink`]).
//!
//! One task drives the endpoint: it reads the socket, runs the timers and sends what the
//! connections have to send, all of them in one [`table::Table`] (quinn-proto, which does
//! no I/O of its own). A connection has no task or channel of its own; its session wakes
//! this task when it gives the connection something to send.
//!
//! What a connection may cost before it has a session is bounded too: the handshake and
//! the client's stream must come within the hello deadline, or the attempt is closed
//! and counted (`limit="quic_handshake"`).

mod stream;
mod table;

use super::state::Gateway;
use crate::listen::ListenError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use stream::QuicLink;
use table::Table;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};

/// The UDP socket's kernel buffers: many connections share it, so a burst of
/// handshakes is not dropped before the endpoint reads it.
const SOCKET_BUFFER: usize = 8 << 20;
/// Datagrams read in one turn of the endpoint task before the sessions get theirs.
const BATCH: usize = 256;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 64 * 1024;

/// What the endpoint task and the sessions share.
pub(super) struct Shared {
    table: Mutex<Table>,
    /// Wakes the endpoint task: a session gave a connection something to send.
    wake: Notify,
}

/// A bound endpoint, not yet driven.
pub(super) struct Bound {
    socket: UdpSocket,
    /// The same socket, for sending without waiting on the runtime's readiness.
    sender: std::net::UdpSocket,
    shared: Arc<Shared>,
}

/// An endpoint on `addr` (UDP) serving the identity in `identity`; a connection must
/// open its stream within `hello_timeout`.
pub(super) fn bind(
    addr: SocketAddr,
    identity: &Path,
    idle: Duration,
    hello_timeout: Duration,
) -> Result<Bound, ListenError> {
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
    socket.set_nonblocking(true).map_err(failed)?;
    let sender = socket.try_clone().map_err(failed)?;
    let socket = UdpSocket::from_std(socket).map_err(failed)?;
    Ok(Bound {
        socket,
        sender,
        shared: Arc::new(Shared {
            table: Mutex::new(Table::new(config, hello_timeout)),
            wake: Notify::new(),
        }),
    })
}

/// Drives the endpoint: each connection becomes a session (or a refusal when the
/// gateway is full) once its handshake is done and its client opened its stream. At
/// `shutdown`, new connections are refused; the task ends once every connection is gone,
/// or `linger` later, when the rest are closed.
pub(super) async fn run(
    gw: Arc<Gateway>,
    bound: Bound,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    linger: Duration,
) {
    let Bound {
        socket,
        sender,
        shared,
    } = bound;
    let mut recv_buf = vec![0u8; MAX_DATAGRAM];
    // A datagram the socket does not take now (its queue full) is lost like any other:
    // QUIC sends its contents again.
    let mut send = |datagram: &[u8], to: SocketAddr| {
        let _ = sender.send_to(datagram, to);
    };
    let mut stop_at: Option<Instant> = None;
    // The shutdown signal's sender is gone: that stops the gateway as well.
    let mut orphaned = false;
    let mut more = false;
    loop {
        if more {
            tokio::task::yield_now().await;
        } else {
            let next = lock(&shared).next_timer();
            // Each branch only wakes the task; what it found is looked at below, so
            // that a flood of datagrams (which skips this wait) cannot hold a stop off.
            tokio::select! {
                _ = socket.readable() => {}
                _ = shared.wake.notified() => {}
                _ = sleep_until(next) => {}
                changed = shutdown.changed(), if stop_at.is_none() => orphaned = changed.is_err(),
                _ = sleep_until(stop_at) => {}
            }
        }
        if stop_at.is_none() && (orphaned || *shutdown.borrow()) {
            stop_at = Some(Instant::now() + linger);
            lock(&shared).stop_accepting();
        }
        if stop_at.is_some_and(|at| Instant::now() >= at) {
            let mut table = lock(&shared);
            table.close_all(Instant::now());
            table.flush(Instant::now(), &mut send);
            break;
        }
        let now = Instant::now();
        let (opened, failed) = {
            let mut table = lock(&shared);
            more = read_batch(&mut table, &socket, &mut recv_buf, now, &mut send);
            table.on_timers(now);
            table.flush(now, &mut send);
            if stop_at.is_some() && table.len() == 0 {
                break;
            }
            (
                std::mem::take(&mut table.opened),
                std::mem::take(&mut table.failed),
            )
        };
        for _ in 0..failed {
            gw.limit_hit("quic_handshake");
        }
        start_sessions(&gw, &shared, opened, max_connections);
    }
}

/// Reads up to a batch of datagrams into the table. True when the batch was full: the
/// rest wait for the next turn, after the sessions have had theirs.
fn read_batch(
    table: &mut Table,
    socket: &UdpSocket,
    buf: &mut [u8],
    now: Instant,
    send: &mut impl FnMut(&[u8], SocketAddr),
) -> bool {
    for _ in 0..BATCH {
        match socket.try_recv_from(buf) {
            Ok((n, from)) => table.receive(now, from, &buf[..n], send),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            // An ICMP error for an earlier datagram, say: the next read goes on.
            Err(_) => continue,
        }
    }
    true
}

/// A session (or a refusal, when the gateway is full) for each connection whose client
/// opened its stream.
fn start_sessions(
    gw: &Arc<Gateway>,
    shared: &Arc<Shared>,
    opened: Vec<table::Opened>,
    max_connections: usize,
) {
    for o in opened {
        let link = QuicLink::new(shared.clone(), o.h, o.born);
        super::start_session(gw, link, max_connections);
    }
}

/// The endpoint's table, for the task or a session.
fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Table> {
    shared.table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
