//! The backend's credit outbox, delivered to payment (see [`crate::outbox`]): only
//! what payment acked leaves it.

use super::state::Backend;
use super::store::EnvelopeOp;
use crate::metrics::labels;
use crate::outbox::{Delivery, Outbox};
use crate::rpc::{Peer, Rpc};
use std::sync::Arc;
use std::time::Duration;
use sut_wire::open::Credit;
use tokio::sync::{watch, Notify};

const BATCH: usize = 2048;

/// The outbox of credits not yet acked by payment.
struct CreditOutbox(Arc<Backend>);

impl Outbox for CreditOutbox {
    type Item = Credit;

    fn take(&self, max: usize) -> Vec<Credit> {
        self.0
            .outbox
            .lock()
            .map(|o| o.values().take(max).copied().collect())
            .unwrap_or_default()
    }

    fn key(item: &Credit) -> u64 {
        item.envelope_id
    }

    /// The gateways are stopped before the backend, so nothing adds credits then.
    fn producers_done(&self) -> bool {
        true
    }

    fn arrivals(&self) -> &Notify {
        &self.0.outbox_notify
    }

    fn request(&self, credits: Vec<Credit>) -> Rpc {
        Rpc::ApplyCredits { credits }
    }

    fn acked(reply: Rpc) -> Option<Vec<u64>> {
        match reply {
            Rpc::CreditsApplied { envelope_ids } => Some(envelope_ids),
            _ => None,
        }
    }

    async fn settle(&self, acked: Vec<u64>) {
        let b = &self.0;
        let n = acked.len() as u64;
        if b.committer
            .submit(EnvelopeOp::Settled(acked.clone()))
            .await
            .is_err()
        {
            return;
        }
        if let Ok(mut o) = b.outbox.lock() {
            for id in &acked {
                o.remove(id);
            }
            b.outbox_depth.set(o.len() as i64);
        }
        b.credited
            .get_or_create(&labels(&[("result", "applied")]))
            .inc_by(n);
    }

    /// Credits stay in the outbox until settled; one forwarder takes them, so there
    /// is nothing to release.
    fn release(&self, _keys: &[u64]) {}

    fn count_refused(&self, result: &'static str) {
        self.0
            .credited
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }
}

pub(super) async fn forward(
    b: Arc<Backend>,
    payment: Peer,
    shutdown: watch::Receiver<bool>,
    pace: Duration,
    drain_timeout: Duration,
) {
    let outbox = Arc::new(CreditOutbox(b));
    let how = Delivery {
        batch: BATCH,
        pace,
        drain_timeout,
    };
    crate::outbox::deliver(outbox, payment, how, shutdown).await;
}
