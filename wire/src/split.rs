//! Split envelopes on the internal wire: the pot an opened envelope carries, the shares
//! and grabs a gateway forwards to the envelope backend, its answers and refusals, and
//! the id space of grab credits that payment and the audit read.

use crate::protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The split parts an opened envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pot {
    pub envelope_id: u64,
    pub owner: u64,
    pub cents: u64,
    pub parts: u32,
    /// Show time after which nothing more is shared or grabbed: the rest is recycled.
    pub expires_ms: i64,
}

/// Why a share or grab was refused; each has its own code on the wire and its own
/// count, and none moves money.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitError {
    #[error("no such envelope pot")]
    NoSuchPot,
    #[error("only the envelope's opener may share it")]
    NotOwner,
    #[error("a pot is shared once")]
    AlreadyShared,
    #[error("a user cannot share to themselves")]
    ShareToSelf,
    #[error("shared to someone who is not a friend")]
    NotFriend,
    #[error("share to at least one friend")]
    NoFriends,
    #[error("the pot has not been shared")]
    NotShared,
    #[error("the opener cannot grab their own share")]
    OwnShare,
    #[error("this user was not among those it was shared to")]
    NotInvited,
    #[error("every part has been grabbed")]
    NoPartsLeft,
    #[error("the pot expired")]
    Expired,
    #[error("the pot was recycled")]
    Recycled,
}

impl SplitError {
    /// Every refusal, for metrics that list each one from the start.
    pub const ALL: [SplitError; 12] = {
        use SplitError::*;
        [
            NoSuchPot,
            NotOwner,
            AlreadyShared,
            ShareToSelf,
            NotFriend,
            NoFriends,
            NotShared,
            OwnShare,
            NotInvited,
            NoPartsLeft,
            Expired,
            Recycled,
        ]
    };

    /// A short snake_case name for metrics labels.
    pub fn name(self) -> &'static str {
        use SplitError::*;
        match self {
            NoSuchPot => "no_such_pot",
            NotOwner => "not_owner",
            AlreadyShared => "already_shared",
            ShareToSelf => "share_to_self",
            NotFriend => "not_friend",
            NoFriends => "no_friends",
            NotShared => "not_shared",
            OwnShare => "own_share",
            NotInvited => "not_invited",
            NoPartsLeft => "no_parts_left",
            Expired => "expired",
            Recycled => "recycled",
        }
    }
}

/// Credits of grabs live in their own id space beside envelope ids (which stay below
/// 2^60): the top bit, then the envelope id, then the part's index. Payment keys its
/// idempotency on this id like any other, so a grab is credited once.
const GRAB_BIT: u64 = 1 << 63;
const PART_BITS: u32 = 3;
/// Envelope ids at or past this cannot carry a pot (their grab ids would collide).
pub const MAX_POT_ENVELOPE_ID: u64 = 1 << 60;

pub fn grab_credit_id(envelope_id: u64, part: u32) -> u64 {
    GRAB_BIT | (envelope_id << PART_BITS) | u64::from(part)
}

/// The envelope id and part index of a grab's credit id; `None` for an open's credit.
pub fn grab_of_credit(credit_id: u64) -> Option<(u64, u32)> {
    (credit_id & GRAB_BIT != 0).then_some((
        (credit_id & !GRAB_BIT) >> PART_BITS,
        (credit_id & ((1 << PART_BITS) - 1)) as u32,
    ))
}

/// A share or grab as the gateway forwards it (the gateway checked the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitRequest {
    Share {
        envelope_id: u64,
        user: u64,
        friends: Vec<u64>,
    },
    Grab {
        envelope_id: u64,
        user: u64,
    },
}

/// What the backend answers a [`SplitRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitAnswer {
    Shared {
        pot: Pot,
    },
    /// The part dealt; `repeat` when this friend had grabbed it before (the original
    /// answer again, no money moved).
    Grabbed {
        cents: u64,
        repeat: bool,
    },
    Refused(SplitError),
}

impl SplitError {
    /// The client protocol's code for this refusal.
    pub fn code(self) -> ErrorCode {
        match self {
            SplitError::NoSuchPot => ErrorCode::NoSuchShare,
            SplitError::NotOwner => ErrorCode::TokenNotYours,
            SplitError::AlreadyShared => ErrorCode::AlreadyShared,
            SplitError::ShareToSelf => ErrorCode::ShareToSelf,
            SplitError::NotFriend => ErrorCode::NotFriend,
            SplitError::NoFriends => ErrorCode::BadFriendList,
            SplitError::NotShared => ErrorCode::NotShared,
            SplitError::OwnShare => ErrorCode::OwnShare,
            SplitError::NotInvited => ErrorCode::NotInvited,
            SplitError::NoPartsLeft => ErrorCode::NoPartsLeft,
            SplitError::Expired => ErrorCode::Expired,
            SplitError::Recycled => ErrorCode::Recycled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grab_credit_ids_never_meet_envelope_ids() {
        for id in [0u64, 1, (7 << 40) | 12345, MAX_POT_ENVELOPE_ID - 1] {
            for part in 0..5 {
                let c = grab_credit_id(id, part);
                assert!(c >= GRAB_BIT, "an envelope id is below 2^63");
                assert_eq!(grab_of_credit(c), Some((id, part)));
            }
            assert_eq!(grab_of_credit(id), None);
        }
    }
}
