//! The payment stand-in (the transfer system): applies each credit exactly once, keyed by
//! envelope id, to an append-only ledger and per-user balances ([`store`]), with
//! injected latency, failures and outages (`sut_core::payment_faults`) and a bound on
//! batches in flight (the back rejects the front with `Busy`).

mod config;
pub mod store;

pub use config::{PaymentConfig, PaymentError};
pub use store::{db_path, read_ledger};

use crate::metrics::{labels, prefill, Counters};
use crate::rpc::{self, Rpc};
use crate::store::GroupCommitter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use store::Applied;
use sut_core::payment_faults::Verdict;
use sut_wire::open::Credit;
use tokio::sync::watch;

pub async fn run(
    config: PaymentConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PaymentError> {
    let db = store::open(&db_path(&config.data))?;
    let committer: GroupCommitter<Vec<Credit>, Vec<Applied>> =
        GroupCommitter::spawn(Arc::new(db), 256, store::apply);
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
    registry.register_collector(Box::new(crate::store::CommitMetrics {
        db: "payment",
        stats: committer.stats.clone(),
    }));
    let in_flight: Gauge = Gauge::default();
    registry.register(
        "sut_payment_in_flight",
        "Credit batches being applied now (refused as busy past --max-in-flight)",
        in_flight.clone(),
    );
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!("payment listening on {}", config.listen);
    let max_in_flight = config.max_in_flight;
    let faults = Arc::new(config.faults.clone());
    let show_start_ms = config.show_start_ms;
    rpc::serve(listener, shutdown, move |request| {
        let committer = committer.clone();
        let counters = credits.clone();
        let in_flight = in_flight.clone();
        let faults = faults.clone();
        async move {
            let Rpc::ApplyCredits { credits } = request else {
                return Rpc::Failed {
                    message: "payment only takes ApplyCredits".into(),
                };
            };
            let roll = rand::random::<f64>();
            let delay = match faults.decide(shellkit::clock::unix_ms() - show_start_ms, roll) {
                Verdict::Serve { delay } => delay,
                refused => {
                    let (name, message) = if refused == Verdict::Down {
                        ("down", "payment is down (an outage window)")
                    } else {
                        ("failed", "payment failed (an injected failure)")
                    };
                    counters.get_or_create(&labels(&[("result", name)])).inc();
                    return Rpc::Failed {
                        message: message.into(),
                    };
                }
            };
            if in_flight.inc() >= max_in_flight as i64 {
                in_flight.dec();
                counters.get_or_create(&labels(&[("result", "busy")])).inc();
                return Rpc::Busy { retry_after_ms: 50 };
            }
            // A slow transfer system holds its in-flight slot while it is slow, so that
            // latency turns into back-pressure on the backend as it would for real.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let ids: Vec<u64> = credits.iter().map(|c| c.envelope_id).collect();
            let committed = committer.submit(credits).await;
            in_flight.dec();
            match committed {
                Ok(results) => {
                    let names = results.into_iter().map(|r| {
                        if r == Applied::Credited {
                            "credited"
                        } else {
                            "duplicate"
                        }
                    });
                    crate::metrics::count_each(&counters, "result", names);
                    Rpc::CreditsApplied { envelope_ids: ids }
                }
                Err(e) => Rpc::Failed {
                    message: e.to_string(),
                },
            }
        }
    })
    .await;
    crate::log_line!("payment stopped");
    Ok(())
}
