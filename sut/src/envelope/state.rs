//! The backend's state shared by its RPC handlers, credit forwarder and expirer.

use super::split_store::ExpiryQueue;
use super::store::{Applied, EnvelopeOp};
use crate::committer::GroupCommitter;
use crate::metrics::Counters;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::sync::Mutex;
use sut_core::limit_view::IssuanceLog;
use sut_wire::open::Credit;
use tokio::sync::Notify;

pub(super) struct Backend {
    pub(super) committer: GroupCommitter<EnvelopeOp, Applied>,
    pub(super) split_ttl_ms: i64,
    pub(super) show_start_ms: i64,
    /// Pots not yet recycled, by expiry.
    pub(super) expiry: Mutex<ExpiryQueue>,
    /// Shares and grabs by result, money dealt and recycled.
    pub(super) splits: Counters,
    pub(super) grabbed_cents: Counter,
    pub(super) recycled_cents: Counter,
    /// The shared limit view's log; one publish at a time, so positions are assigned,
    /// made durable and appended in one order.
    pub(super) issuance: tokio::sync::Mutex<IssuanceLog>,
    pub(super) outbox: Mutex<BTreeMap<u64, Credit>>,
    pub(super) outbox_notify: Notify,
    /// Requests being recorded now; bounded by `max_in_flight` (a gauge, so it is also
    /// what `/metrics` shows).
    pub(super) in_flight: Gauge,
    pub(super) max_in_flight: usize,
    pub(super) recorded: Counters,
    pub(super) outbox_depth: Gauge,
    pub(super) credited: Counters,
    /// Reservations by result (strict per-user limits).
    pub(super) reservations: Counters,
}
