//! Messages between the parts of the system under test (gateway agent → envelope backend →
//! payment): postcard-encoded enums in length-delimited frames. Internal, so no hand-kept
//! layout: both ends are built from this file.

use crate::passthrough::OpenEntry;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

/// The largest internal message: big enough for thousands of entries per batch.
const MAX_RPC_LEN: usize = 16 * 1024 * 1024;

/// One credit on its way to payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub envelope_id: u64,
    pub user: u64,
    pub amount_cents: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rpc {
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
        publish: Vec<crate::limit_view::Issued>,
        since: u64,
    },
    /// Gateway → backend: shares and grabs, answered in order.
    Split {
        requests: Vec<crate::envelope::split_store::SplitRequest>,
    },
    /// Backend → gateway: one answer per request.
    SplitDone {
        answers: Vec<crate::envelope::split_store::SplitAnswer>,
    },
    /// Backend → gateway: records from `since`, and the position to ask from next.
    IssuedSince {
        records: Vec<crate::limit_view::Issued>,
        next: u64,
    },
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
#[derive(Debug)]
pub struct RpcCodec {
    inner: LengthDelimitedCodec,
}

impl Default for RpcCodec {
    fn default() -> Self {
        RpcCodec {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_RPC_LEN)
                .new_codec(),
        }
    }
}

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

impl Encoder<Rpc> for RpcCodec {
    type Error = RpcError;
    fn encode(&mut self, msg: Rpc, dst: &mut BytesMut) -> Result<(), RpcError> {
        let bytes = postcard::to_stdvec(&msg)?;
        self.inner.encode(Bytes::from(bytes), dst)?;
        Ok(())
    }
}

pub type RpcConn = Framed<TcpStream, RpcCodec>;

/// Connects to a peer.
pub async fn connect(addr: &str, timeout: Duration) -> Result<RpcConn, RpcError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| RpcError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    Ok(Framed::new(stream, RpcCodec::default()))
}

/// Sends a request and waits for its reply.
pub async fn call(conn: &mut RpcConn, msg: Rpc, timeout: Duration) -> Result<Rpc, RpcError> {
    let exchange = async {
        conn.send(msg).await?;
        match conn.next().await {
            Some(r) => r,
            None => Err(RpcError::Closed),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RpcError::Timeout(timeout))?
}

/// Sends a request on `conn`, connecting to `addr` first when there is no connection;
/// `None` when it cannot connect (`conn` stays empty and the caller retries later).
pub async fn call_on(
    conn: &mut Option<RpcConn>,
    addr: &str,
    msg: Rpc,
    timeout: Duration,
) -> Option<Result<Rpc, RpcError>> {
    if conn.is_none() {
        *conn = connect(addr, timeout).await.ok();
    }
    let c = conn.as_mut()?;
    Some(call(c, msg, timeout).await)
}

/// Serves requests on `listener`, one task per connection, answering each with `handler`,
/// until `shutdown` turns true.
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Rpc) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Rpc> + Send,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut conn = Framed::new(stream, RpcCodec::default());
                    while let Some(Ok(request)) = conn.next().await {
                        let reply = handler(request).await;
                        if conn.send(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}
