//! HMAC keys shared by the gateways: cookies and envelope tokens are signed so a client can
//! carry state (its limit counts, its envelope) without the gateway storing or trusting it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Bytes of MAC kept on every signed blob: 128 bits is plenty against forgery online.
pub const MAC_LEN: usize = 16;

/// A secret HMAC-SHA256 key. Distinct purposes use distinct domain tags, so a cookie can
/// never be replayed as a token even though one key signs both.
#[derive(Clone)]
pub struct SigningKey {
    secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// A key file's bytes are not a key.
#[derive(Debug, Error)]
#[error(
    "key file {path} holds {len} bytes; it must hold exactly 32 (delete it to have a new one made)"
)]
pub struct KeyError {
    pub path: String,
    pub len: usize,
}

impl SigningKey {
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        SigningKey { secret }
    }

    /// The key a key file holds; `path` names the file in the error.
    pub fn from_file_bytes(bytes: &[u8], path: &str) -> Result<Self, KeyError> {
        let secret: [u8; 32] = bytes.try_into().map_err(|_| KeyError {
            path: path.to_string(),
            len: bytes.len(),
        })?;
        Ok(SigningKey { secret })
    }

    /// The MAC of `data` under the domain `tag`.
    pub fn mac(&self, tag: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(&(tag.len() as u32).to_be_bytes());
        mac.update(tag);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Checks a MAC in constant time.
    pub fn verify(&self, tag: &[u8], data: &[u8], mac: &[u8]) -> bool {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        m.update(&(tag.len() as u32).to_be_bytes());
        m.update(tag);
        m.update(data);
        m.verify_truncated_left(mac).is_ok() && mac.len() == MAC_LEN
    }

    /// The proof that an RPC client holds this key: the MAC of the server's nonce.
    pub fn rpc_proof(&self, nonce: &[u8]) -> [u8; MAC_LEN] {
        self.mac(b"rpc", nonce)
    }

    /// Whether `mac` proves this key over `nonce`.
    pub fn verify_rpc_proof(&self, nonce: &[u8], mac: &[u8]) -> bool {
        self.verify(b"rpc", nonce, mac)
    }

    /// The login token the account system would give `user`: the stand-in for real auth.
    pub fn auth_token(&self, user: u64) -> [u8; MAC_LEN] {
        self.mac(b"auth", &user.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_verifies_and_tags_separate() {
        let k = SigningKey::from_bytes([7; 32]);
        let m = k.mac(b"a", b"data");
        assert!(k.verify(b"a", b"data", &m));
        assert!(!k.verify(b"b", b"data", &m));
        assert!(!k.verify(b"a", b"datb", &m));
        assert!(!k.verify(b"a", b"data", &m[..8]));
    }

    #[test]
    fn bad_key_file_names_the_file() {
        let e = SigningKey::from_file_bytes(b"short", "/data/auth.key")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 bytes") && e.contains("/data/auth.key"), "{e}");
    }
}
