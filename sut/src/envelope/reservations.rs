//! The backend as every user's owner for strict limits: gateways reserve each envelope
//! before issuing it, and the backend grants within the limits in one durable
//! transaction per batch (see `sut_core::reservations`). Past its in-flight bound it
//! answers `Busy`, and the gateway turns the win into a greeting.

use super::state::Backend;
use super::store::{Applied, EnvelopeOp};
use crate::metrics::labels;
use crate::rpc::Rpc;
use sut_wire::issued::Issued;
use sut_wire::reserve::ReserveAnswer;

/// Every result label of `sut_envelope_reservations`.
pub(super) const RESULTS: [&str; 4] = ["granted", "refused", "busy", "failed"];

pub(super) async fn handle(b: &Backend, requests: Vec<Issued>) -> Rpc {
    let count = |result: &str, n: usize| {
        b.reservations
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(n as u64);
    };
    if b.in_flight.inc() >= b.max_in_flight as i64 {
        b.in_flight.dec();
        count("busy", requests.len());
        return Rpc::Busy { retry_after_ms: 50 };
    }
    let n = requests.len();
    let result = b.committer.submit(EnvelopeOp::Reserve(requests)).await;
    b.in_flight.dec();
    match result {
        Ok(Applied::Reserved(answers)) => {
            let granted = answers
                .iter()
                .filter(|a| **a == ReserveAnswer::Granted)
                .count();
            count("granted", granted);
            count("refused", answers.len() - granted);
            Rpc::Reserved { answers }
        }
        Ok(_) => {
            count("failed", n);
            Rpc::Failed {
                message: "the store answered a reservation with another kind of result".into(),
            }
        }
        Err(e) => {
            count("failed", n);
            Rpc::Failed {
                message: e.to_string(),
            }
        }
    }
}
