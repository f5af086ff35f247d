//! Binding the sockets every part listens on, with errors that name the address.

use prometheus_client::registry::Registry;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;

#[derive(Debug, Error)]
#[error(
    "cannot listen on {addr}: {source} (is another process using it? pick another address or port)"
)]
pub struct ListenError {
    pub addr: String,
    pub source: std::io::Error,
}

pub async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError {
        addr: addr.to_string(),
        source,
    })
}

/// Serves `registry` on `/metrics` at `addr`, when an address is given.
pub async fn serve_metrics(addr: Option<&str>, registry: Registry) -> Result<(), ListenError> {
    if let Some(addr) = addr {
        shellkit::metrics_http::serve(addr, Arc::new(registry))
            .await
            .map_err(|source| ListenError {
                addr: addr.to_string(),
                source,
            })?;
    }
    Ok(())
}
