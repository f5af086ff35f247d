//! Payment's one request, `ApplyCredits`: injected faults first, then the in-flight
//! bound (the back rejects the front early and cheaply), then the ledger.

use super::store::Applied;
use crate::committer::GroupCommitter;
use crate::metrics::{labels, Counters};
use crate::rpc::Rpc;
use prometheus_client::metrics::gauge::Gauge;
use sut_core::payment_faults::{PaymentFaults, Verdict};
use sut_wire::open::Credit;

/// What payment's handler shares.
pub(super) struct Payment {
    pub committer: GroupCommitter<Vec<Credit>, Vec<Applied>>,
    /// `sut_payment_credits` by result.
    pub credits: Counters,
    pub in_flight: Gauge,
    pub max_in_flight: usize,
    pub faults: PaymentFaults,
    pub show_start_ms: i64,
}

impl Payment {
    pub(super) async fn handle(&self, request: Rpc) -> Rpc {
        let Rpc::ApplyCredits { credits } = request else {
            return Rpc::Failed {
                message: "payment only takes ApplyCredits".into(),
            };
        };
        let roll = rand::random::<f64>();
        let show_ms = shellkit::clock::unix_ms() - self.show_start_ms;
        let delay = match self.faults.decide(show_ms, roll) {
            Verdict::Serve { delay } => delay,
            refused => {
                let (name, message) = if refused == Verdict::Down {
                    ("down", "payment is down (an outage window)")
                } else {
                    ("failed", "payment failed (an injected failure)")
                };
                self.count(name);
                return Rpc::Failed {
                    message: message.into(),
                };
            }
        };
        if self.in_flight.inc() >= self.max_in_flight as i64 {
            self.in_flight.dec();
            self.count("busy");
            return Rpc::Busy { retry_after_ms: 50 };
        }
        // A slow transfer system holds its in-flight slot while it is slow, so that
        // latency turns into back-pressure on the backend as it would for real.
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ids: Vec<u64> = credits.iter().map(|c| c.envelope_id).collect();
        let committed = self.committer.submit(credits).await;
        self.in_flight.dec();
        match committed {
            Ok(results) => {
                let names = results.into_iter().map(|r| {
                    if r == Applied::Credited {
                        "credited"
                    } else {
                        "duplicate"
                    }
                });
                crate::metrics::count_each(&self.credits, "result", names);
                Rpc::CreditsApplied { envelope_ids: ids }
            }
            Err(e) => Rpc::Failed {
                message: e.to_string(),
            },
        }
    }

    fn count(&self, result: &str) {
        self.credits
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }
}
