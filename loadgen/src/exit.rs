//! What `loadgen run` and `loadgen coordinator` exit with: one meaning per code.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | passed: every threshold held, the audit (if any) passed |
//! | 1 | a threshold was breached |
//! | 2 | bad configuration, or the run could not start (the message says which) |
//! | 3 | the system under test failed: its audit, a promise of money not credited, or a part a fault took down that did not come back |
//! | 4 | aborted early by a threshold with `abort_on_fail` |
//! | 5 | the users did not run as planned: an agent lost past `agents.min`, a start after the common start, a worker or agent that failed |
//! | 130 | interrupted (Ctrl-C) |
//!
//! When several apply, the first in this order is the code: 130, 4, 3, 5, 1.

use crate::report::RunReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Passed = 0,
    ThresholdBreached = 1,
    Configuration = 2,
    SystemFailed = 3,
    Aborted = 4,
    NotAsPlanned = 5,
    Interrupted = 130,
}

/// The help text's summary of the codes.
pub const HELP: &str = "Exit codes: 0 passed; 1 a threshold breached; 2 bad configuration or could not start; 3 the system under test failed its audit (or a promise, or a faulted part never came back); 4 aborted early by an abort_on_fail threshold; 5 users not run as planned (an agent lost, a late start); 130 interrupted.";

/// Records in `r` the code it exits with.
pub fn stamp(r: &mut RunReport) {
    r.exit_code = code_of(r) as u8;
}

/// The code a finished run exits with.
pub fn code_of(r: &RunReport) -> Exit {
    let system_failed = !r.system_held();
    let not_as_planned = r.origin.late() || r.cluster.as_ref().is_some_and(|c| !c.passed);
    if r.interrupted {
        Exit::Interrupted
    } else if r.aborted.is_some() {
        Exit::Aborted
    } else if system_failed {
        Exit::SystemFailed
    } else if not_as_planned {
        Exit::NotAsPlanned
    } else if r.thresholds.iter().any(|t| !t.passed) {
        Exit::ThresholdBreached
    } else {
        Exit::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RunCost, ThresholdResult};
    use crate::stats::Summary;

    fn report() -> RunReport {
        let cost = RunCost {
            limits: None,
            promises: None,
            hostile: None,
            faults: Vec::new(),
            series: Vec::new(),
            requests_by_worker: Vec::new(),
            resources: None,
        };
        RunReport::build("t", &Summary::default(), 1.0, 1, &[], None, cost)
    }

    #[test]
    fn each_failure_has_its_code_and_the_order_holds() {
        let mut r = report();
        r.conclude(None, false);
        stamp(&mut r);
        assert_eq!((r.exit_code, r.passed), (0, true));
        r.thresholds.push(ThresholdResult {
            threshold: "shake: p99 < 1ms".into(),
            observed: "2ms".into(),
            passed: false,
        });
        assert_eq!(code_of(&r), Exit::ThresholdBreached);
        r.origin.started_after_ms = Some(3_000);
        assert_eq!(code_of(&r), Exit::NotAsPlanned);
        r.faults.push(crate::faults::own_event(
            "gateway-0",
            "killed",
            std::time::Duration::from_secs(1),
        ));
        assert_eq!(
            code_of(&r),
            Exit::SystemFailed,
            "a part that never came back"
        );
        r.conclude(Some("`errors: rate < 1%` failed at 3 s".into()), false);
        stamp(&mut r);
        assert_eq!((r.exit_code, r.passed), (4, false));
        r.conclude(None, true);
        stamp(&mut r);
        assert_eq!(r.exit_code, 130);
    }
}
