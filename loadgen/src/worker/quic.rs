//! The worker's QUIC connections: one UDP socket and one QUIC endpoint (quinn-proto,
//! which does no I/O of its own) for all of them, driven by the worker's event loop.
//!
//! So a worker's QUIC users cost no file descriptor each: the open-file limit does not
//! bound them. Each connection carries one bidirectional stream, the session's frames,
//! read and written by the client exactly as its TCP socket would be
//! ([`Quic::read`], [`Quic::write`]); what happens underneath (handshakes, losses,
//! acknowledgements, timers) comes back to the clients as [`QuicEvent`]s.
//!
//! Weak networks are emulated here, on the datagrams themselves: a connection whose
//! user is on one of the profile's conditions ([`crate::network`]) has each datagram
//! it sends and receives lost or held until its delivery time; a network change sends
//! its datagrams from a second socket (another port) from then on, which the gateway
//! sees as the client's address changing: the connection migrates.

use crate::network::{Link, Network};
use bytes::{Bytes, BytesMut};
use mio::net::UdpSocket;
use quinn_proto::ConnectionEvent;
use quinn_proto::{
    ClientConfig, Connection, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, StreamEvent,
    StreamId, VarInt,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use shellkit::quic_drive::{
    earliest, exchange_events, read_stream, take_touched, write_stream, Timers,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a connection's client learns from the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicEvent {
    /// The handshake is done and the session's stream is open: send the Hello.
    Connected,
    /// The stream has bytes (or its end) to read.
    Readable,
    /// The stream takes bytes again.
    Writable,
    /// The connection is gone; the reason, as counted in errors.
    Lost(&'static str),
}

struct Entry {
    conn: Connection,
    /// The client's slot; `None` once the client let go of it (closing, draining).
    slot: Option<u32>,
    stream: Option<StreamId>,
    /// The timer armed in the heap for this connection; heap entries for other times
    /// are stale.
    timer: Option<Instant>,
    /// The network condition its user is on (index into the profile's), and its link
    /// each way.
    condition: Option<u16>,
    up: Link,
    down: Link,
    /// Its network changed: it sends from the second socket.
    moved: bool,
    /// When it was made, in the endpoint's count of connections: a handle is reused
    /// once a connection drains, and datagrams held for the old one must not reach it.
    born: u64,
}

/// A datagram on its way through an emulated link.
enum Carried {
    /// To the gateway, from the first or (after a network change) second socket.
    Out {
        datagram: Vec<u8>,
        to: SocketAddr,
        moved: bool,
    },
    /// From the gateway, to its connection.
    /// `born` tells this connection from a later one the endpoint gives the same handle.
    In {
        h: usize,
        born: u64,
        event: ConnectionEvent,
    },
}

/// Datagrams held by emulated links, by delivery time (then order of arrival).
struct InFlight {
    at: Instant,
    seq: u64,
    carried: Carried,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A worker's QUIC endpoint and its connections.
pub struct Quic {
    socket: UdpSocket,
    endpoint: Endpoint,
    config: ClientConfig,
    /// Connections by handle (the endpoint's slab index), boxed: a connection's state
    /// is ~6 KB, and the vector's spare capacity should not cost that much per slot.
    conns: Vec<Option<Box<Entry>>>,
    timers: Timers,
    /// Connections with something new to send or report.
    touched: Vec<usize>,
    /// What the clients have to hear: (slot, event).
    pub events: Vec<(u32, QuicEvent)>,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    /// Datagrams the socket refused to take (queue full): QUIC resends them as losses.
    pub send_dropped: u64,
    /// The second socket, for connections whose network changed.
    moved_socket: Option<UdpSocket>,
    /// Datagrams the gateways sent to the second socket: they saw the new address
    /// (the connections migrated). Taken by each report.
    pub received_moved: u64,
    network: Network,
    rng: SmallRng,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Connections made so far (each one's `born`).
    made: u64,
    /// The zero of the emulated links' clocks.
    origin: Instant,
}

/// The kernel buffers of the worker's one UDP socket, which all its connections share.
const SOCKET_BUFFER: usize = 8 << 20;

impl Quic {
    /// A QUIC endpoint on an ephemeral UDP port of `bind` that trusts what `config` does,
    /// emulating `network` for the users on its conditions (a second socket is opened
    /// when any of them changes networks).
    pub fn new(
        bind: SocketAddr,
        config: ClientConfig,
        network: Network,
        seed: u64,
    ) -> io::Result<Quic> {
        let socket = udp_socket(bind)?;
        let changes = network.conditions.iter().any(|c| c.change_at.is_some());
        let moved_socket = if changes {
            Some(udp_socket(bind)?)
        } else {
            None
        };
        Ok(Quic {
            moved_socket,
            received_moved: 0,
            network,
            rng: SmallRng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            seq: 0,
            made: 0,
            origin: Instant::now(),
            socket,
            endpoint: Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None),
            config,
            conns: Vec::new(),
            timers: Timers::default(),
            touched: Vec::new(),
            events: Vec::new(),
            recv_buf: vec![0; 64 * 1024],
            send_buf: Vec::with_capacity(1500),
            send_dropped: 0,
        })
    }

    /// The sockets, to register with the worker's poll: the first, and the second when
    /// the profile changes networks.
    pub fn sockets(&mut self) -> (&mut UdpSocket, Option<&mut UdpSocket>) {
        (&mut self.socket, self.moved_socket.as_mut())
    }

    /// The client's network changes: its connection sends from the second socket (a
    /// new port) from now on. False when there is no second socket or no connection.
    pub fn change_network(&mut self, h: usize) -> bool {
        let has_socket = self.moved_socket.is_some();
        match self.entry(h) {
            Some(e) if has_socket => {
                e.moved = true;
                true
            }
            _ => false,
        }
    }

    /// Starts a connection to `gateway` for the client in `slot`, whose user is on
    /// network condition `condition` (`None`: a clear network).
    pub fn connect(
        &mut self,
        gateway: SocketAddr,
        slot: u32,
        condition: Option<usize>,
        now: Instant,
    ) -> io::Result<usize> {
        let name = shellkit::quic::server_name(&gateway);
        let (ch, conn) = self
            .endpoint
            .connect(now, self.config.clone(), gateway, &name)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let h = ch.0;
        if self.conns.len() <= h {
            self.conns.resize_with(h + 1, || None);
        }
        self.conns[h] = Some(Box::new(Entry {
            conn,
            slot: Some(slot),
            stream: None,
            timer: None,
            condition: condition.and_then(|c| u16::try_from(c).ok()),
            up: Link::default(),
            down: Link::default(),
            moved: false,
            born: {
                self.made += 1;
                self.made
            },
        }));
        self.touched.push(h);
        Ok(h)
    }

    fn entry(&mut self, h: usize) -> Option<&mut Entry> {
        self.conns.get_mut(h).and_then(Option::as_deref_mut)
    }

    /// Reads from the session's stream like a non-blocking socket: `WouldBlock` when
    /// nothing is there, 0 at its end.
    pub fn read(&mut self, h: usize, buf: &mut [u8]) -> io::Result<usize> {
        let Some(e) = self.entry(h) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let Some(id) = e.stream else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let (got, _) = read_stream(&mut e.conn, id, buf.len());
        // Reading may open the peer's window: the acknowledgement goes out on the
        // next flush.
        self.touched.push(h);
        match got? {
            Some(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            None => Ok(0),
        }
    }

    /// Writes to the session's stream like a non-blocking socket.
    pub fn write(&mut self, h: usize, buf: &[u8]) -> io::Result<usize> {
        let Some(e) = self.entry(h) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let Some(id) = e.stream else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let wrote = write_stream(&mut e.conn, id, buf);
        self.touched.push(h);
        wrote
    }

    /// The client lets go of the connection: it is closed, and drains on its own.
    pub fn close(&mut self, h: usize, now: Instant) {
        if let Some(e) = self.entry(h) {
            e.slot = None;
            e.conn.close(now, VarInt::from_u32(0), Bytes::new());
            self.touched.push(h);
        }
    }

    /// Reads every datagram waiting on the sockets into its connection (through its
    /// emulated link, if it has one).
    pub fn receive(&mut self, now: Instant) {
        self.receive_from(false, now);
        if self.moved_socket.is_some() {
            self.receive_from(true, now);
        }
    }

    fn receive_from(&mut self, moved: bool, now: Instant) {
        loop {
            let socket = match (moved, &self.moved_socket) {
                (true, Some(s)) => s,
                _ => &self.socket,
            };
            let (n, from) = match socket.recv_from(&mut self.recv_buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.received_moved += u64::from(moved);
            let data = BytesMut::from(&self.recv_buf[..n]);
            let mut response = Vec::new();
            match self
                .endpoint
                .handle(now, from, None, None, data, &mut response)
            {
                Some(DatagramEvent::ConnectionEvent(ch, event)) => self.arrive(ch.0, event, n, now),
                Some(DatagramEvent::Response(t)) => {
                    self.send(&response[..t.size], t.destination, moved);
                }
                // A client endpoint takes no connections.
                Some(DatagramEvent::NewConnection(incoming)) => {
                    let mut buf = Vec::new();
                    let t = self.endpoint.refuse(incoming, &mut buf);
                    self.send(&buf[..t.size], t.destination, moved);
                }
                None => {}
            }
        }
    }

    /// A datagram for connection `h` (of `bytes`) came in: to the connection now, or
    /// through its emulated link.
    fn arrive(&mut self, h: usize, event: ConnectionEvent, bytes: usize, now: Instant) {
        let since = now.duration_since(self.origin);
        let Some(e) = self.conns.get_mut(h).and_then(Option::as_deref_mut) else {
            return;
        };
        let Some(c) = e
            .condition
            .and_then(|c| self.network.conditions.get(c as usize))
        else {
            e.conn.handle_event(event);
            self.touched.push(h);
            return;
        };
        if let Some(at) = e.down.pass(c, bytes, since, &mut self.rng) {
            let at = self.origin + at;
            let born = e.born;
            self.hold(at, Carried::In { h, born, event });
        }
    }

    /// Holds a datagram until `at`, rounded up to the next whole millisecond of the
    /// links' clock: datagrams due close together go out in one wake-up of the worker,
    /// and no delay is shortened.
    fn hold(&mut self, at: Instant, carried: Carried) {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let ms = since.div_ceil(1_000_000) as u64;
        let at = self.origin + std::time::Duration::from_millis(ms);
        self.seq += 1;
        self.in_flight.push(Reverse(InFlight {
            at,
            seq: self.seq,
            carried,
        }));
    }

    /// Delivers what the emulated links hold that is due.
    fn deliver(&mut self, now: Instant) {
        while self.in_flight.peek().is_some_and(|f| f.0.at <= now) {
            let Some(Reverse(f)) = self.in_flight.pop() else {
                break;
            };
            match f.carried {
                Carried::Out {
                    datagram,
                    to,
                    moved,
                } => self.send(&datagram, to, moved),
                Carried::In { h, born, event } => {
                    if let Some(e) = self.entry(h).filter(|e| e.born == born) {
                        e.conn.handle_event(event);
                        self.touched.push(h);
                    }
                }
            }
        }
    }

    /// Runs the timers that are due, and delivers what the emulated links hold.
    pub fn on_timers(&mut self, now: Instant) {
        self.deliver(now);
        while let Some(h) = self.timers.due(now, |h| armed(&self.conns, h)) {
            if let Some(e) = self.entry(h) {
                e.timer = None;
                e.conn.handle_timeout(now);
                self.touched.push(h);
            }
        }
    }

    /// When the worker should next wake for its QUIC connections: the next connection
    /// timer or emulated delivery, rounded up to a whole millisecond of the links'
    /// clock, so that timers due close together (acknowledgement delays, loss
    /// detection, held datagrams) share one wake-up; none of them is needed sooner.
    pub fn next_wake(&mut self) -> Option<Instant> {
        let at = self.next_timer()?;
        let since = at.saturating_duration_since(self.origin).as_nanos();
        Some(self.origin + std::time::Duration::from_millis(since.div_ceil(1_000_000) as u64))
    }

    /// When the next connection timer or emulated delivery is due.
    fn next_timer(&mut self) -> Option<Instant> {
        let held = self.in_flight.peek().map(|f| f.0.at);
        earliest(self.timers.next(|h| armed(&self.conns, h)), held)
    }

    /// Sends what the touched connections have to send, hands their endpoint events
    /// over, collects what their clients must hear into `events`, and re-arms their
    /// timers. Connections that finished draining are forgotten.
    pub fn flush(&mut self, now: Instant) {
        for h in take_touched(&mut self.touched) {
            self.drive(h, now);
        }
    }

    fn drive(&mut self, h: usize, now: Instant) {
        let Some(mut e) = self.conns.get_mut(h).and_then(Option::take) else {
            return;
        };
        let drained = exchange_events(&mut self.endpoint, h, &mut e.conn);
        while let Some(ev) = e.conn.poll() {
            self.on_event(&mut e, ev);
        }
        loop {
            self.send_buf.clear();
            let Some(t) = e.conn.poll_transmit(now, 1, &mut self.send_buf) else {
                break;
            };
            let buf = std::mem::take(&mut self.send_buf);
            self.emit(&mut e, &buf[..t.size], t.destination, now);
            self.send_buf = buf;
        }
        if drained {
            if let Some(slot) = e.slot {
                self.events.push((slot, QuicEvent::Lost("closed")));
            }
            return;
        }
        let timer = e.conn.poll_timeout();
        self.timers.rearm(h, &mut e.timer, timer);
        self.conns[h] = Some(e);
    }

    fn on_event(&mut self, e: &mut Entry, ev: Event) {
        let told = match ev {
            Event::Connected => {
                e.stream = e.conn.streams().open(Dir::Bi);
                Some(if e.stream.is_some() {
                    QuicEvent::Connected
                } else {
                    QuicEvent::Lost("no_stream")
                })
            }
            Event::ConnectionLost { reason } => Some(QuicEvent::Lost(lost_kind(&reason))),
            Event::Stream(StreamEvent::Readable { .. }) => Some(QuicEvent::Readable),
            Event::Stream(StreamEvent::Writable { .. }) => Some(QuicEvent::Writable),
            // The gateway finished or stopped its side: reading finds the end.
            Event::Stream(StreamEvent::Finished { .. } | StreamEvent::Stopped { .. }) => {
                Some(QuicEvent::Readable)
            }
            _ => None,
        };
        if let (Some(slot), Some(event)) = (e.slot, told) {
            if matches!(event, QuicEvent::Lost(_)) {
                e.slot = None;
            }
            self.events.push((slot, event));
        }
    }

    /// A datagram a connection sends: out now, or through its emulated link.
    fn emit(&mut self, e: &mut Entry, datagram: &[u8], to: SocketAddr, now: Instant) {
        let moved = e.moved;
        let Some(c) = e
            .condition
            .and_then(|c| self.network.conditions.get(c as usize))
        else {
            return self.send(datagram, to, moved);
        };
        let since = now.duration_since(self.origin);
        if let Some(at) = e.up.pass(c, datagram.len(), since, &mut self.rng) {
            let carried = Carried::Out {
                datagram: datagram.to_vec(),
                to,
                moved,
            };
            self.hold(self.origin + at, carried);
        }
    }

    fn send(&mut self, datagram: &[u8], to: SocketAddr, moved: bool) {
        let socket = match (moved, &self.moved_socket) {
            (true, Some(s)) => s,
            _ => &self.socket,
        };
        loop {
            match socket.send_to(datagram, to) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.send_dropped += 1;
                    return;
                }
            }
        }
    }
}

/// When connection `h`'s timer is armed, if it is.
fn armed(conns: &[Option<Box<Entry>>], h: usize) -> Option<Instant> {
    conns.get(h).and_then(Option::as_ref).and_then(|e| e.timer)
}

/// The error kind a lost connection is counted under.
fn lost_kind(reason: &quinn_proto::ConnectionError) -> &'static str {
    use quinn_proto::ConnectionError as E;
    match reason {
        E::TimedOut => "timeout",
        E::ConnectionClosed(_) | E::ApplicationClosed(_) | E::Reset => "closed",
        // A failed handshake (an untrusted certificate, say) is a TLS alert.
        E::TransportError(t) if (0x100..0x200).contains(&u64::from(t.code)) => "quic_tls",
        E::TransportError(_) => "quic_transport",
        E::VersionMismatch => "quic_version",
        E::LocallyClosed => "closed",
        E::CidsExhausted => "quic_cids",
    }
}

/// A non-blocking UDP socket on `bind` with large kernel buffers (best effort: the
/// kernel caps them at its own maximum).
fn udp_socket(bind: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let socket = UdpSocket::bind(bind)?;
    let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    Ok(socket)
}
