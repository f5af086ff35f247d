//! The sessions' way to the backend for shares and grabs (batched, see
//! [`crate::gateway::batcher`]), and the count of every share and grab by how it ended.

use crate::gateway::batcher::{Batched, Batcher};
use crate::metrics::{labels, Counters};
use crate::rpc::Rpc;
use prometheus_client::registry::Registry;
use std::time::Duration;
use sut_wire::protocol::ErrorCode;
use sut_wire::split::{SplitAnswer, SplitRequest};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests per RPC at most.
const BATCH: usize = 1024;

impl Batched for SplitRequest {
    type Answer = SplitAnswer;
    fn request(requests: Vec<SplitRequest>) -> Rpc {
        Rpc::Split { requests }
    }
    fn answers(reply: Rpc) -> Option<Vec<SplitAnswer>> {
        match reply {
            Rpc::SplitDone { answers } => Some(answers),
            _ => None,
        }
    }
}

/// The sessions' way to the backend for shares and grabs, and their counts.
pub(crate) struct SplitAgent {
    pub(super) batcher: Batcher<SplitRequest>,
    /// `sut_gateway_splits{request, result}`: every share and grab by how it ended.
    results: Counters,
}

/// Codes a share may end with, besides "ok".
const SHARE_CODES: [ErrorCode; 10] = [
    ErrorCode::TokenForged,
    ErrorCode::TokenNotYours,
    ErrorCode::BadFriendList,
    ErrorCode::ShareToSelf,
    ErrorCode::NotFriend,
    ErrorCode::AlreadyShared,
    ErrorCode::NoSuchShare,
    ErrorCode::Expired,
    ErrorCode::Recycled,
    ErrorCode::Unavailable,
];
/// Codes a grab may end with, besides "ok".
const GRAB_CODES: [ErrorCode; 8] = [
    ErrorCode::NoSuchShare,
    ErrorCode::NotShared,
    ErrorCode::OwnShare,
    ErrorCode::NotInvited,
    ErrorCode::NoPartsLeft,
    ErrorCode::Expired,
    ErrorCode::Recycled,
    ErrorCode::Unavailable,
];

impl SplitAgent {
    /// `deadline`: how long a share or grab waits for the backend's answer.
    pub fn register(registry: &mut Registry, deadline: Duration) -> SplitAgent {
        let results = Counters::default();
        for (request, codes) in [("share", &SHARE_CODES[..]), ("grab", &GRAB_CODES[..])] {
            let answered = if request == "grab" {
                &["ok", "repeat"][..]
            } else {
                &["ok"][..]
            };
            for result in answered
                .iter()
                .copied()
                .chain(codes.iter().map(|c| c.name()))
            {
                let _ = results.get_or_create(&labels(&[("request", request), ("result", result)]));
            }
        }
        registry.register(
            "sut_gateway_splits",
            "Shares and grabs answered, by request and result (ok or the refusal's code)",
            results.clone(),
        );
        SplitAgent {
            batcher: Batcher::new(BATCH, RPC_TIMEOUT, deadline),
            results,
        }
    }

    /// Counts an answer: `Ok(true)` is a repeat told its original answer again.
    pub(super) fn count(&self, request: &str, result: Result<bool, ErrorCode>) {
        let name = match result {
            Ok(false) => "ok",
            Ok(true) => "repeat",
            Err(c) => c.name(),
        };
        self.results
            .get_or_create(&labels(&[("request", request), ("result", name)]))
            .inc();
    }

    pub(super) async fn ask(&self, request: SplitRequest) -> Result<SplitAnswer, ErrorCode> {
        self.batcher.ask(request).await
    }
}
