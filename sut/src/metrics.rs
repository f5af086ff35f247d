//! Counter families with bounded label sets, as every service registers them; the
//! registry is served on `/metrics` by `shellkit::metrics_http`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A counter family with one free-form label set; label values are bounded by the callers.
pub type Counters = Family<Vec<(&'static str, String)>, Counter>;

/// Reads `name=value` pairs into a label set.
pub fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Creates the series for every value of `key` at zero, so that a dashboard or alert
/// sees an outcome that has not happened yet as 0 rather than as no data at all.
pub fn prefill(family: &Counters, key: &'static str, values: &[&str]) {
    for v in values {
        let _ = family.get_or_create(&labels(&[(key, v)]));
    }
}

/// Counts a batch's outcomes under `key`, looking each distinct label value up once:
/// a lookup hashes and allocates its label set, too dear to pay per open on the
/// open path's thousands-per-batch.
pub fn count_each(
    family: &Counters,
    key: &'static str,
    values: impl IntoIterator<Item = &'static str>,
) {
    let mut tally: Vec<(&'static str, u64)> = Vec::new();
    for v in values {
        match tally.iter_mut().find(|(name, _)| *name == v) {
            Some((_, n)) => *n += 1,
            None => tally.push((v, 1)),
        }
    }
    for (v, n) in tally {
        family.get_or_create(&labels(&[(key, v)])).inc_by(n);
    }
}

/// `sut_rpc_refused_total`: connections to this part's RPC port that did not prove the
/// deployment's key (see [`crate::rpc`]).
pub fn rpc_refused(registry: &mut Registry) -> Counter {
    let refused = Counter::default();
    registry.register(
        "sut_rpc_refused",
        "Connections to the internal RPC port closed for not proving the deployment's RPC key",
        refused.clone(),
    );
    refused
}
