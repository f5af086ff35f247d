//! The resource manifest (seed mechanism 7): the list of static resources (sponsors'
//! logos and backgrounds) clients download ahead of the show, as the operator signs it
//! and every client checks it.
//!
//! Each item has an id (what a greeting names), a version, a size and the SHA-256 of its
//! bytes: a client keeps an item only when the bytes it downloaded hash to this digest,
//! so a tampered copy is never shown. A new manifest version lists every item again; an
//! item whose digest did not change is kept, so an update costs only what changed.
//!
//! Signed with the operator's Ed25519 key like a schedule version
//! ([`crate::schedule`]), under its own domain tag, so neither verifies as the other.
//! On the wire: `{"body": "<the manifest as JSON text>", "signature": "<hex>"}`.

use crate::schedule::{OperatorKey, OperatorPublic};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use thiserror::Error;

const TAG: &[u8] = b"shake-resources\0";
/// The most items a manifest may list.
pub const MAX_ITEMS: usize = 1024;
/// The largest item, in bytes.
pub const MAX_ITEM_SIZE: u64 = 64 << 20;
/// The largest signed manifest accepted, in bytes.
pub const MAX_SIGNED_LEN: usize = 256 * 1024;

/// One resource: `sha256` is the lowercase hex digest of its `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceItem {
    pub id: u32,
    pub version: u32,
    pub size: u64,
    pub sha256: String,
}

impl ResourceItem {
    /// The item's digest as bytes (checked by [`ResourceManifest::check`]).
    pub fn digest(&self) -> [u8; 32] {
        let mut d = [0u8; 32];
        let _ = hex::decode_to_slice(&self.sha256, &mut d);
        d
    }

    /// The HTTP entity tag a server gives the item's current bytes.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

/// One version of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceManifest {
    /// Monotonic: a client adopts only a version above the one it holds.
    pub version: u64,
    /// When the operator signed it (Unix ms).
    pub signed_unix_ms: i64,
    pub items: Vec<ResourceItem>,
}

/// A manifest with its signature, as servers hand it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub body: String,
    pub signature: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest's signature does not verify under the operator's public key")]
    BadSignature,
    #[error("{0} bytes is larger than a signed manifest may be ({MAX_SIGNED_LEN})")]
    TooLarge(usize),
    #[error("not a signed manifest: {0}")]
    Malformed(String),
    #[error("manifest version {version}: {message}")]
    Invalid { version: u64, message: String },
}

impl ResourceManifest {
    /// Checks what a client relies on: a version above 0, at most [`MAX_ITEMS`] items,
    /// each id once, sizes within bounds, digests of 64 hex digits.
    pub fn check(&self) -> Result<(), ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            version: self.version,
            message,
        };
        if self.version == 0 {
            return Err(invalid("versions start at 1".into()));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(invalid(format!(
                "{} items; at most {MAX_ITEMS}",
                self.items.len()
            )));
        }
        let mut seen = HashSet::new();
        for item in &self.items {
            if !seen.insert(item.id) {
                return Err(invalid(format!("item {} is listed twice", item.id)));
            }
            if item.size == 0 || item.size > MAX_ITEM_SIZE {
                return Err(invalid(format!(
                    "item {} has {} bytes; sizes are 1 to {MAX_ITEM_SIZE}",
                    item.id, item.size
                )));
            }
            let mut d = [0u8; 32];
            if item.sha256.len() != 64 || hex::decode_to_slice(&item.sha256, &mut d).is_err() {
                return Err(invalid(format!(
                    "item {}'s sha256 is not 64 hex digits",
                    item.id
                )));
            }
        }
        Ok(())
    }

    /// The position of item `id`, if listed.
    pub fn index_of(&self, id: u32) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    /// All the items' bytes together.
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.size).sum()
    }

    /// The HTTP entity tag of this version.
    pub fn etag(&self) -> String {
        format!("\"m{}\"", self.version)
    }
}

impl OperatorKey {
    /// Signs a manifest.
    pub fn sign_manifest(&self, manifest: &ResourceManifest) -> SignedManifest {
        let body = serde_json::to_string(manifest).unwrap_or_default();
        SignedManifest {
            signature: self.sign_tagged(TAG, &body),
            body,
        }
    }
}

impl OperatorPublic {
    /// Checks the signature, then the manifest itself.
    pub fn verify_manifest(
        &self,
        signed: &SignedManifest,
    ) -> Result<ResourceManifest, ManifestError> {
        let len = signed.body.len() + signed.signature.len();
        if len > MAX_SIGNED_LEN {
            return Err(ManifestError::TooLarge(len));
        }
        if !self.verify_tagged(TAG, &signed.body, &signed.signature) {
            return Err(ManifestError::BadSignature);
        }
        let manifest: ResourceManifest = serde_json::from_str(&signed.body)
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }
}

impl SignedManifest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a signed manifest's JSON (not yet verified).
    pub fn from_json(bytes: &[u8]) -> Result<SignedManifest, ManifestError> {
        if bytes.len() > MAX_SIGNED_LEN {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OperatorKey {
        OperatorKey::from_pkcs8(&OperatorKey::generate_pkcs8().unwrap(), "test").unwrap()
    }

    fn manifest(version: u64) -> ResourceManifest {
        ResourceManifest {
            version,
            signed_unix_ms: 1,
            items: vec![
                ResourceItem {
                    id: 100,
                    version: 1,
                    size: 10,
                    sha256: "ab".repeat(32),
                },
                ResourceItem {
                    id: 7,
                    version: 2,
                    size: 5,
                    sha256: "01".repeat(32),
                },
            ],
        }
    }

    #[test]
    fn signed_manifests_verify_and_round_trip() {
        let k = key();
        let signed = k.sign_manifest(&manifest(3));
        let back = SignedManifest::from_json(&signed.to_json()).unwrap();
        assert_eq!(k.public().verify_manifest(&back).unwrap(), manifest(3));
        assert_eq!(manifest(3).index_of(7), Some(1));
        assert_eq!(manifest(3).total_bytes(), 15);
        assert_eq!(manifest(3).items[1].digest(), [1u8; 32]);
    }

    #[test]
    fn tampered_foreign_or_invalid_manifests_are_refused() {
        let k = key();
        let mut signed = k.sign_manifest(&manifest(3));
        signed.body = signed.body.replace("\"size\":10", "\"size\":11");
        assert_eq!(
            k.public().verify_manifest(&signed),
            Err(ManifestError::BadSignature)
        );
        let foreign = key().sign_manifest(&manifest(3));
        assert_eq!(
            k.public().verify_manifest(&foreign),
            Err(ManifestError::BadSignature)
        );
        let mut twice = manifest(3);
        twice.items[1].id = 100;
        let err = k.public().verify_manifest(&k.sign_manifest(&twice));
        assert!(matches!(err, Err(ManifestError::Invalid { .. })), "{err:?}");
        let mut bad_digest = manifest(3);
        bad_digest.items[0].sha256 = "zz".repeat(32);
        assert!(bad_digest.check().is_err());
        assert!(manifest(0).check().is_err());
    }

    #[test]
    fn a_schedule_signature_never_verifies_as_a_manifest() {
        let k = key();
        let body = serde_json::to_string(&manifest(1)).unwrap();
        let as_schedule = SignedManifest {
            signature: k.sign_tagged(b"shake-timeline\0", &body),
            body,
        };
        assert_eq!(
            k.public().verify_manifest(&as_schedule),
            Err(ManifestError::BadSignature)
        );
    }
}
