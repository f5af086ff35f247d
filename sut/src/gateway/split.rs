//! The agent's part of split envelopes: a session's share or grab goes to the envelope
//! backend, which alone may deal a pot (it serializes grabs per pot). Requests from
//! all sessions are batched into one RPC at a time, as the forwarder batches opens, so
//! a rush of grabs costs the backend one transaction per batch, not one per grab.
//!
//! The gateway answers what it can alone (a forged token, a share to oneself or to a
//! non-friend, a friend list out of bounds) without asking the backend: bad input
//! costs other users nothing.

use super::Gateway;
use crate::envelope::split_store::{SplitAnswer, SplitRequest};
use crate::metrics::{labels, Counters};
use crate::protocol::{ErrorCode, Frame, MAX_SHARE_FRIENDS};
use crate::rpc::{self, Rpc, RpcConn};
use crate::split::SplitError;
use crate::token::{EnvelopeToken, TokenError};
use bytes::Bytes;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests per RPC at most.
const BATCH: usize = 1024;

type Job = (
    SplitRequest,
    oneshot::Sender<Result<SplitAnswer, ErrorCode>>,
);

/// The sessions' way to the backend for shares and grabs, and their counts.
pub(crate) struct SplitAgent {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    /// `sut_gateway_splits{request, result}`: every share and grab by how it ended.
    results: Counters,
}

/// The wire code for a refusal the backend's split rules gave.
pub fn refusal_code(e: SplitError) -> ErrorCode {
    match e {
        SplitError::NoSuchPot => ErrorCode::NoSuchShare,
        SplitError::NotOwner => ErrorCode::TokenNotYours,
        SplitError::AlreadyShared => ErrorCode::AlreadyShared,
        SplitError::ShareToSelf => ErrorCode::ShareToSelf,
        SplitError::NotFriend => ErrorCode::NotFriend,
        SplitError::NoFriends => ErrorCode::BadFriendList,
        SplitError::NotShared => ErrorCode::NotShared,
        SplitError::OwnShare => ErrorCode::OwnShare,
        SplitError::NotInvited => ErrorCode::NotInvited,
        SplitError::AlreadyGrabbed => ErrorCode::AlreadyGrabbed,
        SplitError::NoPartsLeft => ErrorCode::NoPartsLeft,
        SplitError::Expired => ErrorCode::Expired,
        SplitError::Recycled => ErrorCode::Recycled,
    }
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

    fn count(&self, request: &str, result: Result<(), ErrorCode>) {
        let name = result.err().map(|c| c.name()).unwrap_or("ok");
        self.results
            .get_or_create(&labels(&[("request", request), ("result", name)]))
            .inc();
    }

    async fn ask(&self, request: SplitRequest) -> Result<SplitAnswer, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((request, tx))
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        rx.await.map_err(|_| ErrorCode::Unavailable)?
    }
}

/// A session's `Share`.
pub(super) async fn share(gw: &Gateway, user: u64, token: Bytes, friends: Vec<u64>) -> Frame {
    let refused = |code: ErrorCode| {
        gw.split.count("share", Err(code));
        Frame::ShareReply {
            code: code as u16,
            share_id: 0,
            parts: 0,
            pot_cents: 0,
            expires_in_ms: 0,
        }
    };
    let token = match EnvelopeToken::open(&token, user, &gw.key) {
        Ok(t) => t,
        Err(TokenError::Forged) => return refused(ErrorCode::TokenForged),
        Err(TokenError::NotYours) => return refused(ErrorCode::TokenNotYours),
    };
    if friends.is_empty() || friends.len() > MAX_SHARE_FRIENDS {
        return refused(ErrorCode::BadFriendList);
    }
    if friends.contains(&user) {
        return refused(ErrorCode::ShareToSelf);
    }
    if !friends
        .iter()
        .all(|f| crate::friends::are_friends(user, *f))
    {
        return refused(ErrorCode::NotFriend);
    }
    let request = SplitRequest::Share {
        envelope_id: token.envelope_id,
        user,
        friends,
    };
    match gw.split.ask(request).await {
        Ok(SplitAnswer::Shared { pot }) => {
            gw.split.count("share", Ok(()));
            Frame::ShareReply {
                code: 0,
                share_id: pot.envelope_id,
                parts: pot.parts.min(u8::MAX as u32) as u8,
                pot_cents: pot.cents.min(u32::MAX as u64) as u32,
                expires_in_ms: (pot.expires_ms - gw.show_ms()).clamp(0, u32::MAX as i64) as u32,
            }
        }
        Ok(SplitAnswer::Refused(e)) => refused(refusal_code(e)),
        Ok(SplitAnswer::Grabbed { .. }) | Err(_) => refused(ErrorCode::Unavailable),
    }
}

/// A session's `Grab`.
pub(super) async fn grab(gw: &Gateway, user: u64, share_id: u64) -> Frame {
    let refused = |code: ErrorCode| {
        gw.split.count("grab", Err(code));
        Frame::GrabReply {
            code: code as u16,
            amount_cents: 0,
        }
    };
    let request = SplitRequest::Grab {
        envelope_id: share_id,
        user,
    };
    match gw.split.ask(request).await {
        Ok(SplitAnswer::Grabbed { cents }) => {
            gw.split.count("grab", Ok(()));
            Frame::GrabReply {
                code: 0,
                amount_cents: cents.min(u32::MAX as u64) as u32,
            }
        }
        Ok(SplitAnswer::Refused(e)) => refused(refusal_code(e)),
        Ok(SplitAnswer::Shared { .. }) | Err(_) => refused(ErrorCode::Unavailable),
    }
}

/// Sends the sessions' requests to the backend, a batch per RPC, until shutdown. If the
/// backend is down or busy, the batch is answered `Unavailable` (the client retries):
/// unlike an open, a share or grab was not promised yet, so nothing is queued.
pub(super) async fn run(gw: Arc<Gateway>, backend: String) {
    let Some(mut rx) = gw.split.rx.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let mut conn: Option<RpcConn> = None;
    let mut shutdown = gw.shutdown.clone();
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { return };
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<SplitRequest>, Vec<_>) = jobs.into_iter().unzip();
        let answer = rpc::call_on(&mut conn, &backend, Rpc::Split { requests }, RPC_TIMEOUT)
            .await
            .and_then(Result::ok);
        match answer {
            Some(Rpc::SplitDone { answers }) if answers.len() == replies.len() => {
                for (reply, a) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(a));
                }
            }
            other => {
                if !matches!(other, Some(Rpc::Busy { .. })) {
                    conn = None;
                }
                for reply in replies {
                    let _ = reply.send(Err(ErrorCode::Unavailable));
                }
            }
        }
    }
}
