//! Signed schedule versions as a channel delivers them (a gateway's peer port, a config
//! service, the versioned files): arbitrary bytes are refused or parsed, never a panic,
//! and nothing verifies under the operator's public key that the operator did not sign.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use sut_wire::schedule::{OperatorKey, OperatorPublic, SignedSchedule};

fn public() -> &'static OperatorPublic {
    static KEY: OnceLock<OperatorPublic> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkcs8 = OperatorKey::generate_pkcs8().expect("a key");
        OperatorKey::from_pkcs8(&pkcs8, "fuzz").expect("a key").public()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedSchedule::from_json(data) {
        // A key made for this run signed nothing the fuzzer can produce.
        assert!(public().verify(&signed).is_err());
    }
});
