//! Messages between the parts of the system under test (gateway agent → envelope backend →
//! payment): postcard-encoded enums in length-delimited frames. Internal, so no hand-kept
//! layout: both ends are built from this file. Every connection begins with a
//! challenge the client answers with the deployment's RPC key, so only the parts of
//! one deployment talk to each other.

use crate::issued::Issued;
use crate::open::{Credit, OpenEntry};
use crate::reserve::ReserveAnswer;
use crate::schedule::SignedSchedule;
use crate::signing::MAC_LEN;
use crate::split::{SplitAnswer, SplitRequest};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;
#[cfg(feature = "codec")]
use {
    bytes::{Bytes, BytesMut},
    tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec},
};

#[cfg(feature = "codec")]
/// The largest internal message: big enough for thousands of entries per batch.
const MAX_RPC_LEN: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rpc {
    /// Server → client, first on every connection: prove you hold the deployment's RPC
    /// key by answering with [`Rpc::Prove`] over this nonce.
    Challenge { nonce: [u8; 16] },
    /// Client → server: the MAC of the challenge's nonce (see
    /// [`crate::signing::SigningKey::rpc_proof`]); anything else closes the connection.
    Prove { mac: [u8; MAC_LEN] },
    /// Gateway → backend: opens to record, keyed by the gateway's queue sequence.
    RecordOpens {
        gateway: u16,
        entries: Vec<(u64, OpenEntry)>,
    },
    /// Backend → gateway: these queue sequences are durably recorded (new or duplicate).
    OpensRecorded { seqs: Vec<u64> },
    /// Backend → payment: credits to apply, idempotent by envelope id.
    ApplyCredits { credits: Vec<Credit> },
    /// Payment → backend: these envelope ids are durably credited.
    CreditsApplied { envelope_ids: Vec<u64> },
    /// Any server: too busy now, retry later (the back rejects the front).
    Busy { retry_after_ms: u32 },
    /// Any server: the request failed.
    Failed { message: String },
    /// Gateway → backend: issuance records for the shared limit view, and "what did
    /// every gateway publish from position `since` on".
    SyncIssued {
        gateway: u16,
        publish: Vec<Issued>,
        since: u64,
    },
    /// Gateway → backend: shares and grabs, answered in order.
    Split { requests: Vec<SplitRequest> },
    /// Backend → gateway: one answer per request.
    SplitDone { answers: Vec<SplitAnswer> },
    /// Backend → gateway: records from `since`, and the position to ask from next.
    IssuedSince { records: Vec<Issued>, next: u64 },
    /// Gateway → the users' owner (the backend): reserve these envelopes for their
    /// users before issuing them (strict limits across gateways), answered in order.
    Reserve { requests: Vec<Issued> },
    /// Owner → gateway: one answer per reservation.
    Reserved { answers: Vec<ReserveAnswer> },
    /// Operator → config service: a new signed schedule version to hand out.
    PublishSchedule { signed: SignedSchedule },
    /// Gateway → config service (the push channel): answer as soon as you hold a
    /// version above `have`, or with [`Rpc::ScheduleHeld`] after a while.
    WatchSchedule { have: u64 },
    /// Config service → gateway: the version it holds, signed.
    Schedule { signed: SignedSchedule },
    /// Gateway → gateway, or operator → gateway (the gossip channel): a version to
    /// take and pass on.
    Gossip { signed: SignedSchedule },
    /// The version the answering part holds (nothing newer to give).
    ScheduleHeld { version: u64 },
    /// Supervisor → gateway: take a live timeline channel (`push`, `pull`, `gossip`)
    /// down or bring it back, as a fault a run injects.
    ChannelFault { channel: String, down: bool },
    /// Set a resource server's injected faults: the share of item responses it
    /// corrupts, in millionths, and its bandwidth in bytes per second (0: its own
    /// budget).
    ResourceFault { corrupt_ppm: u32, bandwidth: u64 },
    /// A resource server's faults now.
    ResourceFaultSet { corrupt_ppm: u32, bandwidth: u64 },
}

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("connection closed")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Frames [`Rpc`] messages.
#[cfg(feature = "codec")]
#[derive(Debug)]
pub struct RpcCodec {
    inner: LengthDelimitedCodec,
}

#[cfg(feature = "codec")]
impl Default for RpcCodec {
    fn default() -> Self {
        RpcCodec {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_RPC_LEN)
                .new_codec(),
        }
    }
}

#[cfg(feature = "codec")]
impl Decoder for RpcCodec {
    type Item = Rpc;
    type Error = RpcError;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Rpc>, RpcError> {
        match self.inner.decode(src)? {
            Some(buf) => Ok(Some(postcard::from_bytes(&buf)?)),
            None => Ok(None),
        }
    }
}

#[cfg(feature = "codec")]
impl Encoder<Rpc> for RpcCodec {
    type Error = RpcError;
    fn encode(&mut self, msg: Rpc, dst: &mut BytesMut) -> Result<(), RpcError> {
        let bytes = postcard::to_stdvec(&msg)?;
        self.inner.encode(Bytes::from(bytes), dst)?;
        Ok(())
    }
}
