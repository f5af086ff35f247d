//! Strict per-user limits across gateways: before a win is issued, the agent reserves
//! it at the user's owner (the envelope backend; `sut_core::reservations` is the rule),
//! batched with other sessions' wins. A refusal (the user is at a limit elsewhere) or
//! no answer in time turns the win into a greeting: its id is skipped, never reused.

use super::batcher::Batched;
use super::state::Gateway;
use crate::rpc::{Peer, Rpc};
use std::sync::Arc;
use std::time::Duration;
use sut_core::shake::{Reason, ShakeDecision};
use sut_wire::issued::Issued;
use sut_wire::protocol::Outcome;
use sut_wire::reserve::ReserveAnswer;

/// How long a win may wait for its reservation: a greeting is better than a late reply.
pub(super) const RESERVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reservations per RPC at most.
pub(super) const BATCH: usize = 1024;

impl Batched for Issued {
    type Answer = ReserveAnswer;
    fn request(requests: Vec<Issued>) -> Rpc {
        Rpc::Reserve { requests }
    }
    fn answers(reply: Rpc) -> Option<Vec<ReserveAnswer>> {
        match reply {
            Rpc::Reserved { answers } => Some(answers),
            _ => None,
        }
    }
}

/// The decision as it may be issued: a win is kept only if the owner reserved it.
pub(super) async fn confirm(gw: &Gateway, user: u64, decision: ShakeDecision) -> ShakeDecision {
    let Some(record) = decision.issued else {
        return decision;
    };
    if !gw.strict_limits {
        return decision;
    }
    let (known, reason) = match gw.reserve.ask(record.issued()).await {
        Ok(ReserveAnswer::Granted) => return decision,
        Ok(ReserveAnswer::Refused { sponsors }) => (sponsors, Reason::LimitElsewhere),
        Err(_) => (Vec::new(), Reason::OwnerUnavailable),
    };
    let show_ms = gw.show_ms();
    match gw.core.lock() {
        Ok(mut core) => core.withdraw(decision, show_ms, user, &known, reason),
        // The core is unusable: whatever else happens, nothing unreserved is issued.
        Err(_) => ShakeDecision {
            outcome: Outcome::Nothing,
            issued: None,
            reason,
            ..decision
        },
    }
}

/// Sends the sessions' reservations to the backend in batches until shutdown.
pub(super) async fn run(gw: Arc<Gateway>, peers: Vec<Peer>) {
    let shutdown = gw.shutdown.clone();
    gw.reserve.run(peers, shutdown).await;
}
