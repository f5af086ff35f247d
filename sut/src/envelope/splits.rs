//! The backend's side of split envelopes, around the durable store
//! ([`super::split_store`]): answering gateways' shares and grabs (one transaction per
//! batch; a grab's credit joins the outbox like an open's) and recycling expired pots.

use super::state::Backend;
use super::store::{Applied, EnvelopeOp};
use crate::metrics::{labels, Counters};
use crate::rpc::Rpc;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use sut_core::split::SplitError;
use sut_wire::split::{SplitAnswer, SplitRequest};
use tokio::sync::watch;

/// Every (request, result) label pair of `sut_envelope_splits`, so each starts at 0.
pub(super) fn prefill(c: &Counters) {
    for request in ["share", "grab"] {
        for result in ["ok", "repeat", "busy"]
            .into_iter()
            .chain(SplitError::ALL.iter().map(|e| e.name()))
        {
            let _ = c.get_or_create(&labels(&[("request", request), ("result", result)]));
        }
    }
}

fn show_ms(b: &Backend) -> i64 {
    shellkit::clock::unix_ms() - b.show_start_ms
}

/// Shares and grabs from a gateway, dealt in one durable transaction; grabs' credits
/// join the outbox like opens'.
pub(super) async fn handle(b: &Backend, requests: Vec<SplitRequest>) -> Rpc {
    let kinds: Vec<&'static str> = requests
        .iter()
        .map(|r| match r {
            SplitRequest::Share { .. } => "share",
            SplitRequest::Grab { .. } => "grab",
        })
        .collect();
    if b.in_flight.inc() >= b.max_in_flight as i64 {
        b.in_flight.dec();
        for k in kinds {
            b.splits
                .get_or_create(&labels(&[("request", k), ("result", "busy")]))
                .inc();
        }
        return Rpc::Busy { retry_after_ms: 50 };
    }
    let requests = {
        let mut rng = rand::rng();
        requests
            .into_iter()
            .map(|r| (r, rng.random::<f64>()))
            .collect()
    };
    let result = b
        .committer
        .submit(EnvelopeOp::Split {
            requests,
            now_ms: show_ms(b),
            ttl_ms: b.split_ttl_ms,
        })
        .await;
    b.in_flight.dec();
    let done = match result {
        Ok(Applied::Split(done)) => done,
        Ok(_) => {
            return Rpc::Failed {
                message: "the store answered a split with another kind of result".into(),
            }
        }
        Err(e) => {
            return Rpc::Failed {
                message: e.to_string(),
            }
        }
    };
    let mut answers = Vec::with_capacity(done.len());
    let mut credited = false;
    if let Ok(mut outbox) = b.outbox.lock() {
        for ((answer, credit), kind) in done.into_iter().zip(kinds) {
            let result = match answer {
                SplitAnswer::Refused(e) => e.name(),
                SplitAnswer::Grabbed { repeat: true, .. } => "repeat",
                SplitAnswer::Grabbed { cents, .. } => {
                    b.grabbed_cents.inc_by(cents);
                    "ok"
                }
                SplitAnswer::Shared { .. } => "ok",
            };
            b.splits
                .get_or_create(&labels(&[("request", kind), ("result", result)]))
                .inc();
            if let Some(c) = credit {
                outbox.insert(c.envelope_id, c);
                credited = true;
            }
            answers.push(answer);
        }
        b.outbox_depth.set(outbox.len() as i64);
    }
    if credited {
        b.outbox_notify.notify_one();
    }
    Rpc::SplitDone { answers }
}

/// Recycles expired pots, a batch at a time, until shutdown; once more at shutdown, so
/// a clean stop leaves no expired pot unrecorded.
pub(super) async fn expire(b: Arc<Backend>, mut shutdown: watch::Receiver<bool>) {
    const BATCH: usize = 4096;
    loop {
        let stopping = *shutdown.borrow();
        loop {
            let now_ms = show_ms(&b);
            let due = b
                .expiry
                .lock()
                .map(|mut q| q.take_due(now_ms, BATCH))
                .unwrap_or_default();
            if due.is_empty() {
                break;
            }
            let op = EnvelopeOp::Expire {
                envelope_ids: due.clone(),
                now_ms,
                ttl_ms: b.split_ttl_ms,
            };
            match b.committer.submit(op).await {
                Ok(Applied::Expired(recycled)) => {
                    b.recycled_cents
                        .inc_by(recycled.iter().map(|(_, c)| c).sum::<u64>());
                }
                _ => {
                    // Not recorded: they wait for the next sweep.
                    if let Ok(mut q) = b.expiry.lock() {
                        q.put_back(&due, now_ms);
                    }
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
