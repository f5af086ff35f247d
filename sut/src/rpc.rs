//! The RPC shell: connections between the parts, one request and its reply at a time,
//! over the framing and messages of [`sut_wire::rpc`].

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
pub use sut_wire::rpc::{Rpc, RpcCodec, RpcError};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

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
