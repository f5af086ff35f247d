//! An issuance record of the shared limit view: what gateways publish to the envelope
//! backend and fetch back from it.

use serde::{Deserialize, Serialize};

/// One envelope issued to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Issued {
    pub user: u64,
    pub envelope_id: u64,
    pub sponsor: u16,
}
