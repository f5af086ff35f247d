//! The RPC shell: connections between the parts, one request and its reply at a time,
//! over the framing and messages of [`sut_wire::rpc`].
//!
//! Every connection is authenticated before anything else: the server sends a random
//! nonce, the client answers with its MAC under the deployment's RPC key (`rpc.key` in
//! the data directory). A connection that does not prove the key within
//! [`HANDSHAKE_TIMEOUT`] is closed and counted; nothing it sent is handled.

use futures_util::{SinkExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use rand::RngCore;
use std::time::Duration;
pub use sut_wire::rpc::{Rpc, RpcCodec, RpcError};
use sut_wire::signing::SigningKey;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub type RpcConn = Framed<TcpStream, RpcCodec>;

/// How long a new connection has to prove the key.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer this part calls: its address, the key to prove, and the connection once made.
#[derive(Debug)]
pub struct Peer {
    addr: String,
    key: SigningKey,
    conn: Option<RpcConn>,
}

impl Peer {
    pub fn new(addr: &str, key: SigningKey) -> Peer {
        Peer {
            addr: addr.to_string(),
            key,
            conn: None,
        }
    }

    /// Sends a request, connecting (and proving the key) first when there is no
    /// connection; `None` when it cannot connect (the caller retries later).
    pub async fn call(&mut self, msg: Rpc, timeout: Duration) -> Option<Result<Rpc, RpcError>> {
        if self.conn.is_none() {
            self.conn = connect(&self.addr, &self.key, timeout).await.ok();
        }
        let conn = self.conn.as_mut()?;
        Some(call(conn, msg, timeout).await)
    }

    /// Forgets the connection, after a failure: the next call connects anew.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// Connects to a peer and answers its challenge.
async fn connect(addr: &str, key: &SigningKey, timeout: Duration) -> Result<RpcConn, RpcError> {
    let handshake = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Framed::new(stream, RpcCodec::default());
        let Some(Rpc::Challenge { nonce }) = conn.next().await.transpose()? else {
            return Err(RpcError::Closed);
        };
        let mac = key.rpc_proof(&nonce);
        conn.send(Rpc::Prove { mac }).await?;
        Ok(conn)
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| RpcError::Timeout(timeout))?
}

/// Sends a request and waits for its reply.
async fn call(conn: &mut RpcConn, msg: Rpc, timeout: Duration) -> Result<Rpc, RpcError> {
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

/// Challenges a new connection; true once it proved the key.
async fn admit(conn: &mut RpcConn, key: &SigningKey) -> bool {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let proved = async {
        conn.send(Rpc::Challenge { nonce }).await.ok()?;
        match conn.next().await? {
            Ok(Rpc::Prove { mac }) => Some(key.verify_rpc_proof(&nonce, &mac)),
            _ => Some(false),
        }
    };
    matches!(
        tokio::time::timeout(HANDSHAKE_TIMEOUT, proved).await,
        Ok(Some(true))
    )
}

/// Serves requests on `listener`, one task per connection that proves `key`, answering
/// each request with `handler`, until `shutdown` turns true. Connections that do not
/// prove the key are closed and counted in `refused`.
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    key: SigningKey,
    refused: Counter,
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
                let key = key.clone();
                let refused = refused.clone();
                tokio::spawn(async move {
                    let mut conn = Framed::new(stream, RpcCodec::default());
                    if !admit(&mut conn, &key).await {
                        refused.inc();
                        return;
                    }
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
