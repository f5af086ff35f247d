//! The agent's cross-gateway limit sync (the third limit layer): publishes this
//! gateway's issuance records to the envelope backend and merges what every gateway
//! published into the shake core's shared view, every sync interval. If the backend is
//! down or slow, the records wait and the cookie and local table keep limiting.

use super::state::Gateway;
use crate::metrics::labels;
use crate::rpc::{Peer, Rpc};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use sut_core::limit_view::Issued;
use sut_core::passthrough::Backoff;

const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Records published per sync at most (the rest wait for the next one).
const PUBLISH_BATCH: usize = 20_000;

pub(super) async fn run(gw: Arc<Gateway>, mut backend: Peer, interval: Duration) {
    let mut since = 0u64;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut shutdown = gw.shutdown.clone();
    let mut delay = interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        let publish: Vec<Issued> = gw
            .to_publish
            .lock()
            .map(|mut p| {
                let n = p.len().min(PUBLISH_BATCH);
                p.drain(..n).collect()
            })
            .unwrap_or_default();
        let request = Rpc::SyncIssued {
            gateway: gw.id,
            publish: publish.clone(),
            since,
        };
        let reply = backend
            .call(request, RPC_TIMEOUT)
            .await
            .and_then(Result::ok);
        match reply {
            Some(Rpc::IssuedSince { records, next }) => {
                backoff.reset();
                let full_page = records.len() >= sut_core::limit_view::SYNC_PAGE;
                since = next;
                if let Ok(mut core) = gw.core.lock() {
                    let users = core.merge_view(&records);
                    gw.metrics.view_users.set(users as i64);
                }
                gw.metrics.syncs_ok.inc();
                // Catching up: a page came back full, or this publish was capped. (New
                // records arriving meanwhile wait for the next interval: during a round
                // there always are some, and syncing back to back would load both sides.)
                let capped = publish.len() >= PUBLISH_BATCH;
                delay = if full_page || capped {
                    Duration::ZERO
                } else {
                    interval
                };
            }
            _ => {
                // Put the records back in front; publish is idempotent, so a reply lost
                // after the backend recorded them costs nothing.
                if let Ok(mut p) = gw.to_publish.lock() {
                    let rest = std::mem::take(&mut *p);
                    *p = publish;
                    p.extend(rest);
                }
                gw.metrics
                    .syncs
                    .get_or_create(&labels(&[("result", "failed")]))
                    .inc();
                backend.reset();
                delay = backoff
                    .next_delay(rand::rng().random::<f64>())
                    .max(interval);
            }
        }
    }
}
