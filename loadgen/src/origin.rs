//! Where a summary's figures come from: which users (the segment) and when they
//! started against the common start.

use serde::Serialize;
use std::fmt::Write;

/// Which users a summary covers and when they started: a machine running one segment
/// of a run says so, and says when it started against the common start.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    /// `i/n`: the users whose id is i modulo n (`0/1`: all of them).
    pub segment: String,
    /// The common start, Unix ms.
    pub start_at_unix_ms: i64,
    /// How long after the common start this process started its users, when the start
    /// was given (`--start-at`): past [`Origin::LATE_AFTER_MS`] its users joined
    /// mid-ramp and the run fails.
    pub started_after_ms: Option<i64>,
}

impl Default for Origin {
    fn default() -> Origin {
        Origin {
            segment: "0/1".into(),
            start_at_unix_ms: 0,
            started_after_ms: None,
        }
    }
}

impl Origin {
    pub const LATE_AFTER_MS: i64 = crate::cluster::agents::LATE_AFTER_MS;

    pub fn late(&self) -> bool {
        self.started_after_ms
            .is_some_and(|ms| ms > Self::LATE_AFTER_MS)
    }

    pub fn lines(&self, out: &mut String) {
        if self.segment != "0/1" || self.started_after_ms.is_some() {
            let _ = writeln!(
                out,
                "segment {} of the users, common start {} (Unix ms){}",
                self.segment,
                self.start_at_unix_ms,
                match self.started_after_ms {
                    Some(ms) if self.late() => format!(
                        "; FAIL: started {:.1} s after it, so its users joined mid-ramp",
                        ms as f64 / 1000.0
                    ),
                    Some(ms) => format!("; started {ms:+} ms from it"),
                    None => String::new(),
                }
            );
        }
    }
}
