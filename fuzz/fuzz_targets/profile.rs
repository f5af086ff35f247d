//! Profile parsing: any text is a profile or an error message, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = loadgen::profile::Profile::parse(text);
    }
});
