//! A user's split envelope errands, with no I/O: the pot it is about to share after an
//! open, and the friends' shares it is about to grab. A share or grab refused for a
//! passing reason (the backend unreachable, or the open not yet recorded there) is
//! tried again a little later; one cut short by a lost connection is tried again on
//! the next, since a friend's grab must complete, however slowly. The server keeps a
//! grab at most once per user, so a retry never doubles money.

use bytes::Bytes;
use std::time::Duration;
use sut_wire::protocol::ErrorCode;

/// Tries of one share or grab before it counts as an error.
pub const MAX_TRIES: u8 = 12;
/// Wait before the next try, times the tries so far.
const RETRY_STEP: Duration = Duration::from_millis(100);

/// What an errand does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Share the pot of the envelope this token opened.
    Share(Bytes),
    /// Grab a part of a friend's share.
    Grab(u64),
    /// Grab a share once more, as only a cheater would (its own, or a second time):
    /// the server must refuse it and move no money. Never repeated itself.
    GrabAgain(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errand {
    pub task: Task,
    /// When it is due now.
    pub due: Duration,
    /// When it was first due: its latency counts from here, whatever the retries.
    pub first_due: Duration,
    pub tries: u8,
}

/// How a reply to a share or grab leaves its errand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Queued again for later.
    Retry,
    /// Out of tries.
    GaveUp,
}

/// Errands waiting, and the one in flight.
#[derive(Debug, Default)]
pub struct Errands {
    waiting: Vec<Errand>,
    in_flight: Option<Errand>,
    /// A share the server accepted whose id the friends are yet to be told.
    announce: Option<u64>,
    /// The token of the open in flight, while its reply may still make it a share.
    pub opening: Option<Bytes>,
}

/// Whether a refusal is worth another try.
pub fn retriable(code: u16) -> bool {
    code == ErrorCode::Unavailable as u16 || code == ErrorCode::NoSuchShare as u16
}

impl Errands {
    pub fn add(&mut self, task: Task, due: Duration) {
        self.waiting.push(Errand {
            task,
            due,
            first_due: due,
            tries: 0,
        });
    }

    /// When the next errand is due, if any waits.
    pub fn next_due(&self) -> Option<Duration> {
        self.waiting.iter().map(|e| e.due).min()
    }

    /// Takes the earliest errand due by `now`; it is in flight until settled.
    pub fn start(&mut self, now: Duration) -> Option<&Errand> {
        let i = (0..self.waiting.len())
            .filter(|i| self.waiting[*i].due <= now)
            .min_by_key(|i| self.waiting[*i].due)?;
        self.in_flight = Some(self.waiting.swap_remove(i));
        self.in_flight.as_ref()
    }

    /// What the errand in flight does.
    pub fn current(&self) -> Option<&Task> {
        self.in_flight.as_ref().map(|e| &e.task)
    }

    /// The reply's code came for the errand in flight: done, or queued again.
    pub fn settle(&mut self, code: u16, now: Duration) -> Settled {
        let Some(mut e) = self.in_flight.take() else {
            return Settled::Done;
        };
        if !retriable(code) {
            return Settled::Done;
        }
        self.again(&mut e, now)
    }

    /// The errand in flight got no reply (timeout, lost connection): due again a
    /// little after it was last due (usually at once), so it goes out as soon as there
    /// is a connection.
    pub fn interrupted(&mut self) -> Settled {
        match self.in_flight.take() {
            Some(mut e) => {
                let due = e.due;
                self.again(&mut e, due)
            }
            None => Settled::Done,
        }
    }

    fn again(&mut self, e: &mut Errand, now: Duration) -> Settled {
        e.tries += 1;
        if e.tries >= MAX_TRIES {
            return Settled::GaveUp;
        }
        e.due = now + RETRY_STEP * u32::from(e.tries);
        self.waiting.push(e.clone());
        Settled::Retry
    }

    pub fn announce(&mut self, share_id: u64) {
        self.announce = Some(share_id);
    }

    /// A share to announce to the friends, once.
    pub fn take_announcement(&mut self) -> Option<u64> {
        self.announce.take()
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
            && self.in_flight.is_none()
            && self.announce.is_none()
            && self.opening.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn passing_refusals_are_retried_then_given_up() {
        let mut e = Errands::default();
        e.add(Task::Grab(7), ms(100));
        assert!(e.start(ms(99)).is_none(), "not due yet");
        assert_eq!(
            e.start(ms(100)).map(|e| e.task.clone()),
            Some(Task::Grab(7))
        );
        assert_eq!(
            e.settle(ErrorCode::NoSuchShare as u16, ms(110)),
            Settled::Retry
        );
        assert_eq!(e.next_due(), Some(ms(210)));
        let mut outcome = Settled::Retry;
        let mut now = ms(210);
        while outcome == Settled::Retry {
            let first = e.start(now).expect("due").first_due;
            assert_eq!(first, ms(100), "latency counts from the first try");
            outcome = e.settle(ErrorCode::Unavailable as u16, now);
            now += ms(10_000);
        }
        assert_eq!(outcome, Settled::GaveUp);
        assert!(e.is_idle());
    }

    #[test]
    fn final_refusals_and_successes_end_the_errand() {
        let mut e = Errands::default();
        e.add(Task::Grab(1), ms(0));
        e.add(Task::Grab(2), ms(5));
        e.start(ms(10));
        assert_eq!(
            e.settle(ErrorCode::NoPartsLeft as u16, ms(11)),
            Settled::Done
        );
        e.start(ms(12));
        assert_eq!(e.settle(0, ms(13)), Settled::Done);
        assert!(e.is_idle());
    }

    #[test]
    fn an_interrupted_grab_is_tried_again() {
        let mut e = Errands::default();
        e.add(Task::Grab(3), ms(0));
        e.start(ms(0));
        assert_eq!(e.interrupted(), Settled::Retry);
        assert!(e.next_due().is_some_and(|d| d <= ms(100)));
        assert_eq!(
            e.start(ms(100)).map(|e| e.task.clone()),
            Some(Task::Grab(3))
        );
    }
}
