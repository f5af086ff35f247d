//! Draining on shutdown. A forwarder (gateway → backend, backend → payment) keeps
//! delivering after the stop signal until its queue is empty and nothing can add to it
//! any more, or until the drain timeout; then whatever is left stays durable for the
//! next start. This is the decision; the shell's forwarding loop does the waiting.

use std::time::{Duration, Instant};

/// What a forwarding loop does on this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Deliver a batch.
    Work,
    /// Nothing to deliver: wait for work.
    Idle,
    /// Drained (or out of time): return.
    Stop,
}

#[derive(Debug)]
pub struct Drain {
    timeout: Duration,
    deadline: Option<Instant>,
}

impl Drain {
    pub fn new(timeout: Duration) -> Self {
        Drain {
            timeout,
            deadline: None,
        }
    }

    /// `empty`: nothing to deliver now; `producers_done`: nothing can add work any more.
    pub fn turn(
        &mut self,
        now: Instant,
        shutting_down: bool,
        empty: bool,
        producers_done: bool,
    ) -> Turn {
        if shutting_down && self.deadline.is_none() {
            self.deadline = Some(now + self.timeout);
        }
        if let Some(deadline) = self.deadline {
            if now > deadline || (empty && producers_done) {
                return Turn::Stop;
            }
        }
        if empty {
            Turn::Idle
        } else {
            Turn::Work
        }
    }

    pub fn draining(&self) -> bool {
        self.deadline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_until_empty_and_quiet_or_out_of_time() {
        let t0 = Instant::now();
        let mut d = Drain::new(Duration::from_secs(10));
        assert_eq!(
            d.turn(t0, false, true, true),
            Turn::Idle,
            "not shutting down: wait"
        );
        assert_eq!(d.turn(t0, false, false, true), Turn::Work);
        assert_eq!(
            d.turn(t0, true, false, false),
            Turn::Work,
            "work left: keep going"
        );
        assert_eq!(
            d.turn(t0, true, true, false),
            Turn::Idle,
            "a producer may still add"
        );
        assert_eq!(d.turn(t0, true, true, true), Turn::Stop);
        let late = t0 + Duration::from_secs(11);
        let mut d2 = Drain::new(Duration::from_secs(10));
        d2.turn(t0, true, false, false);
        assert_eq!(d2.turn(late, true, false, false), Turn::Stop, "out of time");
    }
}
