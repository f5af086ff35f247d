//! The backend's metric families, registered at zero for every outcome.

use super::state::Backend;
use crate::metrics::prefill;
use prometheus_client::registry::Registry;

pub(super) fn register(backend: &Backend, registry: &mut Registry) {
    prefill(
        &backend.reservations,
        "result",
        &super::reservations::RESULTS,
    );
    registry.register(
        "sut_envelope_reservations",
        "Envelopes reserved for their users before issue (strict per-user limits), by result",
        backend.reservations.clone(),
    );
    prefill(
        &backend.recorded,
        "result",
        &["new", "duplicate", "conflict", "busy"],
    );
    prefill(&backend.credited, "result", &["applied", "busy", "failed"]);
    super::splits::prefill(&backend.splits);
    registry.register(
        "sut_envelope_splits",
        "Shares and grabs at the backend, by request and result",
        backend.splits.clone(),
    );
    registry.register(
        "sut_envelope_grabbed_cents",
        "Cents dealt to friends' grabs (credited through the outbox)",
        backend.grabbed_cents.clone(),
    );
    registry.register(
        "sut_envelope_recycled_cents",
        "Cents of expired pots returned to their sponsors",
        backend.recycled_cents.clone(),
    );
    registry.register_collector(Box::new(crate::committer::CommitMetrics {
        db: "envelope",
        stats: backend.committer.stats.clone(),
    }));
    registry.register(
        "sut_envelope_in_flight",
        "Open batches being recorded now (refused as busy past --max-in-flight)",
        backend.in_flight.clone(),
    );
    registry.register(
        "sut_envelope_opens",
        "Opens delivered to the backend, by result",
        backend.recorded.clone(),
    );
    registry.register(
        "sut_envelope_outbox_depth",
        "Credits waiting for payment's ack",
        backend.outbox_depth.clone(),
    );
    registry.register(
        "sut_envelope_credits_forwarded",
        "Credits sent to payment, by result",
        backend.credited.clone(),
    );
}
