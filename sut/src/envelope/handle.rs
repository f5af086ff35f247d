//! The backend's RPC handlers: recording gateways' opens (the back rejects the front
//! with `Busy` past its in-flight bound) and the shared limit view's sync; shares and
//! grabs go to `splits`, reservations to `reservations`.

use super::state::Backend;
use super::store::{Applied, EnvelopeOp, Recorded};
use crate::metrics::labels;
use crate::rpc::Rpc;
use sut_core::limit_view::Issued;

async fn sync_issued(b: &Backend, publish: Vec<Issued>, since: u64) -> Rpc {
    let mut log = b.issuance.lock().await;
    let fresh = log.fresh(&publish);
    if !fresh.is_empty() {
        let start = log.len() as u64;
        let positioned = fresh
            .iter()
            .enumerate()
            .map(|(i, r)| (start + i as u64, *r))
            .collect();
        if let Err(e) = b.committer.submit(EnvelopeOp::Publish(positioned)).await {
            return Rpc::Failed {
                message: e.to_string(),
            };
        }
        log.append(&fresh);
    }
    let (records, next) = log.since(since, sut_core::limit_view::SYNC_PAGE);
    Rpc::IssuedSince { records, next }
}

pub(super) async fn handle(b: &Backend, request: Rpc) -> Rpc {
    let (gateway, entries) = match request {
        Rpc::SyncIssued { publish, since, .. } => return sync_issued(b, publish, since).await,
        Rpc::Split { requests } => return super::splits::handle(b, requests).await,
        Rpc::Reserve { requests } => return super::reservations::handle(b, requests).await,
        Rpc::RecordOpens { gateway, entries } => (gateway, entries),
        _ => {
            return Rpc::Failed {
                message: "the envelope backend takes RecordOpens, Split, Reserve and SyncIssued"
                    .into(),
            }
        }
    };
    // The back rejects the front: refuse early and cheaply when full, the gateway's
    // queue holds the opens meanwhile.
    if b.in_flight.inc() >= b.max_in_flight as i64 {
        b.in_flight.dec();
        b.recorded
            .get_or_create(&labels(&[("result", "busy")]))
            .inc();
        return Rpc::Busy { retry_after_ms: 50 };
    }
    // What the reply and the expiry queue need of each entry, kept apart from the batch
    // the store takes: its queue sequence and its open's show time.
    let seqs: Vec<(u64, i64)> = entries.iter().map(|(s, e)| (*s, e.opened_ms)).collect();
    let result = b
        .committer
        .submit(EnvelopeOp::Record { gateway, entries })
        .await;
    b.in_flight.dec();
    match result {
        Ok(Applied::Recorded(verdicts)) => {
            let mut acked = Vec::with_capacity(seqs.len());
            let mut pots = Vec::new();
            let mut names = Vec::with_capacity(seqs.len());
            if let Ok(mut outbox) = b.outbox.lock() {
                for ((seq, opened_ms), v) in seqs.into_iter().zip(verdicts) {
                    let name = match v {
                        Recorded::New(credit) => {
                            outbox.insert(credit.envelope_id, credit);
                            pots.push((opened_ms + b.split_ttl_ms, credit.envelope_id));
                            "new"
                        }
                        Recorded::Duplicate => "duplicate",
                        Recorded::Conflict => "conflict",
                    };
                    names.push(name);
                    // A conflict is never acked: it stays in the gateway's queue, visible.
                    if v != Recorded::Conflict {
                        acked.push(seq);
                    }
                }
                b.outbox_depth.set(outbox.len() as i64);
            }
            crate::metrics::count_each(&b.recorded, "result", names);
            if let Ok(mut q) = b.expiry.lock() {
                for (at, id) in pots {
                    q.push(at, id);
                }
            }
            b.outbox_notify.notify_one();
            Rpc::OpensRecorded { seqs: acked }
        }
        Ok(_) => Rpc::Failed {
            message: "the store answered a record with another kind of result".into(),
        },
        Err(e) => Rpc::Failed {
            message: e.to_string(),
        },
    }
}
