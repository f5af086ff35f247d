//! Cookie and envelope token parsing: arbitrary bytes are refused or parsed, never a
//! panic; nothing but a sealed value verifies, and a sealed value opens to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sut_wire::cookie::Cookie;
use sut_wire::signing::SigningKey;
use sut_wire::token::EnvelopeToken;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes([7; 32]);
    let user = 42;
    if let Ok(c) = Cookie::open(data, user, 0, &key) {
        assert_eq!(c.user, user);
        assert!(c.sponsors.len() <= 3);
        let sealed = c.seal(&key);
        assert_eq!(Cookie::open(&sealed, user, 0, &key).ok(), Some(c));
    }
    if let Ok(t) = EnvelopeToken::open(data, user, &key) {
        assert_eq!(t.user, user);
        assert_eq!(EnvelopeToken::open(&t.seal(&key), user, &key).ok(), Some(t));
    }
});
