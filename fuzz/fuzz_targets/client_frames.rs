//! The client frame decoder as a gateway session drives it: bytes arriving in pieces of
//! any size go through the scratch-buffer frame reader; every frame it yields must
//! encode and decode back to itself, and whatever it refuses must carry a code the
//! session can answer with (or be an I/O end). Never a panic, never an unbounded
//! buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sut_wire::protocol::{write_frame, Frame, FrameReader, ReadStatus, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, as a socket may hand out any.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut input = rest.chunks(chunk);
    let mut reader = FrameReader::default();
    loop {
        let status = reader.next_frame(|buf| match input.next() {
            Some(piece) => {
                let n = piece.len().min(buf.len());
                buf[..n].copy_from_slice(&piece[..n]);
                Ok(n)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        });
        assert!(reader.buffered() <= 2 * (MAX_FRAME_LEN + 16 * 1024));
        match status {
            Ok(ReadStatus::Frame(frame)) => round_trip(frame),
            Ok(ReadStatus::WouldBlock) | Ok(ReadStatus::Closed) => return,
            Err(e) => {
                let _ = e.code();
                return;
            }
        }
    }
});

fn round_trip(frame: Frame) {
    let mut wire = Vec::new();
    let rest = write_frame(frame.clone(), |b| {
        wire.extend_from_slice(b);
        Ok(b.len())
    });
    // A decoded frame always fits when encoded again.
    assert!(rest.expect("a decoded frame encodes").is_empty());
    let mut reader = FrameReader::default();
    let mut fed = false;
    let again = reader.next_frame(|buf| {
        if std::mem::replace(&mut fed, true) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        buf[..wire.len()].copy_from_slice(&wire);
        Ok(wire.len())
    });
    match again {
        Ok(ReadStatus::Frame(f)) => assert_eq!(f, frame),
        other => panic!("{frame:?} did not decode back: {other:?}"),
    }
}
