//! What driving many quinn-proto connections from one endpoint takes on either side
//! (the gateway's endpoint task, a load generator worker's event loop): each
//! connection's timer in one heap, the exchange of events between a connection and its
//! endpoint, and reading and writing a session's stream as a non-blocking socket would.
//! Both sides keep their connections in a table by handle; these work on handles and
//! leave the table to them.

use bytes::Bytes;
use quinn_proto::{Connection, ConnectionHandle, Endpoint, ReadError, StreamId, WriteError};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::Instant;

/// Hands a connection's events for its endpoint over, and the endpoint's answers back.
/// True once the connection has drained: the endpoint has forgotten it.
pub fn exchange_events(endpoint: &mut Endpoint, h: usize, conn: &mut Connection) -> bool {
    let mut drained = false;
    while let Some(ev) = conn.poll_endpoint_events() {
        drained |= ev.is_drained();
        if let Some(back) = endpoint.handle_event(ConnectionHandle(h), ev) {
            conn.handle_event(back);
        }
    }
    drained
}

/// Reads up to `max` bytes of stream `id` as a non-blocking socket would: `None` at its
/// end, `WouldBlock` when nothing is there. Beside it, whether the reading opened the
/// peer's window, so that the connection has something to send.
pub fn read_stream(
    conn: &mut Connection,
    id: StreamId,
    max: usize,
) -> (io::Result<Option<Bytes>>, bool) {
    let mut stream = conn.recv_stream(id);
    let mut chunks = match stream.read(true) {
        Ok(chunks) => chunks,
        Err(_) => return (Err(io::ErrorKind::ConnectionReset.into()), false),
    };
    let got = match chunks.next(max) {
        Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
        Err(ReadError::Blocked) => Err(io::ErrorKind::WouldBlock.into()),
        Err(ReadError::Reset(_)) => Err(io::ErrorKind::ConnectionReset.into()),
    };
    (got, chunks.finalize().should_transmit())
}

/// Writes to stream `id` what it takes now, as a non-blocking socket would.
pub fn write_stream(conn: &mut Connection, id: StreamId, buf: &[u8]) -> io::Result<usize> {
    match conn.send_stream(id).write(buf) {
        Ok(n) => Ok(n),
        Err(WriteError::Blocked) => Err(io::ErrorKind::WouldBlock.into()),
        Err(_) => Err(io::ErrorKind::ConnectionReset.into()),
    }
}

/// The earlier of two optional times.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    [a, b].into_iter().flatten().min()
}

/// Every connection's next timer, by handle. A connection re-armed earlier or later
/// leaves its old entry behind; an entry counts only while it is the time the
/// connection says it is armed at (`armed`), so stale ones are skipped.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    /// Arms connection `h` at `at`, if that differs from `armed` (which becomes `at`).
    pub fn rearm(&mut self, h: usize, armed: &mut Option<Instant>, at: Option<Instant>) {
        if at != *armed {
            *armed = at;
            if let Some(at) = at {
                self.heap.push(Reverse((at, h)));
            }
        }
    }

    /// The next connection whose timer is due at `now`, taken off the heap (its
    /// `armed` should then be cleared).
    pub fn due(&mut self, now: Instant, armed: impl Fn(usize) -> Option<Instant>) -> Option<usize> {
        while let Some(Reverse((at, h))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if armed(h) == Some(at) {
                return Some(h);
            }
        }
        None
    }

    /// When the next timer is due, stale entries dropped on the way.
    pub fn next(&mut self, armed: impl Fn(usize) -> Option<Instant>) -> Option<Instant> {
        while let Some(Reverse((at, h))) = self.heap.peek().copied() {
            if armed(h) == Some(at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }
}

/// The connections touched since the last flush, each once, in handle order; `touched`
/// is left empty.
pub fn take_touched(touched: &mut Vec<usize>) -> Vec<usize> {
    let mut taken = std::mem::take(touched);
    taken.sort_unstable();
    taken.dedup();
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_order_and_skip_the_ones_rearmed() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let mut armed = [None; 3];
        timers.rearm(0, &mut armed[0], Some(at(30)));
        timers.rearm(1, &mut armed[1], Some(at(10)));
        timers.rearm(2, &mut armed[2], Some(at(20)));
        // Connection 1 moves later: its entry at 10 is stale.
        timers.rearm(1, &mut armed[1], Some(at(40)));
        assert_eq!(timers.next(|h| armed[h]), Some(at(20)));
        assert_eq!(timers.due(at(25), |h| armed[h]), Some(2));
        armed[2] = None;
        assert_eq!(timers.due(at(25), |h| armed[h]), None, "nothing else due");
        assert_eq!(timers.due(at(45), |h| armed[h]), Some(0));
        armed[0] = None;
        assert_eq!(timers.due(at(45), |h| armed[h]), Some(1));
        armed[1] = None;
        assert_eq!(timers.next(|h| armed[h]), None);
    }

    #[test]
    fn touched_connections_come_once_each() {
        let mut touched = vec![3, 1, 3, 2, 1];
        assert_eq!(take_touched(&mut touched), vec![1, 2, 3]);
        assert!(touched.is_empty());
    }
}
