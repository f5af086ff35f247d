//! The envelope backend's schema: its redb tables and the fixed widths of their hot
//! values (see [`crate::store::encode_fixed`]).

use redb::TableDefinition;

/// Envelope id → the open as first recorded.
pub const OPENS: TableDefinition<u64, [u8; OPEN_RECORD_LEN]> = TableDefinition::new("opens");
/// The fixed width of a stored [`sut_core::opens::OpenRecord`].
pub const OPEN_RECORD_LEN: usize = 56;
pub use crate::store::CREDIT_LEN;
/// Envelope id → credit not yet acked by payment.
pub const OUTBOX: TableDefinition<u64, [u8; CREDIT_LEN]> = TableDefinition::new("outbox");
/// Position → issuance record of the shared limit view (see [`sut_core::limit_view`]), in
/// the order first published, so gateways' sync positions survive a restart.
pub const ISSUANCE: TableDefinition<u64, &[u8]> = TableDefinition::new("issuance");

/// User → what the user holds at their owner: (envelope id, sponsor) per reservation
/// granted (see `sut_core::reservations`).
pub const RESERVATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("reservations");
/// Envelope id → its pot's `Split`, once shared or recycled.
pub const SPLITS: TableDefinition<u64, &[u8]> = TableDefinition::new("splits");
