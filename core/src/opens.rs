//! The envelope backend's rule for opens: each envelope is recorded once, by its id. A
//! redelivery of the same open is acked again and moves nothing; a different open under
//! an id already recorded (impossible with signed tokens) is kept out and shown.

use serde::{Deserialize, Serialize};
use sut_wire::open::{Credit, OpenEntry};

/// An open as the backend keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub entry: OpenEntry,
    /// Which gateway delivered it first.
    pub via_gateway: u16,
}

/// What recording one delivered open did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen: recorded, and its credit is in the outbox.
    New(Credit),
    /// Seen before with the same content: a redelivery, acked again, nothing moves.
    Duplicate,
    /// Seen before with different content: impossible with signed tokens; kept out and
    /// counted so the audit and metrics show it.
    Conflict,
}

/// The idempotency rule, apart from storage.
pub fn classify(existing: Option<&OpenRecord>, entry: &OpenEntry) -> Recorded {
    match existing {
        None => Recorded::New(Credit {
            envelope_id: entry.token.envelope_id,
            user: entry.token.user,
            amount_cents: entry.token.amount_cents,
        }),
        Some(r) if r.entry.token == entry.token => Recorded::Duplicate,
        Some(_) => Recorded::Conflict,
    }
}
