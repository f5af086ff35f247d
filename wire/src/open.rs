//! An open on its way from the gateway's pass-through queue to the envelope backend,
//! and its credit on the way on to payment.

use crate::token::EnvelopeToken;
use serde::{Deserialize, Serialize};

/// One open the user was told succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEntry {
    pub token: EnvelopeToken,
    /// Show time of the open, ms.
    pub opened_ms: i64,
}

/// One credit on its way to payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub envelope_id: u64,
    pub user: u64,
    pub amount_cents: u32,
}
