//! The sessions' way to the split forwarder: a bounded channel of requests, each with
//! its answer's way back, and the count of every share and grab by how it ended.

use crate::metrics::{labels, Counters};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;
use sut_wire::protocol::ErrorCode;
use sut_wire::split::{SplitAnswer, SplitRequest};
use tokio::sync::{mpsc, oneshot};

pub(super) const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests per RPC at most.
pub(super) const BATCH: usize = 1024;

pub(super) type Job = (
    SplitRequest,
    oneshot::Sender<Result<SplitAnswer, ErrorCode>>,
);

/// The sessions' way to the backend for shares and grabs, and their counts.
pub(crate) struct SplitAgent {
    tx: mpsc::Sender<Job>,
    pub(super) rx: Mutex<Option<mpsc::Receiver<Job>>>,
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
const GRAB_CODES: [ErrorCode; 9] = [
    ErrorCode::NoSuchShare,
    ErrorCode::NotShared,
    ErrorCode::OwnShare,
    ErrorCode::NotInvited,
    ErrorCode::AlreadyGrabbed,
    ErrorCode::NoPartsLeft,
    ErrorCode::Expired,
    ErrorCode::Recycled,
    ErrorCode::Unavailable,
];

impl SplitAgent {
    pub fn register(registry: &mut Registry) -> SplitAgent {
        let (tx, rx) = mpsc::channel(BATCH * 8);
        let results = Counters::default();
        for (request, codes) in [("share", &SHARE_CODES[..]), ("grab", &GRAB_CODES[..])] {
            for result in std::iter::once("ok").chain(codes.iter().map(|c| c.name())) {
                let _ = results.get_or_create(&labels(&[("request", request), ("result", result)]));
            }
        }
        registry.register(
            "sut_gateway_splits",
            "Shares and grabs answered, by request and result (ok or the refusal's code)",
            results.clone(),
        );
        SplitAgent {
            tx,
            rx: Mutex::new(Some(rx)),
            results,
        }
    }

    pub(super) fn count(&self, request: &str, result: Result<(), ErrorCode>) {
        let name = result.err().map(|c| c.name()).unwrap_or("ok");
        self.results
            .get_or_create(&labels(&[("request", request), ("result", name)]))
            .inc();
    }

    pub(super) async fn ask(&self, request: SplitRequest) -> Result<SplitAnswer, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((request, tx))
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        rx.await.map_err(|_| ErrorCode::Unavailable)?
    }
}
