//! A QUIC session's link: its connection's one bidirectional stream, reached through
//! the endpoint's [`Table`]. Whatever a session does to it (a read that opens the
//! client's window, a write, the stream's end) is sent by the endpoint task, which the
//! link wakes when it is the first to touch a connection since that task last ran.

use super::table::Table;
use super::Shared;
use crate::gateway::link::{Link, Transport};
use bytes::Bytes;
use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use sut_wire::protocol::{CodecError, FrameReader, ReadStatus};

/// The largest chunk a wait takes from the stream (the peer's window is smaller).
const CHUNK: usize = 16 * 1024;

/// A session's QUIC stream.
pub(in crate::gateway) struct QuicLink {
    shared: Arc<Shared>,
    h: usize,
    born: u64,
    /// A chunk that `readable` received and reads have not taken yet.
    pending: Bytes,
    /// The client finished its side of the stream.
    ended: bool,
}

/// Holds the table while `f` runs, then wakes the endpoint task if `f` gave it work.
fn with<R>(shared: &Shared, f: impl FnOnce(&mut Table) -> R) -> R {
    let mut table = super::lock(shared);
    let r = f(&mut table);
    if table.take_wake() {
        shared.wake.notify_one();
    }
    r
}

impl QuicLink {
    pub(super) fn new(shared: Arc<Shared>, h: usize, born: u64) -> QuicLink {
        QuicLink {
            shared,
            h,
            born,
            pending: Bytes::new(),
            ended: false,
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending.split_to(n));
            return Ok(n);
        }
        if self.ended {
            return Ok(0);
        }
        let (h, born) = (self.h, self.born);
        match with(&self.shared, |t| t.read(h, born, buf.len(), None))? {
            Some(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            None => {
                self.ended = true;
                Ok(0)
            }
        }
    }
}

impl Link for QuicLink {
    const TRANSPORT: Transport = Transport::Quic;

    fn next_frame(&mut self, reader: &mut FrameReader) -> Result<ReadStatus, CodecError> {
        reader.next_frame(|buf| self.try_read(buf))
    }

    async fn readable(&mut self) -> io::Result<()> {
        let (h, born) = (self.h, self.born);
        poll_fn(|cx| {
            if !self.pending.is_empty() || self.ended {
                return Poll::Ready(Ok(()));
            }
            match with(&self.shared, |t| t.read(h, born, CHUNK, Some(cx.waker()))) {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => self.ended = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (h, born) = (self.h, self.born);
        with(&self.shared, |t| t.write(h, born, buf, None))
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let (h, born) = (self.h, self.born);
        while !buf.is_empty() {
            let n = poll_fn(|cx| {
                match with(&self.shared, |t| t.write(h, born, buf, Some(cx.waker()))) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                    done => Poll::Ready(done),
                }
            })
            .await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    async fn close(&mut self, within: Duration) {
        // Finished, the stream's last bytes (a refusal, say) still go out; the wait for
        // the client's acknowledgement is bounded like any write.
        let (h, born) = (self.h, self.born);
        if with(&self.shared, |t| t.finish(h, born)) {
            let acked = poll_fn(|cx| {
                if with(&self.shared, |t| t.finished(h, born, cx.waker())) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            let _ = tokio::time::timeout(within, acked).await;
        }
    }
}

impl Drop for QuicLink {
    fn drop(&mut self) {
        let (h, born) = (self.h, self.born);
        with(&self.shared, |t| t.release(h, born, Instant::now()));
    }
}
