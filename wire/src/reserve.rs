//! Reservations at a user's owner, before an envelope is issued (strict per-user
//! limits across gateways): a gateway asks with the [`Issued`](crate::issued::Issued)
//! record it would write; the owner answers each.

use serde::{Deserialize, Serialize};

/// The owner's answer to one reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReserveAnswer {
    /// Within the limits (or a repeat of one granted before): issue it.
    Granted,
    /// The user is at a limit; `sponsors` are what they hold, for the gateway's table.
    Refused { sponsors: Vec<u16> },
}
