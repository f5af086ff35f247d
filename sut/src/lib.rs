//! The system under test: a re-creation of the Spring Festival Gala "shake" red-envelope
//! system. Deciding logic lives in sans-IO cores; sockets, files and processes in shells.

pub mod audit;
pub mod cookie;
pub mod cursor;
pub mod drain;
pub mod envelope;
pub mod friends;
pub mod gateway;
pub mod limit_view;
pub mod listen;
pub mod manifest;
pub mod metrics;
pub mod open_files;
pub mod passthrough;
pub mod payment;
pub mod payment_faults;
pub mod protocol;
pub mod rate_budget;
pub mod rpc;
pub mod seed_shard;
pub mod shake;
pub mod signing;
pub mod split;
pub mod spread;
pub mod store;
pub mod throttle_tier;
pub mod timeline;
pub mod token;
pub mod user_limits;

/// Writes one whole line to stderr in a single write, so lines from the parts that
/// `sut up` runs side by side never interleave mid-line.
pub fn write_log_line(line: &str) {
    use std::io::Write;
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stderr().write_all(buf.as_bytes());
}

/// `format!` into [`write_log_line`].
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => { $crate::write_log_line(&format!($($arg)*)) };
}
