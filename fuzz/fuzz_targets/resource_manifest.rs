//! Signed resource manifests as a resource server hands them to phones: arbitrary
//! bytes are refused or parsed, never a panic, and nothing verifies under the
//! operator's public key that the operator did not sign. A manifest the fuzzer's
//! bytes describe, once signed, either fails its checks or carries at most the
//! allowed items with distinct ids and 32-byte digests.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use sut_wire::resource_manifest::{ResourceManifest, SignedManifest, MAX_ITEMS};
use sut_wire::schedule::OperatorKey;

fn key() -> &'static OperatorKey {
    static KEY: OnceLock<OperatorKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkcs8 = OperatorKey::generate_pkcs8().expect("a key");
        OperatorKey::from_pkcs8(&pkcs8, "fuzz").expect("a key")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedManifest::from_json(data) {
        // A key made for this run signed nothing the fuzzer can produce.
        assert!(key().public().verify_manifest(&signed).is_err());
    }
    if let Ok(manifest) = serde_json::from_slice::<ResourceManifest>(data) {
        if let Ok(m) = key().public().verify_manifest(&key().sign_manifest(&manifest)) {
            assert!(m.items.len() <= MAX_ITEMS);
            let mut ids: Vec<u32> = m.items.iter().map(|i| i.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), m.items.len());
            for item in &m.items {
                assert_eq!(item.sha256.len(), 64);
            }
        }
    }
});
