//! An agent's workers' reports, merged into one before they leave the machine: the
//! coordinator then merges one report per agent per second, however many workers each
//! agent runs (merging histograms is most of what merging costs).
//!
//! A batch goes once every worker still running has reported into it (each reports
//! on the run's whole seconds, so a batch is one second of the agent), or
//! [`Batch::LINGER`] after its first report, whichever comes first, so that a slow
//! worker delays nothing by more than that.

use crate::merge::Merge;
use crate::stats::Summary;
use crate::worker::WorkerReport;
use anyhow::Result;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Batch {
    merge: Merge,
    pending: Mutex<Summary>,
    /// Each worker: finished, and reported into the pending batch.
    finished: Vec<bool>,
    reported: Vec<bool>,
    first_at: Option<Instant>,
}

impl Batch {
    /// How long a batch waits for its slowest worker.
    pub const LINGER: Duration = Duration::from_millis(300);

    pub fn new(workers: u64) -> Batch {
        Batch {
            merge: Merge::default(),
            pending: Mutex::new(Summary::default()),
            finished: vec![false; workers as usize],
            reported: vec![false; workers as usize],
            first_at: None,
        }
    }

    /// Adds worker `worker`'s report; `true` when the batch is complete.
    pub fn add(&mut self, worker: u64, report: WorkerReport) -> Result<bool> {
        let j = worker as usize;
        if j >= self.finished.len() {
            self.finished.resize(j + 1, false);
            self.reported.resize(j + 1, false);
        }
        self.finished[j] |= report.last;
        self.reported[j] = true;
        self.merge.add((0, worker), report, &self.pending)?;
        self.first_at.get_or_insert_with(Instant::now);
        Ok(self
            .finished
            .iter()
            .zip(&self.reported)
            .all(|(finished, reported)| *finished || *reported))
    }

    /// When the pending batch must go at the latest.
    pub fn due(&self) -> Option<Instant> {
        self.first_at.map(|t| t + Self::LINGER)
    }

    /// The pending batch as one report (levels: the agent's workers' summed), and a
    /// fresh batch begun. `last` marks the agent's final report.
    pub fn take(&mut self, last: bool) -> Result<WorkerReport> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let summary = pending.to_wire()?;
        pending.clear_interval();
        self.reported.iter_mut().for_each(|r| *r = false);
        self.first_at = None;
        Ok(WorkerReport { last, summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Op;

    fn report(requests: u64, connected: u64, last: bool) -> WorkerReport {
        let mut s = Summary::default();
        for _ in 0..requests {
            s.record(Op::Shake, 1_000);
        }
        s.connected = connected;
        WorkerReport {
            last,
            summary: s.to_wire().unwrap(),
        }
    }

    #[test]
    fn a_batch_holds_every_workers_report_and_their_levels_summed() {
        let mut b = Batch::new(2);
        assert!(!b.add(0, report(3, 10, false)).unwrap());
        assert!(b.add(1, report(4, 20, false)).unwrap(), "both reported");
        let one = Summary::from_wire(b.take(false).unwrap().summary).unwrap();
        assert_eq!(one.count(Op::Shake), 7);
        assert_eq!(one.connected, 30);
        // The next second: counts start again, levels carry on.
        assert!(!b.add(0, report(1, 12, false)).unwrap());
        let two = Summary::from_wire(b.take(false).unwrap().summary).unwrap();
        assert_eq!(two.count(Op::Shake), 1);
        assert_eq!(two.connected, 32, "worker 1's level is still 20");
        assert!(b.due().is_none());
    }

    #[test]
    fn a_finished_worker_is_no_longer_waited_for() {
        let mut b = Batch::new(2);
        assert!(
            !b.add(0, report(1, 0, true)).unwrap(),
            "worker 1 runs, unheard"
        );
        b.take(false).unwrap();
        assert!(b.add(1, report(1, 0, false)).unwrap(), "only worker 1 runs");
    }
}
