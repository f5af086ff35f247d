//! Framing: tokio-util's length-delimited codec under [`Frame`] encoding, for both ends.

use super::{DecodeError, ErrorCode, Frame, MAX_FRAME_LEN};
use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Why a frame could not be read off a connection.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame larger than {MAX_FRAME_LEN} bytes")]
    TooLarge,
    #[error("malformed frame: {0}")]
    Malformed(#[from] DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The code a gateway answers this error with, if the connection still allows one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CodecError::TooLarge => Some(ErrorCode::TooLarge),
            CodecError::Malformed(e) => Some(e.code()),
            CodecError::Io(_) => None,
        }
    }
}

/// Length-delimited framing plus [`Frame`] decoding, for both ends of a connection.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME_LEN)
                .new_codec(),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.inner.decode(src) {
            Ok(Some(payload)) => Ok(Some(Frame::decode_payload(&payload)?)),
            Ok(None) => Ok(None),
            // The length-delimited codec reports an oversized length as InvalidData.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(CodecError::TooLarge),
            Err(e) => Err(CodecError::Io(e)),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut payload = BytesMut::with_capacity(64);
        frame.encode_payload(&mut payload);
        if payload.len() > MAX_FRAME_LEN {
            return Err(CodecError::TooLarge);
        }
        self.inner
            .encode(payload.freeze(), dst)
            .map_err(CodecError::Io)
    }
}
