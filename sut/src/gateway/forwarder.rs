//! The agent's forwarder: delivers the pass-through queue to the envelope backend in
//! batches, deletes only what the backend acked, and retries with backoff and jitter.

use super::store::GatewayOp;
use super::Gateway;
use crate::drain::{Drain, Turn};
use crate::metrics::labels;
use crate::passthrough::Backoff;
use crate::rpc::{self, Rpc, RpcConn};
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const BATCH: usize = 1024;
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(gw: Arc<Gateway>, backend: String, drain_timeout: Duration) {
    let mut conn: Option<RpcConn> = None;
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
    let mut shutdown = gw.shutdown.clone();
    let mut drain = Drain::new(drain_timeout);
    loop {
        let batch = gw
            .queue
            .lock()
            .map(|mut q| q.next_batch(BATCH))
            .unwrap_or_default();
        let sessions_done = gw.sessions.load(Ordering::Acquire) == 0;
        let shutting_down = *shutdown.borrow();
        match drain.turn(
            Instant::now(),
            shutting_down,
            batch.is_empty(),
            sessions_done,
        ) {
            Turn::Stop => {
                if let Ok(mut q) = gw.queue.lock() {
                    q.failed(&batch.iter().map(|(s, _)| *s).collect::<Vec<_>>());
                }
                return;
            }
            Turn::Idle => {
                drain.idle(&gw.queue_notify, &mut shutdown).await;
                continue;
            }
            Turn::Work => {}
        }
        let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
        let delivered = deliver(&gw, &mut conn, &backend, batch).await;
        match delivered {
            Some(acked) => {
                backoff.reset();
                // Delete durably first; if that fails the entries are re-sent later and
                // the backend's idempotency absorbs the repeat.
                let removed = gw.committer.submit(GatewayOp::Ack(acked.clone())).await;
                if let Ok(mut q) = gw.queue.lock() {
                    if removed.is_ok() {
                        q.acked(&acked);
                    }
                    q.failed(&seqs);
                    gw.metrics.queue_depth.set(q.depth() as i64);
                }
                gw.metrics
                    .forwarded
                    .get_or_create(&labels(&[("result", "acked")]))
                    .inc_by(acked.len() as u64);
            }
            None => {
                if let Ok(mut q) = gw.queue.lock() {
                    q.failed(&seqs);
                }
                let jitter = rand::rng().random::<f64>();
                tokio::time::sleep(backoff.next_delay(jitter)).await;
            }
        }
    }
}

/// One delivery attempt; the acked sequences, or None to retry later.
async fn deliver(
    gw: &Gateway,
    conn: &mut Option<RpcConn>,
    backend: &str,
    entries: Vec<(u64, crate::passthrough::OpenEntry)>,
) -> Option<Vec<u64>> {
    let request = Rpc::RecordOpens {
        gateway: gw.id,
        entries,
    };
    match rpc::call_on(conn, backend, request, RPC_TIMEOUT).await? {
        Ok(Rpc::OpensRecorded { seqs }) => Some(seqs),
        Ok(Rpc::Busy { .. }) => {
            gw.metrics
                .forwarded
                .get_or_create(&labels(&[("result", "busy")]))
                .inc();
            None
        }
        _ => {
            gw.metrics
                .forwarded
                .get_or_create(&labels(&[("result", "failed")]))
                .inc();
            *conn = None;
            None
        }
    }
}
