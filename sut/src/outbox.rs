//! The durable outbox's delivery loop, one for both hops that must never lose work:
//! gateway queue -> envelope backend (opens) and backend outbox -> payment (credits).
//!
//! Each turn takes a batch, sends it in one request, and on the peer's ack deletes the
//! acked entries durably before forgetting them; a busy peer or a failure is retried
//! with backoff and jitter, and a failure also drops the connection. On shutdown it
//! keeps delivering until the outbox is empty and nothing can add to it, or until the
//! drain timeout ([`sut_core::drain`] decides); what is left stays durable for the next
//! start. What an outbox holds, how it is asked for and how an ack is made durable are
//! the [`Outbox`] implementation's.

use crate::rpc::{Peer, Rpc};
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sut_core::drain::{Drain, Turn};
use sut_core::passthrough::{Backoff, Pace};
use tokio::sync::{watch, Notify};

/// How long one delivery may take before it counts as failed.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// One durable outbox, as its delivery loop sees it.
pub trait Outbox: Send + Sync + 'static {
    type Item: Send;
    /// Up to `max` entries to deliver now; they stay in the outbox until settled.
    fn take(&self, max: usize) -> Vec<Self::Item>;
    /// The key the peer acks an entry by.
    fn key(item: &Self::Item) -> u64;
    /// Whether nothing can add entries any more (checked only while draining).
    fn producers_done(&self) -> bool;
    /// Woken when entries arrive.
    fn arrivals(&self) -> &Notify;
    /// The request that delivers `batch`.
    fn request(&self, batch: Vec<Self::Item>) -> Rpc;
    /// The keys a reply acks, or `None` if it is not an ack.
    fn acked(reply: Rpc) -> Option<Vec<u64>>;
    /// Deletes acked entries, durably first: if that fails they are delivered again
    /// and the peer's idempotency absorbs the repeat.
    fn settle(&self, acked: Vec<u64>) -> impl Future<Output = ()> + Send;
    /// The delivery of these keys is over (acked or not): unacked ones may be taken again.
    fn release(&self, keys: &[u64]);
    /// Counts a failed delivery: `busy` (the peer refused, come back later) or `failed`.
    fn count_refused(&self, result: &'static str);
}

/// How a delivery loop runs: entries per delivery at most, deliveries at most one per
/// `pace` ([`Pace`]), and how long it keeps delivering after the stop signal.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub batch: usize,
    pub pace: Duration,
    pub drain_timeout: Duration,
}

/// Delivers `outbox` to `peer` until `shutdown` and then drained (or out of time).
pub async fn deliver<O: Outbox>(
    outbox: Arc<O>,
    mut peer: Peer,
    how: Delivery,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
    let mut drain = Drain::new(how.drain_timeout);
    let mut pace = Pace::new(how.pace);
    let batch = how.batch;
    loop {
        let mut items = outbox.take(batch);
        let shutting_down = *shutdown.borrow();
        let done = outbox.producers_done();
        match drain.turn(Instant::now(), shutting_down, items.is_empty(), done) {
            Turn::Stop => {
                outbox.release(&items.iter().map(O::key).collect::<Vec<_>>());
                return;
            }
            Turn::Idle => {
                idle(&drain, outbox.arrivals(), &mut shutdown).await;
                continue;
            }
            Turn::Work => {}
        }
        // Too soon after the last delivery: what arrives meanwhile joins this one. A
        // full batch goes at once, and while stopping everything does (a stop ends the
        // wait).
        let wait = pace.wait(Instant::now(), items.len() >= batch);
        if !wait.is_zero() && !shutting_down {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            items.extend(outbox.take(batch - items.len()));
        }
        let keys: Vec<u64> = items.iter().map(O::key).collect();
        pace.started(Instant::now());
        let request = outbox.request(items);
        let reply = peer.call(request, RPC_TIMEOUT).await;
        let refused = match reply {
            Some(Ok(Rpc::Busy { .. })) => Some("busy"),
            Some(Ok(reply)) => match O::acked(reply) {
                Some(acked) => {
                    backoff.reset();
                    outbox.settle(acked).await;
                    None
                }
                None => Some("failed"),
            },
            Some(Err(_)) | None => Some("failed"),
        };
        outbox.release(&keys);
        if let Some(result) = refused {
            outbox.count_refused(result);
            if result == "failed" {
                peer.reset();
            }
            let jitter = rand::rng().random::<f64>();
            tokio::time::sleep(backoff.next_delay(jitter)).await;
        }
    }
}

/// Waits for new work, a tick, or (before draining) the stop signal. While draining
/// the tick is short, since whether the producers are done is polled; before, it is
/// only a safety net, kept long so that an idle process stays asleep.
async fn idle(drain: &Drain, work: &Notify, shutdown: &mut watch::Receiver<bool>) {
    let draining = drain.draining();
    let tick = if draining {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    tokio::select! {
        _ = work.notified() => {}
        _ = tokio::time::sleep(tick) => {}
        _ = async {
            // Once draining, only new work or the clock wakes the loop.
            if draining {
                std::future::pending::<()>().await
            } else {
                let _ = shutdown.changed().await;
            }
        } => {}
    }
}
