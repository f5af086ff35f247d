//! The pass-through queue (seed mechanism 6, the "iron triangle"): an open is appended
//! durably and the user is answered at once; the queue then forwards to the envelope
//! backend in batches and only acked entries leave. This is the in-memory core; the
//! durable copy lives in the gateway's store and the forwarding loop in the gateway shell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
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

/// How often a forwarder may start a delivery: at most one per `every`, unless it has a
/// full batch. A delivery costs its peer a durable write (and its own settlement
/// another), whatever its size; opens trickling in one at a time would each cost both.
/// Pacing lets the entries that arrive meanwhile share one delivery, as the seed's
/// queue forwards in batches, so durable writes per second stay bounded by the pace,
/// not by the opens; a full batch goes at once, so the pace never caps throughput. An
/// entry that arrives after a quiet spell goes at once; one arriving right after a
/// delivery waits at most `every` (the crediting delay, which the user does not wait
/// for: the open's reply went out when the entry was queued).
#[derive(Debug, Clone)]
pub struct Pace {
    every: Duration,
    last: Option<Instant>,
}

impl Pace {
    pub fn new(every: Duration) -> Self {
        Pace { every, last: None }
    }

    /// How long to wait at `now` before the next delivery, `full` or not, may start
    /// (zero: at once).
    pub fn wait(&self, now: Instant, full: bool) -> Duration {
        match self.last {
            Some(last) if !full => (last + self.every).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// A delivery started at `at`.
    pub fn started(&mut self, at: Instant) {
        self.last = Some(at);
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

    #[test]
    fn pace_spaces_deliveries_but_never_delays_a_full_batch_or_the_first_after_a_quiet_spell() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pace::new(ms(50));
        assert_eq!(p.wait(t0, false), Duration::ZERO, "nothing delivered yet");
        p.started(t0);
        assert_eq!(p.wait(t0 + ms(10), false), ms(40));
        assert_eq!(
            p.wait(t0 + ms(10), true),
            Duration::ZERO,
            "a full batch goes at once"
        );
        assert_eq!(p.wait(t0 + ms(50), false), Duration::ZERO);
        assert_eq!(
            p.wait(t0 + ms(900), false),
            Duration::ZERO,
            "after a quiet spell"
        );
        p.started(t0 + ms(900));
        assert_eq!(p.wait(t0 + ms(901), false), ms(49));
        let mut off = Pace::new(Duration::ZERO);
        off.started(t0);
        assert_eq!(
            off.wait(t0, false),
            Duration::ZERO,
            "a zero pace never waits"
        );
    }
}
