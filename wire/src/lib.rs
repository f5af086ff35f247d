//! What the processes of the shake system must agree on, and nothing else: the client
//! protocol's frames and codec, the internal RPC messages and what they carry (opens,
//! credits, issuance records and their reservations, shares and grabs), the envelope token, the limit cookie
//! and the auth token formats, the timeline and the run manifest `sut up` leaves for
//! load generators, and the metric names dashboards query.
//!
//! No I/O: bytes in, values out. The `codec` feature adds the stream framing
//! (tokio-util's length-delimited codec and a scratch-buffer frame reader) for the
//! programs that hold connections; the decision core builds without it.

pub mod cookie;
pub mod issued;
pub mod manifest;
pub mod metric_names;
pub mod open;
pub mod protocol;
pub mod reserve;
pub mod resource_manifest;
pub mod rpc;
pub mod schedule;
pub mod signing;
pub mod split;
pub mod timeline;
pub mod token;
