//! The agent's part of split envelopes: a session's share or grab goes to the envelope
//! backend, which alone may deal a pot (it serializes grabs per pot). Requests from
//! all sessions are batched into RPCs (a few in flight at once, see [`super::batcher`]),
//! so a rush of grabs costs the backend one transaction per batch, not one per grab;
//! an answer that does not come within `--backend-deadline` is `Unavailable`.
//!
//! The gateway answers what it can alone (a forged token, a share to oneself or to a
//! non-friend, a friend list out of bounds) without asking the backend: bad input
//! costs other users nothing.

pub(super) mod agent;

use super::state::Gateway;
use bytes::Bytes;
use std::sync::Arc;
use sut_wire::protocol::{ErrorCode, Frame, MAX_SHARE_FRIENDS};
use sut_wire::split::{SplitAnswer, SplitRequest};
use sut_wire::token::{EnvelopeToken, TokenError};

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
        .all(|f| sut_core::friends::are_friends(user, *f))
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
            gw.split.count("share", Ok(false));
            Frame::ShareReply {
                code: 0,
                share_id: pot.envelope_id,
                parts: pot.parts.min(u8::MAX as u32) as u8,
                pot_cents: pot.cents.min(u32::MAX as u64) as u32,
                expires_in_ms: (pot.expires_ms - gw.show_ms()).clamp(0, u32::MAX as i64) as u32,
            }
        }
        Ok(SplitAnswer::Refused(e)) => refused(e.code()),
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
        Ok(SplitAnswer::Grabbed { cents, repeat }) => {
            gw.split.count("grab", Ok(repeat));
            Frame::GrabReply {
                code: 0,
                amount_cents: cents.min(u32::MAX as u64) as u32,
            }
        }
        Ok(SplitAnswer::Refused(e)) => refused(e.code()),
        Ok(SplitAnswer::Shared { .. }) | Err(_) => refused(ErrorCode::Unavailable),
    }
}

/// Sends the sessions' requests to the backend, a batch per RPC, until shutdown. If the
/// backend is down or busy, the batch is answered `Unavailable` (the client retries):
/// unlike an open, a share or grab was not promised yet, so nothing is queued.
/// Sends the sessions' shares and grabs to the backend in batches until shutdown.
pub(super) async fn run(gw: Arc<Gateway>, peers: Vec<crate::rpc::Peer>) {
    let shutdown = gw.shutdown.clone();
    gw.split.batcher.run(peers, shutdown).await;
}
