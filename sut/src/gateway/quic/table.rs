//! The gateway's QUIC connections without their socket: one quinn-proto endpoint (which
//! does no I/O of its own) and, per connection, its state, its timer and the wakers of the
//! session reading and writing its stream. The endpoint task ([`super`]) feeds it the
//! datagrams and the clock and sends what it hands back; sessions reach it through
//! [`super::stream`].
//!
//! A connection costs quinn-proto's state and one small entry here: no task, no channel
//! and no send buffer of its own.

use bytes::{Bytes, BytesMut};
use quinn_proto::{
    DatagramEvent, Dir, Endpoint, EndpointConfig, Event, ServerConfig, StreamEvent, StreamId,
    VarInt,
};
use shellkit::quic_drive::{
    earliest, exchange_events, read_stream, take_touched, write_stream, Timers,
};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Handshaking, or waiting for the client's stream, within the hello deadline.
    Opening,
    /// A session holds its stream.
    Session,
    /// Closed by us (the session ended, the deadline passed) or by the peer; draining.
    Released,
}

struct Entry {
    conn: quinn_proto::Connection,
    phase: Phase,
    stream: Option<StreamId>,
    /// The timer armed in the heap for this connection; heap entries for other times
    /// are stale.
    timer: Option<Instant>,
    /// When it was made, in the table's count of connections: the endpoint reuses a
    /// handle once its connection drains, and a session must not reach the next one.
    born: u64,
    /// The connection is lost: reads and writes fail.
    lost: bool,
    /// The stream's end, once finished, was acknowledged.
    acked: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// A connection whose client opened its stream: a session is to start on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opened {
    pub h: usize,
    pub born: u64,
}

/// The endpoint and its connections.
pub(super) struct Table {
    endpoint: Endpoint,
    /// Connections by handle (the endpoint's slab index), boxed: a connection's state
    /// is ~6 KB, and the vector's spare capacity should not cost that much per slot.
    conns: Vec<Option<Box<Entry>>>,
    timers: Timers,
    /// Hello deadlines in the order they were set (all are the same length after).
    deadlines: VecDeque<(Instant, usize, u64)>,
    hello_timeout: Duration,
    /// Connections with something new to send or report.
    touched: Vec<usize>,
    /// A connection was touched since the endpoint task last ran: it must be woken.
    wake: bool,
    /// Sessions to start.
    pub opened: Vec<Opened>,
    /// Connections that never became a session (handshake failed or too slow), not yet
    /// counted in the metrics.
    pub failed: u64,
    /// No new connections: the gateway is stopping.
    closing: bool,
    made: u64,
    buf: Vec<u8>,
}

impl Table {
    /// An endpoint serving `server`, giving each connection `hello_timeout` to finish its
    /// handshake and open its stream.
    pub(super) fn new(server: ServerConfig, hello_timeout: Duration) -> Table {
        let endpoint = Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::new(server)),
            false,
            None,
        );
        Table {
            endpoint,
            conns: Vec::new(),
            timers: Timers::default(),
            deadlines: VecDeque::new(),
            hello_timeout,
            touched: Vec::new(),
            wake: false,
            opened: Vec::new(),
            failed: 0,
            closing: false,
            made: 0,
            buf: Vec::with_capacity(1500),
        }
    }

    /// Connections held, sessions or not.
    pub(super) fn len(&self) -> usize {
        self.endpoint.open_connections()
    }

    fn entry(&mut self, h: usize) -> Option<&mut Entry> {
        self.conns.get_mut(h).and_then(Option::as_deref_mut)
    }

    /// A session's connection, while it is not lost.
    fn live(&mut self, h: usize, born: u64) -> io::Result<&mut Entry> {
        match self.entry(h) {
            Some(e) if e.born == born && !e.lost => Ok(e),
            _ => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }

    fn touch(&mut self, h: usize) {
        self.wake |= self.touched.is_empty();
        self.touched.push(h);
    }

    /// Whether the endpoint task must be woken for what sessions did since it last ran.
    pub(super) fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// A datagram from `from`: to its connection, or a new connection; `send` takes what
    /// is answered at once.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        send: &mut impl FnMut(&[u8], SocketAddr),
    ) {
        self.buf.clear();
        let data = BytesMut::from(datagram);
        match self
            .endpoint
            .handle(now, from, None, None, data, &mut self.buf)
        {
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(e) = self.entry(ch.0) {
                    e.conn.handle_event(event);
                    self.touched.push(ch.0);
                }
            }
            Some(DatagramEvent::Response(t)) => send(&self.buf[..t.size], t.destination),
            Some(DatagramEvent::NewConnection(incoming)) => self.accept(incoming, now, send),
            None => {}
        }
    }

    fn accept(
        &mut self,
        incoming: quinn_proto::Incoming,
        now: Instant,
        send: &mut impl FnMut(&[u8], SocketAddr),
    ) {
        self.buf.clear();
        if self.closing {
            let t = self.endpoint.refuse(incoming, &mut self.buf);
            return send(&self.buf[..t.size], t.destination);
        }
        match self.endpoint.accept(incoming, now, &mut self.buf, None) {
            Ok((ch, conn)) => {
                let h = ch.0;
                if self.conns.len() <= h {
                    self.conns.resize_with(h + 1, || None);
                }
                self.made += 1;
                self.conns[h] = Some(Box::new(Entry {
                    conn,
                    phase: Phase::Opening,
                    stream: None,
                    timer: None,
                    born: self.made,
                    lost: false,
                    acked: false,
                    reader: None,
                    writer: None,
                }));
                self.deadlines
                    .push_back((now + self.hello_timeout, h, self.made));
                self.touched.push(h);
            }
            Err(e) => {
                self.failed += 1;
                if let Some(t) = e.response {
                    send(&self.buf[..t.size], t.destination);
                }
            }
        }
    }

    /// Runs the connection timers that are due, and closes the connections whose hello
    /// deadline passed without a session.
    pub(super) fn on_timers(&mut self, now: Instant) {
        while let Some(h) = self.timers.due(now, |h| armed(&self.conns, h)) {
            if let Some(e) = self.entry(h) {
                e.timer = None;
                e.conn.handle_timeout(now);
                self.touched.push(h);
            }
        }
        while let Some(&(at, h, born)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(e) = self.entry(h).filter(|e| e.born == born) else {
                continue;
            };
            if e.phase == Phase::Opening {
                e.phase = Phase::Released;
                e.conn
                    .close(now, VarInt::from_u32(0), Bytes::from_static(b"too slow"));
                self.failed += 1;
                self.touched.push(h);
            }
        }
    }

    /// When the endpoint task should next run the timers.
    pub(super) fn next_timer(&mut self) -> Option<Instant> {
        let deadline = self.deadlines.front().map(|d| d.0);
        earliest(self.timers.next(|h| armed(&self.conns, h)), deadline)
    }

    /// Sends what the touched connections have to send, hands their endpoint events
    /// over, wakes their sessions or queues new ones in `opened`, and re-arms their
    /// timers. Connections that finished draining are forgotten.
    pub(super) fn flush(&mut self, now: Instant, send: &mut impl FnMut(&[u8], SocketAddr)) {
        self.wake = false;
        for h in take_touched(&mut self.touched) {
            self.drive(h, now, send);
        }
    }

    fn drive(&mut self, h: usize, now: Instant, send: &mut impl FnMut(&[u8], SocketAddr)) {
        let Some(mut e) = self.conns.get_mut(h).and_then(Option::take) else {
            return;
        };
        let drained = exchange_events(&mut self.endpoint, h, &mut e.conn);
        while let Some(ev) = e.conn.poll() {
            self.on_event(h, &mut e, ev);
        }
        loop {
            self.buf.clear();
            let Some(t) = e.conn.poll_transmit(now, 1, &mut self.buf) else {
                break;
            };
            send(&self.buf[..t.size], t.destination);
        }
        if drained {
            if e.phase == Phase::Opening {
                self.failed += 1;
            }
            wake(&mut e.reader);
            wake(&mut e.writer);
            return;
        }
        let timer = e.conn.poll_timeout();
        self.timers.rearm(h, &mut e.timer, timer);
        self.conns[h] = Some(e);
    }

    fn on_event(&mut self, h: usize, e: &mut Entry, ev: Event) {
        match ev {
            Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) if e.phase == Phase::Opening => {
                e.stream = e.conn.streams().accept(Dir::Bi);
                if e.stream.is_some() {
                    e.phase = Phase::Session;
                    self.opened.push(Opened { h, born: e.born });
                }
            }
            Event::ConnectionLost { .. } => {
                e.lost = true;
                if e.phase == Phase::Opening {
                    self.failed += 1;
                    e.phase = Phase::Released;
                }
                wake(&mut e.reader);
                wake(&mut e.writer);
            }
            Event::Stream(StreamEvent::Readable { .. }) => wake(&mut e.reader),
            Event::Stream(StreamEvent::Writable { .. } | StreamEvent::Stopped { .. }) => {
                wake(&mut e.writer)
            }
            Event::Stream(StreamEvent::Finished { .. }) => {
                e.acked = true;
                wake(&mut e.writer);
            }
            _ => {}
        }
    }

    /// Reads up to `max` bytes of a session's stream: `None` at its end, `WouldBlock`
    /// when nothing is there (then `waker`, if given, is woken when something is).
    pub(super) fn read(
        &mut self,
        h: usize,
        born: u64,
        max: usize,
        waker: Option<&Waker>,
    ) -> io::Result<Option<Bytes>> {
        let e = self.live(h, born)?;
        let id = e.stream.ok_or(io::ErrorKind::NotConnected)?;
        // Reading may open the peer's window: that goes out on the next flush.
        let (got, transmit) = read_stream(&mut e.conn, id, max);
        if let (Some(w), Err(err)) = (waker, &got) {
            if err.kind() == io::ErrorKind::WouldBlock {
                register(&mut e.reader, w);
            }
        }
        if transmit {
            self.touch(h);
        }
        got
    }

    /// Writes what the stream takes now; `WouldBlock` when it takes nothing (then
    /// `waker`, if given, is woken when it may).
    pub(super) fn write(
        &mut self,
        h: usize,
        born: u64,
        buf: &[u8],
        waker: Option<&Waker>,
    ) -> io::Result<usize> {
        let e = self.live(h, born)?;
        let id = e.stream.ok_or(io::ErrorKind::NotConnected)?;
        let wrote = write_stream(&mut e.conn, id, buf);
        match &wrote {
            Ok(_) => self.touch(h),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if let Some(w) = waker {
                    register(&mut e.writer, w);
                }
            }
            Err(_) => {}
        }
        wrote
    }

    /// Finishes the session's side of the stream: true when its end is on its way.
    pub(super) fn finish(&mut self, h: usize, born: u64) -> bool {
        let Ok(e) = self.live(h, born) else {
            return false;
        };
        let Some(id) = e.stream else { return false };
        let finished = e.conn.send_stream(id).finish().is_ok();
        if finished {
            self.touch(h);
        }
        finished
    }

    /// Whether the finished stream was acknowledged (or the connection is gone); if not,
    /// `waker` is woken when that changes.
    pub(super) fn finished(&mut self, h: usize, born: u64, waker: &Waker) -> bool {
        match self.live(h, born) {
            Ok(e) if !e.acked => {
                register(&mut e.writer, waker);
                false
            }
            _ => true,
        }
    }

    /// The session let go of its connection: it is closed, and drains on its own.
    pub(super) fn release(&mut self, h: usize, born: u64, now: Instant) {
        let Some(e) = self.entry(h).filter(|e| e.born == born) else {
            return;
        };
        e.phase = Phase::Released;
        e.reader = None;
        e.writer = None;
        if !e.conn.is_closed() {
            e.conn.close(now, VarInt::from_u32(0), Bytes::new());
        }
        self.touch(h);
    }

    /// The gateway stops: new connections are refused from now on.
    pub(super) fn stop_accepting(&mut self) {
        self.closing = true;
    }

    /// Closes every connection (their sessions' reads and writes fail from now on).
    pub(super) fn close_all(&mut self, now: Instant) {
        for h in 0..self.conns.len() {
            let Some(e) = self.entry(h) else { continue };
            e.lost = true;
            e.conn.close(
                now,
                VarInt::from_u32(0),
                Bytes::from_static(b"gateway stopped"),
            );
            wake(&mut e.reader);
            wake(&mut e.writer);
            self.touched.push(h);
        }
    }
}

/// When connection `h`'s timer is armed, if it is.
fn armed(conns: &[Option<Box<Entry>>], h: usize) -> Option<Instant> {
    conns.get(h).and_then(Option::as_ref).and_then(|e| e.timer)
}

fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
