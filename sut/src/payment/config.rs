//! What payment is started with, and how starting it fails.

use crate::store::StoreError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Clone)]
pub struct PaymentConfig {
    pub listen: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    /// Credit batches in flight before new ones are refused with Busy: the back
    /// rejects the front early and cheaply, and the backend's outbox holds the credits.
    pub max_in_flight: usize,
    /// Injected latency, failures and outages (none by default).
    pub faults: sut_core::payment_faults::PaymentFaults,
    /// Unix ms of the show's start: outage windows count from here.
    pub show_start_ms: i64,
    /// The deployment's RPC key, which the envelope backend must prove.
    pub rpc_key: sut_wire::signing::SigningKey,
}

#[derive(Debug, Error)]
pub enum PaymentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}
