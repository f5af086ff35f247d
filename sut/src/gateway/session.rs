//! One client's long connection: hello, then shakes, opens and heartbeats in order.

use super::state::Gateway;
use super::store::{GatewayOp, GatewayResult};
use crate::metrics::labels;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use sut_core::passthrough::OpenEntry;
use sut_core::shake::Reason;
use sut_wire::protocol::{CodecError, ErrorCode, Frame, FrameReader, ReadStatus};
use sut_wire::token::{EnvelopeToken, TokenError};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Counts the session in while it runs, however it ends.
struct Connected(Arc<Gateway>);
impl Connected {
    fn new(gw: Arc<Gateway>) -> Self {
        gw.metrics.connections.inc();
        gw.sessions.fetch_add(1, Ordering::AcqRel);
        Connected(gw)
    }
}
impl Drop for Connected {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection with no buffers of its own while idle (see [`FrameReader`]).
struct Conn {
    stream: TcpStream,
    reader: FrameReader,
}

/// What reading without waiting found.
enum Next {
    Frame(Frame),
    Closed,
    /// Nothing complete yet: wait until the socket is readable.
    Wait,
}

impl Conn {
    fn try_next(&mut self) -> Result<Next, CodecError> {
        let Conn { stream, reader } = self;
        let mut found = None;
        // Through `try_io` so that when the reader knows the socket is empty (its last
        // read came up short) the runtime forgets the readiness without one more read.
        let tried = stream.try_io(Interest::READABLE, || {
            match reader.next_frame(|buf| stream.try_read(buf)) {
                Ok(ReadStatus::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
                other => {
                    found = Some(other);
                    Ok(())
                }
            }
        });
        match (found, tried) {
            (Some(Ok(ReadStatus::Frame(frame))), _) => Ok(Next::Frame(frame)),
            (Some(Ok(ReadStatus::Closed)), _) => Ok(Next::Closed),
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(ReadStatus::WouldBlock)), _) | (None, _) => Ok(Next::Wait),
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), CodecError> {
        let rest = sut_wire::protocol::write_frame(frame, |b| self.stream.try_write(b))?;
        if !rest.is_empty() {
            self.stream.write_all(&rest).await?;
        }
        Ok(())
    }
}

async fn refuse(gw: &Gateway, conn: &mut Conn, code: ErrorCode, message: String) {
    gw.error(code);
    let _ = conn.send(Frame::error(code, message)).await;
}

/// Turns a connection away because the gateway is at its connection limit: the client
/// falls back to another gateway, as the seed's clients fall back to another cluster.
pub(super) async fn refuse_full(gw: Arc<Gateway>, stream: TcpStream) {
    gw.metrics
        .sessions
        .get_or_create(&labels(&[("result", "full")]))
        .inc();
    let mut conn = Conn {
        stream,
        reader: FrameReader::default(),
    };
    let msg = "this gateway is full; connect to another".to_string();
    refuse(&gw, &mut conn, ErrorCode::GatewayFull, msg).await;
}

/// One session, start to end.
///
/// An idle session is what a gateway holds a million of, so its task is kept small:
/// while idle it waits only for readability (with the heartbeat timeout and the
/// shutdown signal); frames are then read without waiting, and every rarer or larger
/// step (the hello, a shake, an open, a reply, a refusal) runs as a boxed future whose
/// state exists only while it runs.
pub(super) async fn serve(gw: Arc<Gateway>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _guard = Connected::new(gw.clone());
    let mut conn = Conn {
        stream,
        reader: FrameReader::default(),
    };
    let Some(user) = Box::pin(hello(&gw, &mut conn)).await else {
        return;
    };
    let mut shutdown = gw.shutdown.clone();
    // When this client's last shake got a decision: at a raised tier, one that comes
    // sooner than the tier's interval is answered "come back later" without any work.
    let mut last_decided: Option<std::time::Instant> = None;
    loop {
        let frame = match conn.try_next() {
            Ok(Next::Frame(frame)) => frame,
            Ok(Next::Closed) => return,
            Err(e) => {
                // A malformed or oversized frame leaves the stream unsynchronised: close.
                if let Some(code) = e.code() {
                    Box::pin(refuse(&gw, &mut conn, code, e.to_string())).await;
                }
                return;
            }
            Ok(Next::Wait) => {
                let idle = tokio::select! {
                    ready = tokio::time::timeout(gw.heartbeat_timeout, conn.stream.readable()) => Some(ready),
                    _ = async { let _ = shutdown.wait_for(|s| *s).await; } => None,
                };
                let Some(idle) = idle else {
                    let msg = "gateway shutting down; reconnect".to_string();
                    Box::pin(refuse(&gw, &mut conn, ErrorCode::ShuttingDown, msg)).await;
                    return;
                };
                match idle {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        let msg = format!("silent for {:?}", gw.heartbeat_timeout);
                        let code = ErrorCode::HeartbeatTimeout;
                        Box::pin(refuse(&gw, &mut conn, code, msg)).await;
                        return;
                    }
                }
            }
        };
        gw.frames.fetch_add(1, Ordering::Relaxed);
        let reply = match frame {
            Frame::Heartbeat => {
                gw.metrics.heartbeats.inc();
                Frame::HeartbeatAck {
                    server_time_ms: shellkit::clock::unix_ms().max(0) as u64,
                }
            }
            Frame::Shake { cookie } => Box::pin(shake(&gw, user, cookie, &mut last_decided)).await,
            Frame::Open { token } => Box::pin(open(&gw, user, token)).await,
            Frame::Share { token, friends } => {
                Box::pin(super::split::share(&gw, user, token, friends)).await
            }
            Frame::Grab { share_id } => Box::pin(super::split::grab(&gw, user, share_id)).await,
            other => {
                let msg = format!("frame type 0x{:02x} is not a request", other.type_byte());
                Box::pin(refuse(&gw, &mut conn, ErrorCode::Unexpected, msg)).await;
                return;
            }
        };
        if Box::pin(conn.send(reply)).await.is_err() {
            return;
        }
    }
}

/// Reads the Hello (within the heartbeat timeout) and checks it; the user id, or `None`
/// after refusing the connection.
async fn hello(gw: &Gateway, conn: &mut Conn) -> Option<u64> {
    let first = tokio::time::timeout(gw.heartbeat_timeout, async {
        loop {
            match conn.try_next()? {
                Next::Frame(frame) => return Ok(Some(frame)),
                Next::Closed => return Ok(None),
                Next::Wait => conn.stream.readable().await?,
            }
        }
    })
    .await;
    let user = match first {
        Ok(Ok(Some(Frame::Hello {
            user_id,
            auth_token,
        }))) => {
            if !gw.auth.verify(b"auth", &user_id.to_be_bytes(), &auth_token) {
                let msg = format!("auth token does not match user {user_id}");
                refuse(gw, conn, ErrorCode::AuthFailed, msg).await;
                return None;
            }
            user_id
        }
        Ok(Ok(Some(other))) => {
            let msg = format!(
                "first frame must be Hello, got type 0x{:02x}",
                other.type_byte()
            );
            refuse(gw, conn, ErrorCode::NotHelloFirst, msg).await;
            return None;
        }
        Ok(Err(e)) => {
            let e: CodecError = e;
            if let Some(code) = e.code() {
                refuse(gw, conn, code, e.to_string()).await;
            }
            return None;
        }
        Ok(Ok(None)) => return None,
        Err(_) => {
            let msg = "no Hello within the heartbeat timeout".to_string();
            refuse(gw, conn, ErrorCode::HeartbeatTimeout, msg).await;
            return None;
        }
    };
    gw.metrics
        .sessions
        .get_or_create(&labels(&[("result", "accepted")]))
        .inc();
    let throttle = gw.throttle();
    let (tier, shake_interval_ms) = (throttle.tier, throttle.shake_interval_ms);
    let ack = Frame::HelloAck {
        server_time_ms: shellkit::clock::unix_ms().max(0) as u64,
        tier,
        shake_interval_ms,
        config_version: gw.config_version,
    };
    conn.send(ack).await.ok()?;
    Some(user)
}

/// Decides one shake, unless the gateway's throttle sheds it
/// ([`sut_core::shedding`]): then it is answered "come back later" without any work.
async fn shake(
    gw: &Gateway,
    user: u64,
    cookie: Bytes,
    last_decided: &mut Option<std::time::Instant>,
) -> Frame {
    let throttle = gw.throttle();
    let (tier, shake_interval_ms) = (throttle.tier, throttle.shake_interval_ms);
    let since_decided = last_decided.map(|t| t.elapsed());
    if throttle.shed(user, gw.show_ms(), since_decided).is_some() {
        // No decision, no lock, no write.
        gw.metrics.throttled.inc();
        return Frame::ShakeReply {
            outcome: sut_wire::protocol::Outcome::ComeBackLater,
            tier,
            shake_interval_ms,
            cookie,
        };
    }
    *last_decided = Some(std::time::Instant::now());
    if !gw.shake_cost.is_zero() {
        let start = std::time::Instant::now();
        while start.elapsed() < gw.shake_cost {
            std::hint::spin_loop();
        }
    }
    let decided = gw
        .core
        .lock()
        .map(|mut core| core.shake(gw.show_ms(), user, &cookie))
        .map_err(|_| ());
    let decision = match decided {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            gw.error(ErrorCode::CookieInvalid);
            return Frame::error(ErrorCode::CookieInvalid, e.to_string());
        }
        Err(_) => {
            gw.error(ErrorCode::Unavailable);
            return Frame::error(ErrorCode::Unavailable, "gateway state poisoned");
        }
    };
    if let Some(record) = decision.issued {
        // The issue record is durable before the envelope leaves: the audit can see
        // every envelope any user holds.
        if gw.committer.submit(GatewayOp::Issue(record)).await.is_err() {
            gw.error(ErrorCode::Unavailable);
            return Frame::error(
                ErrorCode::Unavailable,
                "could not record the issue; shake again",
            );
        }
        if let Some(c) = gw.metrics.issued_by_round.get(&record.round) {
            c.inc();
        }
        if let Ok(mut p) = gw.to_publish.lock() {
            p.push(record.issued());
        }
    }
    if let Some(i) = Reason::ALL.iter().position(|r| *r == decision.reason) {
        gw.metrics.shakes_by_reason[i].inc();
    }
    Frame::ShakeReply {
        outcome: decision.outcome,
        tier,
        shake_interval_ms,
        cookie: decision.cookie,
    }
}

async fn open(gw: &Gateway, user: u64, token: Bytes) -> Frame {
    let refused = |code: ErrorCode| {
        gw.metrics
            .opens
            .get_or_create(&labels(&[("result", code.name())]))
            .inc();
        Frame::OpenReply {
            code: code as u16,
            amount_cents: 0,
        }
    };
    let token = match EnvelopeToken::open(&token, user, &gw.key) {
        Ok(t) => t,
        Err(TokenError::Forged) => return refused(ErrorCode::TokenForged),
        Err(TokenError::NotYours) => return refused(ErrorCode::TokenNotYours),
    };
    match enqueue_open(gw, token).await {
        Ok(()) => Frame::OpenReply {
            code: 0,
            amount_cents: token.amount_cents,
        },
        Err(code) => refused(code),
    }
}

/// The agent's part of an open whose token checked out: durable in the pass-through
/// queue first, then handed to the forwarder. Only after this may the user be told.
pub(super) async fn enqueue_open(gw: &Gateway, token: EnvelopeToken) -> Result<(), ErrorCode> {
    let entry = OpenEntry {
        token,
        opened_ms: gw.show_ms(),
    };
    match gw.committer.submit(GatewayOp::Open(entry)).await {
        Ok(GatewayResult::Queued { seq }) => {
            if let Ok(mut q) = gw.queue.lock() {
                q.push(seq, entry);
                gw.metrics.queue_depth.set(q.depth() as i64);
            }
            gw.queue_notify.notify_one();
            gw.metrics.opens_ok.inc();
            Ok(())
        }
        Ok(_) => Err(ErrorCode::AlreadyOpened),
        Err(_) => Err(ErrorCode::Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_output<F>(_: &dyn Fn() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A gateway holds ~19,000 idle sessions; the budget is 2 KiB per connection with
    /// the task header, the socket's registration and allocator overhead on top of this.
    #[test]
    #[allow(unreachable_code)]
    fn an_idle_session_fits_its_memory_budget() {
        let size = size_of_output(&|| serve(unreachable!(), unreachable!()));
        assert!(size <= 1024, "the session future grew to {size} bytes");
    }
}
