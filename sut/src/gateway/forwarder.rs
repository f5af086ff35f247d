//! The agent's forwarder: the pass-through queue as a durable outbox, delivered to the
//! envelope backend in batches (see [`crate::outbox`]); only what the backend acked is
//! deleted.

use super::state::Gateway;
use super::store::GatewayOp;
use crate::metrics::labels;
use crate::outbox::{Delivery, Outbox};
use crate::rpc::{Peer, Rpc};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use sut_core::passthrough::OpenEntry;
use tokio::sync::Notify;

const BATCH: usize = 1024;

/// The gateway's pass-through queue, as its forwarder delivers it.
struct OpenQueue(Arc<Gateway>);

impl Outbox for OpenQueue {
    type Item = (u64, OpenEntry);

    fn take(&self, max: usize) -> Vec<(u64, OpenEntry)> {
        self.0
            .queue
            .lock()
            .map(|mut q| q.next_batch(max))
            .unwrap_or_default()
    }

    fn key(item: &(u64, OpenEntry)) -> u64 {
        item.0
    }

    /// A session may be finishing an open that still has to join the queue.
    fn producers_done(&self) -> bool {
        self.0.sessions.load(Ordering::Acquire) == 0
    }

    fn arrivals(&self) -> &Notify {
        &self.0.queue_notify
    }

    fn request(&self, entries: Vec<(u64, OpenEntry)>) -> Rpc {
        Rpc::RecordOpens {
            gateway: self.0.id,
            entries,
        }
    }

    fn acked(reply: Rpc) -> Option<Vec<u64>> {
        match reply {
            Rpc::OpensRecorded { seqs } => Some(seqs),
            _ => None,
        }
    }

    async fn settle(&self, acked: Vec<u64>) {
        let gw = &self.0;
        let n = acked.len() as u64;
        let removed = gw.committer.submit(GatewayOp::Ack(acked.clone())).await;
        if let Ok(mut q) = gw.queue.lock() {
            if removed.is_ok() {
                q.acked(&acked);
            }
            gw.metrics.queue_depth.set(q.depth() as i64);
        }
        gw.metrics
            .forwarded
            .get_or_create(&labels(&[("result", "acked")]))
            .inc_by(n);
    }

    fn release(&self, keys: &[u64]) {
        if let Ok(mut q) = self.0.queue.lock() {
            q.failed(keys);
        }
    }

    fn count_refused(&self, result: &'static str) {
        self.0
            .metrics
            .forwarded
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }
}

pub(super) async fn run(gw: Arc<Gateway>, backend: Peer, pace: Duration, drain_timeout: Duration) {
    let shutdown = gw.shutdown.clone();
    let queue = Arc::new(OpenQueue(gw));
    let how = Delivery {
        batch: BATCH,
        pace,
        drain_timeout,
    };
    crate::outbox::deliver(queue, backend, how, shutdown).await;
}
