//! What the envelope backend is started with, and how starting it fails.

use crate::store::StoreError;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Clone)]
pub struct EnvelopeConfig {
    pub listen: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    pub payment_addr: String,
    /// Most record requests in flight before new ones are refused with Busy.
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    /// Deliveries of the credit outbox at most one per this long (zero: unpaced), so that
    /// credits arriving one at a time share the peer's durable writes.
    pub deliver_every: Duration,
    /// How long a split pot may be shared and grabbed after its open.
    pub split_ttl: Duration,
    /// The show's start, Unix ms: opens and pots are stamped in show time.
    pub show_start_ms: i64,
    /// The deployment's RPC key: gateways must prove it, and it is proved to payment.
    pub rpc_key: sut_wire::signing::SigningKey,
}

#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}
