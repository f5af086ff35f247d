//! The pass-through queue (seed mechanism 6, the "iron triangle"): an open is appended
//! durably and the user is answered at once; the queue then forwards to the envelope
//! backend in batches and only acked entries leave. This is the in-memory core; the
//! durable copy lives in the gateway's store and the forwarding loop in the gateway shell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
pub use sut_wire::open::OpenEntry;

/// Entries waiting for the backend's ack, by queue sequence number.
#[derive(Debug, Default)]
pub struct PassThroughQueue {
    pending: BTreeMap<u64, OpenEntry>,
    in_flight: BTreeSet<u64>,
}

impl PassThroughQueue {
    pub fn push(&mut self, seq: u64, entry: OpenEntry) {
        self.pending.insert(seq, entry);
    }

    /// Up to `max` oldest entries not already in flight; they are marked in flight.
    pub fn next_batch(&mut self, max: usize) -> Vec<(u64, OpenEntry)> {
        let batch: Vec<(u64, OpenEntry)> = self
            .pending
            .iter()
            .filter(|(seq, _)| !self.in_flight.contains(seq))
            .take(max)
            .map(|(s, e)| (*s, *e))
            .collect();
        self.in_flight.extend(batch.iter().map(|(s, _)| *s));
        batch
    }

    /// The backend recorded these: they leave the queue.
    pub fn acked(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.pending.remove(s);
            self.in_flight.remove(s);
        }
    }

    /// Delivery failed: these go back to waiting, in order.
    pub fn failed(&mut self, seqs: &[u64]) {
        for s in seqs {
            self.in_flight.remove(s);
        }
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    /// Show time of the oldest waiting open.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.pending.values().map(|e| e.opened_ms).min()
    }
}

/// Exponential backoff with jitter for retries towards a busy or absent backend.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; `jitter` in [0, 1) is drawn by the caller. Full jitter between
    /// half and all of the exponential step spreads retries of many gateways apart.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sut_wire::token::EnvelopeToken;

    fn entry(id: u64) -> OpenEntry {
        OpenEntry {
            token: EnvelopeToken {
                user: 1,
                envelope_id: id,
                amount_cents: 5,
                sponsor: 1,
                round: 1,
                gateway: 0,
            },
            opened_ms: id as i64,
        }
    }

    #[test]
    fn only_acked_entries_leave() {
        let mut q = PassThroughQueue::default();
        for s in 0..5 {
            q.push(s, entry(s));
        }
        let b1 = q.next_batch(3);
        assert_eq!(b1.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        let b2 = q.next_batch(3);
        assert_eq!(b2.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 4]);
        q.failed(&[0, 1, 2]);
        q.acked(&[3, 4]);
        assert_eq!(q.depth(), 3);
        assert_eq!(q.oldest_ms(), Some(0));
        let again = q.next_batch(10);
        assert_eq!(again.len(), 3);
        q.acked(&[0, 1, 2]);
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(10));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(20));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(20));
        for _ in 0..10 {
            assert!(b.next_delay(0.99) <= Duration::from_millis(100));
        }
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(10));
    }
}
