//! The metric families every part of the system under test exposes: the names its
//! dashboards and alerts query. A test scrapes each part and holds this list against
//! what it finds.

/// Every family each part exposes (component, name as queried, type): dashboards are
/// checked against it, and the dashboard proof test checks it against real scrapes.
pub const CATALOG: &[(&str, &str, &str)] = &[
    ("payment", "sut_payment_credits_total", "counter"),
    ("payment", "sut_payment_in_flight", "gauge"),
    ("payment", "sut_store_batches_total", "counter"),
    ("payment", "sut_store_operations_total", "counter"),
    ("envelope", "sut_envelope_in_flight", "gauge"),
    ("envelope", "sut_store_batches_total", "counter"),
    ("envelope", "sut_store_operations_total", "counter"),
    ("envelope", "sut_envelope_opens_total", "counter"),
    ("envelope", "sut_envelope_outbox_depth", "gauge"),
    (
        "envelope",
        "sut_envelope_credits_forwarded_total",
        "counter",
    ),
    ("gateway", "sut_gateway_connections", "gauge"),
    ("gateway", "sut_gateway_sessions_total", "counter"),
    ("gateway", "sut_gateway_shakes_total", "counter"),
    ("gateway", "sut_gateway_envelopes_issued_total", "counter"),
    ("gateway", "sut_gateway_opens_total", "counter"),
    ("gateway", "sut_gateway_heartbeats_total", "counter"),
    ("gateway", "sut_gateway_errors_total", "counter"),
    ("gateway", "sut_passthrough_queue_depth", "gauge"),
    ("gateway", "sut_passthrough_forwarded_total", "counter"),
    ("gateway", "sut_gateway_throttle_tier", "gauge"),
    ("gateway", "sut_gateway_queue_delay_seconds", "gauge"),
    ("gateway", "sut_gateway_admitted_ratio", "gauge"),
    ("gateway", "sut_gateway_cpu_ratio", "gauge"),
    ("gateway", "sut_gateway_envelope_budget", "gauge"),
    ("gateway", "sut_gateway_issuance_rate_limit", "gauge"),
    ("gateway", "sut_config_version", "gauge"),
    ("gateway", "sut_passthrough_oldest_age_seconds", "gauge"),
    ("gateway", "sut_store_batches_total", "counter"),
    ("gateway", "sut_gateway_limit_view_users", "gauge"),
    ("gateway", "sut_gateway_limit_syncs_total", "counter"),
    ("gateway", "sut_store_operations_total", "counter"),
    ("gateway", "sut_gateway_splits_total", "counter"),
    ("gateway", "sut_gateway_connection_limits_total", "counter"),
    ("envelope", "sut_envelope_splits_total", "counter"),
    ("envelope", "sut_envelope_reservations_total", "counter"),
    ("envelope", "sut_envelope_grabbed_cents_total", "counter"),
    ("envelope", "sut_envelope_recycled_cents_total", "counter"),
];
