//! What a session reads its frames from and writes its replies to: a TCP connection or
//! a QUIC connection's one bidirectional stream ([`super::quic`]). The session ([`super::session`]) is
//! written once over this; each transport only says how to read without waiting, how
//! to wait until there is something, and how to write.

use std::future::Future;
use std::io;
use std::time::Duration;
use sut_wire::protocol::{CodecError, FrameReader, ReadStatus};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What carries a session; the index of its metrics (in [`Transport::ALL`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp = 0,
    Quic = 1,
}

impl Transport {
    pub(crate) const ALL: [Transport; 2] = [Transport::Tcp, Transport::Quic];

    /// Its `transport` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// A session's transport.
pub(super) trait Link: Send + 'static {
    const TRANSPORT: Transport;
    /// The next frame if one is complete, without waiting (`WouldBlock` otherwise).
    fn next_frame(&mut self, reader: &mut FrameReader) -> Result<ReadStatus, CodecError>;
    /// Waits until reading may find something (or the link failed).
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes what the link takes now, without waiting.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Writes all of `buf`, waiting as needed.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Ends the session's side of the link, letting what was written reach the client
    /// within `within`.
    fn close(&mut self, within: Duration) -> impl Future<Output = ()> + Send;
}

/// The client's TCP connection, set up as sessions use it.
pub(super) fn tcp(stream: TcpStream, send_buffer: usize) -> TcpStream {
    let _ = stream.set_nodelay(true);
    if send_buffer > 0 {
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &send_buffer);
    }
    stream
}

impl Link for TcpStream {
    const TRANSPORT: Transport = Transport::Tcp;

    fn next_frame(&mut self, reader: &mut FrameReader) -> Result<ReadStatus, CodecError> {
        let stream = &*self;
        let mut found = None;
        // Through `try_io` so that when the reader knows the socket is empty (its last
        // read came up short) the runtime forgets the readiness without one more read.
        let _ = stream.try_io(Interest::READABLE, || {
            match reader.next_frame(|buf| stream.try_read(buf)) {
                Ok(ReadStatus::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
                other => {
                    found = Some(other);
                    Ok(())
                }
            }
        });
        found.unwrap_or(Ok(ReadStatus::WouldBlock))
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        // tokio's own future, not one wrapped around it: it is held in every idle
        // session's task.
        TcpStream::readable(self)
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, buf).await
    }

    async fn close(&mut self, _within: Duration) {
        // Dropping the socket closes it; the kernel delivers what was written.
    }
}
