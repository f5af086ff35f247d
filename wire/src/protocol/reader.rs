//! Reading and writing frames on non-blocking sockets without a buffer per connection.
//!
//! A framed stream usually owns a read buffer of several KiB per connection, which at a
//! million idle connections is gigabytes doing nothing. Here every read goes into one
//! scratch buffer per thread; a connection keeps bytes only when a frame arrived in
//! pieces, and only until it is whole. Both ends (gateway sessions and load generator
//! workers) use it, each with its own I/O: the caller passes the read and write calls.

use super::{CodecError, Frame, FrameCodec};
use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes asked of the socket per read.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    /// Where reads land: zeroed once per thread, then only overwritten.
    static RAW: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
    /// Where whole frames are cut from, and frames encoded into before a write.
    static WORK: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(SCRATCH_LEN));
}

/// What one attempt to read a frame found.
#[derive(Debug)]
pub enum ReadStatus {
    Frame(Frame),
    /// Nothing more to read until the socket is readable again.
    WouldBlock,
    /// The peer closed the connection.
    Closed,
}

/// Per-connection read state: nothing (one pointer) between frames; the framing codec
/// and the bytes of an unfinished frame while one arrives in pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    partial: Option<Box<Partial>>,
    /// The last read took less than it was offered: the socket was empty then, so the
    /// next call can say so without another read (a new arrival raises a new readiness
    /// event). Saves one system call per request.
    drained: bool,
}

/// A frame that has not arrived whole. The codec comes along because it may already
/// have consumed the frame's length prefix.
#[derive(Debug, Default)]
struct Partial {
    codec: FrameCodec,
    bytes: BytesMut,
}

impl FrameReader {
    /// The next frame: first from bytes kept from earlier reads, then by calling `read`
    /// (a non-blocking read that fails with `WouldBlock` when the socket is empty).
    pub fn next_frame(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Result<ReadStatus, CodecError> {
        if self.partial.is_some() {
            if let Some(frame) = self.decode_partial()? {
                return Ok(ReadStatus::Frame(frame));
            }
        }
        if std::mem::take(&mut self.drained) {
            return Ok(ReadStatus::WouldBlock);
        }
        RAW.with(|raw| {
            let mut raw = raw.borrow_mut();
            loop {
                let n = match read(&mut raw[..]) {
                    Ok(0) => return Ok(ReadStatus::Closed),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(ReadStatus::WouldBlock)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CodecError::Io(e)),
                };
                let short = n < raw.len();
                let data = &raw[..n];
                let decoded = match &mut self.partial {
                    None => WORK.with(|work| {
                        let mut work = work.borrow_mut();
                        work.clear();
                        work.extend_from_slice(data);
                        let mut codec = FrameCodec::default();
                        let decoded = codec.decode(&mut work);
                        // Whatever follows the frame (or all of it, if no frame is whole
                        // yet) stays with this connection, not in the shared buffer.
                        // The codec comes too if it consumed a length prefix alone.
                        let keep = match &decoded {
                            Ok(None) => true,
                            Ok(Some(_)) => !work.is_empty(),
                            Err(_) => false,
                        };
                        if keep {
                            self.partial = Some(Box::new(Partial {
                                codec,
                                bytes: BytesMut::from(&work[..]),
                            }));
                        }
                        work.clear();
                        decoded
                    })?,
                    Some(partial) => {
                        partial.bytes.extend_from_slice(data);
                        self.decode_partial()?
                    }
                };
                if let Some(frame) = decoded {
                    self.drained = short;
                    return Ok(ReadStatus::Frame(frame));
                }
                if short {
                    return Ok(ReadStatus::WouldBlock);
                }
            }
        })
    }

    fn decode_partial(&mut self) -> Result<Option<Frame>, CodecError> {
        let Some(partial) = &mut self.partial else {
            return Ok(None);
        };
        let decoded = partial.codec.decode(&mut partial.bytes);
        if matches!(decoded, Ok(Some(_))) && partial.bytes.is_empty() {
            // Right after a whole frame the codec is back at its start: drop it with
            // the buffer, so an idle connection holds nothing.
            self.partial = None;
        }
        decoded
    }

    /// Bytes held for an unfinished frame (0 between frames).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes.capacity())
    }
}

/// Encodes `frame` with its length prefix and hands the bytes to `write`, a
/// non-blocking write; returns the bytes it did not take (empty when all went out),
/// which the caller keeps until the socket is writable again.
pub fn write_frame(
    frame: Frame,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Result<Box<[u8]>, CodecError> {
    WORK.with(|work| {
        let mut work = work.borrow_mut();
        work.clear();
        FrameCodec::default().encode(frame, &mut work)?;
        let mut sent = 0;
        while sent < work.len() {
            match write(&work[sent..]) {
                Ok(0) => {
                    return Err(CodecError::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the peer takes no more bytes",
                    )))
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CodecError::Io(e)),
            }
        }
        let rest: Box<[u8]> = work[sent..].into();
        work.clear();
        Ok(rest)
    })
}

/// Sends bytes kept by [`write_frame`]; returns what is still left.
pub fn flush_rest(
    rest: &[u8],
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> io::Result<Box<[u8]>> {
    let mut sent = 0;
    while sent < rest.len() {
        match write(&rest[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(rest[sent..].into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A socket stand-in that hands out its bytes in the given chunk sizes, as if each
    /// chunk arrived on its own.
    struct Chunks {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
    }

    impl Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let want = self.sizes.pop().unwrap_or(usize::MAX).max(1);
            let n = want.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn encoded(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            let rest = write_frame(f.clone(), |b| {
                out.extend_from_slice(b);
                Ok(b.len())
            })
            .unwrap();
            assert!(rest.is_empty());
        }
        out
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Heartbeat,
            Frame::Shake {
                cookie: Bytes::from_static(b"cookie"),
            },
            Frame::Open {
                token: Bytes::from(vec![7; 300]),
            },
        ]
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_nothing_is_kept_after() {
        let sent = frames();
        let data = encoded(&sent);
        for size in 1..data.len() {
            let mut sock = Chunks {
                data: data.clone(),
                at: 0,
                sizes: vec![size; 1000],
            };
            let mut reader = FrameReader::default();
            let mut got = Vec::new();
            loop {
                match reader.next_frame(|b| sock.read(b)).unwrap() {
                    ReadStatus::Frame(f) => got.push(f),
                    // The next chunk's arrival is the next readiness event.
                    ReadStatus::WouldBlock if sock.at < sock.data.len() => continue,
                    ReadStatus::WouldBlock => break,
                    ReadStatus::Closed => unreachable!(),
                }
            }
            assert_eq!(got, sent, "chunk size {size}");
            assert_eq!(reader.buffered(), 0, "chunk size {size}");
        }
    }

    #[test]
    fn a_short_read_means_empty_without_asking_again() {
        let data = encoded(&[Frame::Heartbeat]);
        let reads = std::cell::Cell::new(0);
        let mut reader = FrameReader::default();
        let mut read = |b: &mut [u8]| {
            reads.set(reads.get() + 1);
            if reads.get() == 1 {
                b[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        };
        assert!(matches!(
            reader.next_frame(&mut read).unwrap(),
            ReadStatus::Frame(Frame::Heartbeat)
        ));
        assert!(matches!(
            reader.next_frame(&mut read).unwrap(),
            ReadStatus::WouldBlock
        ));
        assert_eq!(reads.get(), 1);
        // After that, a readiness event leads to a real read again.
        assert!(matches!(
            reader.next_frame(&mut read).unwrap(),
            ReadStatus::WouldBlock
        ));
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn a_short_write_leaves_the_rest() {
        let mut taken = Vec::new();
        let rest = write_frame(Frame::Heartbeat, |b| {
            if taken.is_empty() {
                taken.extend_from_slice(&b[..2]);
                Ok(2)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        })
        .unwrap();
        let rest = flush_rest(&rest, |b| {
            taken.extend_from_slice(b);
            Ok(b.len())
        })
        .unwrap();
        assert!(rest.is_empty());
        assert_eq!(taken, encoded(&[Frame::Heartbeat]));
    }

    #[test]
    fn a_closed_peer_and_an_oversized_frame_are_told_apart() {
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.next_frame(|_| Ok(0)).unwrap(),
            ReadStatus::Closed
        ));
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        let mut sock = Chunks {
            data: huge,
            at: 0,
            sizes: vec![],
        };
        let err = reader.next_frame(|b| sock.read(b)).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge));
    }
}
