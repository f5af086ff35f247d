//! The table against a quinn-proto client, datagrams passed by hand and the clock given
//! explicitly: nothing here waits on time.

use super::*;
use quinn_proto::{ClientConfig, Connection, ConnectionHandle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    4433,
));
const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    5555,
));
const HELLO: Duration = Duration::from_secs(10);

struct Client {
    endpoint: Endpoint,
    conn: Connection,
    h: ConnectionHandle,
    events: Vec<Event>,
}

struct Setup {
    _dir: tempfile::TempDir,
    table: Table,
    client: Client,
    now: Instant,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let identity = crate::certs::ensure(dir.path(), &[]).unwrap();
    let idle = Duration::from_secs(30);
    let server = shellkit::quic::server_config(&identity, idle).unwrap();
    let trusted = dir.path().join(shellkit::quic::CERT_FILE);
    let config: ClientConfig = shellkit::quic::client_config(&trusted, idle).unwrap();
    let now = Instant::now();
    let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
    let (h, conn) = endpoint.connect(now, config, SERVER, "127.0.0.1").unwrap();
    Setup {
        _dir: dir,
        table: Table::new(server, HELLO),
        client: Client {
            endpoint,
            conn,
            h,
            events: Vec::new(),
        },
        now,
    }
}

impl Setup {
    /// Passes datagrams both ways, and runs both sides' timers due at `now`, until
    /// neither side has anything to send.
    fn settle(&mut self) {
        let now = self.now;
        for _ in 0..100 {
            let c = &mut self.client;
            if c.conn.poll_timeout().is_some_and(|at| at <= now) {
                c.conn.handle_timeout(now);
            }
            while let Some(ev) = c.conn.poll_endpoint_events() {
                if let Some(back) = c.endpoint.handle_event(c.h, ev) {
                    c.conn.handle_event(back);
                }
            }
            while let Some(ev) = c.conn.poll() {
                c.events.push(ev);
            }
            let mut to_server = Vec::new();
            loop {
                let mut buf = Vec::new();
                let Some(t) = c.conn.poll_transmit(now, 1, &mut buf) else {
                    break;
                };
                to_server.push(buf[..t.size].to_vec());
            }
            let mut to_client = Vec::new();
            let mut send = |d: &[u8], to: SocketAddr| {
                assert_eq!(to, CLIENT);
                to_client.push(d.to_vec());
            };
            for d in &to_server {
                self.table.receive(now, CLIENT, d, &mut send);
            }
            self.table.on_timers(now);
            self.table.flush(now, &mut send);
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            for d in to_client {
                let mut buf = Vec::new();
                let data = BytesMut::from(&d[..]);
                if let Some(DatagramEvent::ConnectionEvent(_, ev)) =
                    c.endpoint.handle(now, SERVER, None, None, data, &mut buf)
                {
                    c.conn.handle_event(ev);
                }
            }
        }
        panic!("the two sides never stopped talking");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.settle();
    }

    /// The handshake, then the client's stream with `first` on it: the session opened.
    fn open_session(&mut self, first: &[u8]) -> Opened {
        self.settle();
        assert!(self.client.connected());
        let id = self.client.conn.streams().open(Dir::Bi).unwrap();
        self.client.conn.send_stream(id).write(first).unwrap();
        self.settle();
        assert_eq!(self.table.opened.len(), 1, "one session to start");
        self.table.opened.pop().unwrap()
    }

    fn client_lost(&self) -> bool {
        self.client
            .events
            .iter()
            .any(|e| matches!(e, Event::ConnectionLost { .. }))
    }
}

impl Client {
    fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected))
    }
}

#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_clients_stream_becomes_a_session_carrying_bytes_both_ways() {
    let mut s = setup();
    let o = s.open_session(b"hello");
    assert_eq!(s.table.len(), 1);
    let got = s.table.read(o.h, o.born, 64, None).unwrap();
    assert_eq!(got.as_deref(), Some(&b"hello"[..]));
    let nothing = s.table.read(o.h, o.born, 64, None).unwrap_err();
    assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);

    assert_eq!(s.table.write(o.h, o.born, b"ok", None).unwrap(), 2);
    assert!(s.table.take_wake(), "a write wakes the endpoint task");
    s.settle();
    let id = StreamId::new(quinn_proto::Side::Client, Dir::Bi, 0);
    let mut stream = s.client.conn.recv_stream(id);
    let mut chunks = stream.read(true).unwrap();
    let chunk = chunks.next(64).unwrap().unwrap();
    assert_eq!(&chunk.bytes[..], b"ok");
    let _ = chunks.finalize();
    assert_eq!(s.table.failed, 0);
}

#[test]
fn a_connection_without_a_stream_by_the_hello_deadline_is_closed_and_counted() {
    let mut s = setup();
    s.settle();
    assert!(s.client.connected());
    s.advance(HELLO - Duration::from_millis(1));
    assert_eq!(s.table.failed, 0, "not before the deadline");
    assert!(!s.client_lost());
    s.advance(Duration::from_millis(1));
    assert_eq!(s.table.failed, 1);
    assert!(s.table.opened.is_empty());
    assert!(s.client_lost(), "the client hears the close");
}

#[test]
fn a_session_waiting_to_read_is_woken_when_its_client_goes() {
    let mut s = setup();
    let o = s.open_session(b"x");
    let _ = s.table.read(o.h, o.born, 64, None).unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let blocked = s.table.read(o.h, o.born, 64, Some(&waker)).unwrap_err();
    assert_eq!(blocked.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(count.0.load(Ordering::SeqCst), 0);

    s.client
        .conn
        .close(s.now, VarInt::from_u32(0), Bytes::from_static(b"bye"));
    s.settle();
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "the reader was woken");
    let gone = s.table.read(o.h, o.born, 64, None).unwrap_err();
    assert_eq!(gone.kind(), io::ErrorKind::ConnectionAborted);
    // A session that started is not a failed handshake.
    assert_eq!(s.table.failed, 0);
}

#[test]
fn a_finished_stream_is_known_acknowledged_and_a_released_connection_drains_away() {
    let mut s = setup();
    let o = s.open_session(b"x");
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    assert!(s.table.write(o.h, o.born, b"refused", None).is_ok());
    assert!(s.table.finish(o.h, o.born));
    assert!(!s.table.finished(o.h, o.born, &waker));
    // The client acknowledges within its acknowledgement delay.
    s.settle();
    s.advance(Duration::from_millis(100));
    assert!(count.0.load(Ordering::SeqCst) >= 1, "the closer was woken");
    assert!(s.table.finished(o.h, o.born, &waker));

    s.table.release(o.h, o.born, s.now);
    s.settle();
    assert!(s.client_lost(), "the client hears the close");
    // Closed connections drain for a few round trips' worth of time, then go.
    for _ in 0..20 {
        s.advance(Duration::from_secs(1));
    }
    assert_eq!(s.table.len(), 0);
    let gone = s.table.write(o.h, o.born, b"late", None).unwrap_err();
    assert_eq!(gone.kind(), io::ErrorKind::ConnectionAborted);
}

#[test]
fn a_stopping_table_refuses_new_connections_and_closes_the_rest() {
    let mut s = setup();
    let o = s.open_session(b"x");
    s.table.stop_accepting();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let _ = s.table.read(o.h, o.born, 64, None);
    let _ = s.table.read(o.h, o.born, 64, Some(&waker));
    s.table.close_all(s.now);
    s.settle();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(s.client_lost());

    // A second client is turned away at once.
    let mut late = setup();
    late.table.stop_accepting();
    late.settle();
    assert!(late.client_lost(), "refused");
    assert_eq!(late.table.len(), 0);
}
