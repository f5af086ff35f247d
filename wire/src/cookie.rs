//! The limit cookie: the first, storage-free layer of the per-user limits (seed mechanism 3).
//!
//! The gateway writes the user's envelope count and sponsors into every shake reply and
//! the client sends it back with the next shake. It is signed, so a client can drop or
//! replay an old one (which the gateway's own table catches) but never forge a lower count.

use crate::signing::{SigningKey, MAC_LEN};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

const TAG: &[u8] = b"cookie/v1";
/// Most envelopes one user may get.
pub const MAX_ENVELOPES_PER_USER: usize = 3;
/// The largest sealed cookie a gateway takes back (the biggest it writes is 39 bytes:
/// user, expiry, count, three sponsors and the MAC).
pub const MAX_COOKIE_LEN: usize = 64;

/// What a cookie says of its user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cookie {
    pub user: u64,
    /// Sponsors of the envelopes this user got; its length is the count.
    pub sponsors: Vec<u16>,
    /// Show time (ms) after which the cookie is worthless.
    pub expires_ms: i64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CookieError {
    #[error("cookie is malformed")]
    Malformed,
    #[error("cookie signature does not match (tampered)")]
    Tampered,
    #[error("cookie belongs to another user")]
    NotYours,
}

impl Cookie {
    fn body(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(24);
        b.put_u64(self.user);
        b.put_i64(self.expires_ms);
        let n = self.sponsors.len().min(MAX_ENVELOPES_PER_USER);
        b.put_u8(n as u8);
        for s in &self.sponsors[..n] {
            b.put_u16(*s);
        }
        b
    }

    /// Serializes and signs.
    pub fn seal(&self, key: &SigningKey) -> Bytes {
        let mut b = self.body();
        let mac = key.mac(TAG, &b);
        b.put_slice(&mac);
        b.freeze()
    }

    /// Verifies and parses a cookie for `user`. An empty cookie is a fresh user.
    /// An expired cookie reads as empty: the limits it carried ended with its round.
    pub fn open(
        raw: &[u8],
        user: u64,
        now_ms: i64,
        key: &SigningKey,
    ) -> Result<Cookie, CookieError> {
        if raw.is_empty() {
            return Ok(Cookie {
                user,
                ..Cookie::default()
            });
        }
        if raw.len() < 17 + MAC_LEN {
            return Err(CookieError::Malformed);
        }
        let (body, mac) = raw.split_at(raw.len() - MAC_LEN);
        if !key.verify(TAG, body, mac) {
            return Err(CookieError::Tampered);
        }
        let mut r = body;
        let cookie_user = r.get_u64();
        let expires_ms = r.get_i64();
        let n = r.get_u8() as usize;
        if n > MAX_ENVELOPES_PER_USER || r.remaining() != 2 * n {
            return Err(CookieError::Malformed);
        }
        let sponsors = (0..n).map(|_| r.get_u16()).collect();
        if cookie_user != user {
            return Err(CookieError::NotYours);
        }
        if expires_ms < now_ms {
            return Ok(Cookie {
                user,
                ..Cookie::default()
            });
        }
        Ok(Cookie {
            user,
            sponsors,
            expires_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes([1; 32])
    }

    #[test]
    fn round_trip() {
        let c = Cookie {
            user: 42,
            sponsors: vec![1, 5],
            expires_ms: 10_000,
        };
        let raw = c.seal(&key());
        assert_eq!(Cookie::open(&raw, 42, 0, &key()).unwrap(), c);
    }

    #[test]
    fn tampered_cookie_is_rejected() {
        let c = Cookie {
            user: 42,
            sponsors: vec![1, 5],
            expires_ms: 10_000,
        };
        let mut raw = c.seal(&key()).to_vec();
        // Lower the count byte: a client trying to reset its limit.
        raw[16] = 0;
        raw.truncate(17);
        raw.extend_from_slice(&[0; MAC_LEN]);
        assert_eq!(
            Cookie::open(&raw, 42, 0, &key()),
            Err(CookieError::Tampered)
        );
        let mut flipped = c.seal(&key()).to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            Cookie::open(&flipped, 42, 0, &key()),
            Err(CookieError::Tampered)
        );
    }

    #[test]
    fn someone_elses_cookie_is_rejected() {
        let raw = Cookie {
            user: 1,
            sponsors: vec![],
            expires_ms: 5,
        }
        .seal(&key());
        assert_eq!(Cookie::open(&raw, 2, 0, &key()), Err(CookieError::NotYours));
    }

    #[test]
    fn expired_cookie_reads_empty_and_garbage_is_malformed() {
        let raw = Cookie {
            user: 1,
            sponsors: vec![3],
            expires_ms: 5,
        }
        .seal(&key());
        assert!(Cookie::open(&raw, 1, 6, &key())
            .unwrap()
            .sponsors
            .is_empty());
        assert_eq!(
            Cookie::open(&[1, 2, 3], 1, 0, &key()),
            Err(CookieError::Malformed)
        );
    }
}
