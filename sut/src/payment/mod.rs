//! The payment stand-in (the transfer system): applies each credit exactly once, keyed by
//! envelope id, to an append-only ledger and per-user balances ([`store`]), with
//! injected latency, failures and outages (`sut_core::payment_faults`) and a bound on
//! batches in flight (the back rejects the front with `Busy`; see [`handle`]).

mod config;
mod handle;
pub mod store;

pub use config::{PaymentConfig, PaymentError};
pub use store::{db_path, read_ledger};

use crate::committer::GroupCommitter;
use crate::metrics::{prefill, Counters};
use crate::rpc;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use store::Applied;
use sut_wire::open::Credit;
use tokio::sync::watch;

pub async fn run(
    config: PaymentConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PaymentError> {
    let path = db_path(&config.data);
    let db = store::open(&path)?;
    let committer: GroupCommitter<Vec<Credit>, Vec<Applied>> =
        GroupCommitter::spawn(db, path, 256, store::apply);
    let credits = Counters::default();
    let mut registry = Registry::default();
    prefill(
        &credits,
        "result",
        &["credited", "duplicate", "busy", "down", "failed"],
    );
    registry.register(
        "sut_payment_credits",
        "Credits received, by result",
        credits.clone(),
    );
    registry.register_collector(Box::new(crate::committer::CommitMetrics {
        db: "payment",
        stats: committer.stats.clone(),
    }));
    let in_flight: Gauge = Gauge::default();
    registry.register(
        "sut_payment_in_flight",
        "Credit batches being applied now (refused as busy past --max-in-flight)",
        in_flight.clone(),
    );
    let refused = crate::metrics::rpc_refused(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!("payment listening on {}", config.listen);
    let payment = Arc::new(handle::Payment {
        committer,
        credits,
        in_flight,
        max_in_flight: config.max_in_flight,
        faults: config.faults.clone(),
        show_start_ms: config.show_start_ms,
    });
    rpc::serve(
        listener,
        config.rpc_key,
        refused,
        shutdown,
        move |request| {
            let payment = payment.clone();
            async move { payment.handle(request).await }
        },
    )
    .await;
    crate::log_line!("payment stopped");
    Ok(())
}
