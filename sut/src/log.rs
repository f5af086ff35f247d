//! Log lines: whole lines to stderr, never interleaved between the parts `sut up` runs
//! side by side.

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
    ($($arg:tt)*) => { $crate::log::write_log_line(&format!($($arg)*)) };
}
