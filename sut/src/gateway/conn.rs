//! A client connection as a session holds it: reading frames without waiting, within
//! the gateway-wide budget for unfinished frames and the frame and heartbeat deadlines,
//! and writing replies within the write timeout (see [`super::config::SessionLimits`]).

use super::link::Link;
use super::state::Gateway;
use crate::metrics::labels;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use sut_wire::protocol::{write_frame, CodecError, ErrorCode, Frame, FrameReader, ReadStatus};

/// Counts the session in while it runs, however it ends (by its transport).
pub(super) struct Connected<L: Link>(Arc<Gateway>, PhantomData<fn() -> L>);
impl<L: Link> Connected<L> {
    pub(super) fn new(gw: Arc<Gateway>) -> Self {
        gw.metrics.connections[L::TRANSPORT as usize].inc();
        gw.sessions.fetch_add(1, Ordering::AcqRel);
        Connected(gw, PhantomData)
    }
}
impl<L: Link> Drop for Connected<L> {
    fn drop(&mut self) {
        self.0.metrics.connections[L::TRANSPORT as usize].dec();
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection with no buffers of its own while idle (see [`FrameReader`]),
/// and what it holds of the gateway-wide budget for unfinished frames.
pub(super) struct Conn<L> {
    pub(super) link: L,
    reader: FrameReader,
    gw: Arc<Gateway>,
    /// Bytes of unfinished frames counted in `Gateway::partial_bytes`.
    held: usize,
    /// When this connection last started holding bytes of a frame it has not finished:
    /// the frame deadline counts from here.
    frame_started: Option<Instant>,
    /// When the last whole frame arrived: the heartbeat deadline counts from here.
    last_heard: Instant,
}

/// Why a connection stops being read: a frame that broke the stream, or a bound.
pub(super) enum Stop {
    Codec(CodecError),
    Limit(ErrorCode, &'static str),
}

impl Stop {
    /// The code to tell the client, when the connection still allows one.
    pub(super) fn code(&self) -> Option<(ErrorCode, String)> {
        match self {
            Stop::Codec(e) => e.code().map(|c| (c, e.to_string())),
            Stop::Limit(c, message) => Some((*c, message.to_string())),
        }
    }
}

/// What reading without waiting found.
pub(super) enum Next {
    Frame(Frame),
    Closed,
    /// Nothing complete yet: wait until the socket is readable.
    Wait,
}

impl<L: Link> Conn<L> {
    pub(super) fn new(gw: Arc<Gateway>, link: L) -> Conn<L> {
        Conn {
            link,
            reader: FrameReader::default(),
            gw,
            held: 0,
            frame_started: None,
            last_heard: Instant::now(),
        }
    }

    pub(super) fn try_next(&mut self) -> Result<Next, Stop> {
        let next = match self.link.next_frame(&mut self.reader) {
            Ok(ReadStatus::Frame(frame)) => Next::Frame(frame),
            Ok(ReadStatus::Closed) => Next::Closed,
            Err(e) => return Err(Stop::Codec(e)),
            Ok(ReadStatus::WouldBlock) => Next::Wait,
        };
        if matches!(next, Next::Frame(_)) {
            self.frame_started = None;
            self.last_heard = Instant::now();
        }
        self.account()?;
        Ok(next)
    }

    /// Counts what the reader holds of unfinished frames in the gateway's budget; past
    /// the budget, a connection whose holding just grew is refused.
    fn account(&mut self) -> Result<(), Stop> {
        let held = self.reader.buffered();
        if held > 0 && self.frame_started.is_none() {
            self.frame_started = Some(Instant::now());
        }
        if held == self.held {
            return Ok(());
        }
        let total = &self.gw.partial_bytes;
        if held > self.held {
            let grew = held - self.held;
            let before = total.fetch_add(grew, Ordering::AcqRel);
            self.held = held;
            if before + grew > self.gw.limits.partial_budget {
                self.gw.limit_hit("partial_budget");
                return Err(Stop::Limit(
                    ErrorCode::Overloaded,
                    "the gateway holds too many unfinished frames; reconnect later",
                ));
            }
        } else {
            total.fetch_sub(self.held - held, Ordering::AcqRel);
            self.held = held;
        }
        Ok(())
    }

    /// Until when the session may wait for the client now: for the rest of an unfinished
    /// frame, the frame deadline; otherwise the heartbeat timeout since the last frame.
    pub(super) fn deadline(&self) -> (Instant, ErrorCode) {
        match self.frame_started {
            Some(t) => (t + self.gw.limits.frame_timeout, ErrorCode::FrameTimeout),
            None => (
                self.last_heard + self.gw.heartbeat_timeout,
                ErrorCode::HeartbeatTimeout,
            ),
        }
    }

    /// Writes a reply; what the socket does not take at once gets the write timeout,
    /// and a client that does not read within it is closed.
    pub(super) async fn send(&mut self, frame: Frame) -> Result<(), CodecError> {
        let rest = self.write_now(frame)?;
        self.finish(rest).await
    }

    /// Writes what the socket takes of a reply now, and returns the rest. A reply that
    /// cannot be encoded goes out as an error in its place, never silently.
    pub(super) fn write_now(&mut self, frame: Frame) -> Result<Box<[u8]>, CodecError> {
        match write_frame(frame, |b| self.link.try_write(b)) {
            Err(CodecError::TooLarge) => {
                self.gw.limit_hit("reply_unencodable");
                let error = Frame::error(ErrorCode::Unavailable, "the reply could not be encoded");
                write_frame(error, |b| self.link.try_write(b))
            }
            other => other,
        }
    }

    /// Writes the rest of a reply within the write timeout.
    pub(super) async fn finish(&mut self, rest: Box<[u8]>) -> Result<(), CodecError> {
        if rest.is_empty() {
            return Ok(());
        }
        let timeout = self.gw.limits.write_timeout;
        match tokio::time::timeout(timeout, self.link.write_all(&rest)).await {
            Ok(written) => Ok(written?),
            Err(_) => {
                self.gw.limit_hit("write_timeout");
                Err(CodecError::Io(std::io::ErrorKind::TimedOut.into()))
            }
        }
    }
}

impl<L> Drop for Conn<L> {
    fn drop(&mut self) {
        self.gw.partial_bytes.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Tells the client why its connection ends (as far as the socket takes it).
pub(super) async fn refuse<L: Link>(
    gw: &Gateway,
    conn: &mut Conn<L>,
    code: ErrorCode,
    message: String,
) {
    gw.error(code);
    let _ = conn.send(Frame::error(code, message)).await;
}

/// Turns a connection away because the gateway is at its connection limit: the client
/// falls back to another gateway, as the seed's clients fall back to another cluster.
pub(super) async fn refuse_full<L: Link>(gw: Arc<Gateway>, link: L) {
    gw.metrics
        .sessions
        .get_or_create(&labels(&[("result", "full")]))
        .inc();
    let mut conn = Conn::new(gw.clone(), link);
    let msg = "this gateway is full; connect to another".to_string();
    refuse(&gw, &mut conn, ErrorCode::GatewayFull, msg).await;
    conn.link.close(gw.limits.write_timeout).await;
}
