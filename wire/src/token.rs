//! The envelope token: proof, signed by the issuing gateway, that this user won this envelope.
//!
//! The open path's local business logic ("is this envelope this user's?") is a signature
//! check plus a user comparison, so an open needs no network before the user is answered.

use crate::signing::{SigningKey, MAC_LEN};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

const TAG: &[u8] = b"envelope-token/v1";
const BODY_LEN: usize = 8 + 8 + 4 + 2 + 4 + 2;

/// Everything a token binds together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeToken {
    pub user: u64,
    pub envelope_id: u64,
    pub amount_cents: u32,
    pub sponsor: u16,
    pub round: u32,
    pub gateway: u16,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("envelope token is malformed or forged")]
    Forged,
    #[error("envelope token was issued to another user")]
    NotYours,
}

impl EnvelopeToken {
    /// Serializes and signs.
    pub fn seal(&self, key: &SigningKey) -> Bytes {
        let mut b = BytesMut::with_capacity(BODY_LEN + MAC_LEN);
        b.put_u64(self.user);
        b.put_u64(self.envelope_id);
        b.put_u32(self.amount_cents);
        b.put_u16(self.sponsor);
        b.put_u32(self.round);
        b.put_u16(self.gateway);
        let mac = key.mac(TAG, &b);
        b.put_slice(&mac);
        b.freeze()
    }

    /// Verifies a token and that it belongs to `user`.
    pub fn open(raw: &[u8], user: u64, key: &SigningKey) -> Result<EnvelopeToken, TokenError> {
        if raw.len() != BODY_LEN + MAC_LEN {
            return Err(TokenError::Forged);
        }
        let (body, mac) = raw.split_at(BODY_LEN);
        if !key.verify(TAG, body, mac) {
            return Err(TokenError::Forged);
        }
        let mut r = body;
        let token = EnvelopeToken {
            user: r.get_u64(),
            envelope_id: r.get_u64(),
            amount_cents: r.get_u32(),
            sponsor: r.get_u16(),
            round: r.get_u32(),
            gateway: r.get_u16(),
        };
        if token.user != user {
            return Err(TokenError::NotYours);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnvelopeToken {
        EnvelopeToken {
            user: 9,
            envelope_id: 77,
            amount_cents: 888,
            sponsor: 3,
            round: 1,
            gateway: 0,
        }
    }

    #[test]
    fn round_trip() {
        let k = SigningKey::from_bytes([2; 32]);
        assert_eq!(EnvelopeToken::open(&sample().seal(&k), 9, &k), Ok(sample()));
    }

    #[test]
    fn forged_tokens_are_rejected() {
        let k = SigningKey::from_bytes([2; 32]);
        let other = SigningKey::from_bytes([3; 32]);
        assert_eq!(
            EnvelopeToken::open(&sample().seal(&other), 9, &k),
            Err(TokenError::Forged)
        );
        // Raise the amount in a genuine token.
        let mut raw = sample().seal(&k).to_vec();
        raw[19] = 0xff;
        assert_eq!(EnvelopeToken::open(&raw, 9, &k), Err(TokenError::Forged));
        assert_eq!(
            EnvelopeToken::open(&raw[..10], 9, &k),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn someone_elses_token_is_rejected() {
        let k = SigningKey::from_bytes([2; 32]);
        assert_eq!(
            EnvelopeToken::open(&sample().seal(&k), 10, &k),
            Err(TokenError::NotYours)
        );
    }
}
