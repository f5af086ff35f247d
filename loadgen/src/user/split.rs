//! A user's errands beyond shaking, with no I/O: the envelope it is about to open, the
//! pot it is about to share after an open, and the friends' shares it is about to
//! grab. A share or grab refused for a passing reason (the backend unreachable, or the
//! open not yet recorded there) is tried again a little later; an open, share or grab
//! cut short by a lost reply (a timeout, a lost connection) is tried again on the next
//! connection, since the money must reach the user, however slowly. The server answers
//! a repeat with its original answer and moves money once, so a retry never doubles it.

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
    /// Grab a share once more, as only a cheater would: its own (`told: None`, which
    /// the server must refuse), or one it grabbed before, told `told` cents (the server
    /// must tell the same again and move no money).
    GrabAgain { share_id: u64, told: Option<u32> },
    /// Open an envelope once more (a cheater, on another gateway): the server must tell
    /// the `told` cents again and credit nothing more.
    OpenAgain { token: Bytes, told: u32 },
}

/// An envelope to open: its token, when the open was first intended (its latency counts
/// from there, retries included) and the tries so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub token: Bytes,
    pub intended: Duration,
    pub tries: u8,
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
    /// The envelope to open next.
    pub to_open: Option<Opening>,
    /// The open in flight, kept until its reply: a share may follow it, and a lost
    /// reply sends it again.
    pub opening: Option<Opening>,
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

    /// The open in flight got no reply: it goes out again, until its tries run out.
    pub fn open_interrupted(&mut self) -> Settled {
        let Some(mut o) = self.opening.take() else {
            return Settled::Done;
        };
        o.tries += 1;
        if o.tries >= MAX_TRIES {
            return Settled::GaveUp;
        }
        self.to_open = Some(o);
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
            && self.to_open.is_none()
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
    fn an_open_whose_reply_was_lost_goes_out_again_then_gives_up() {
        let mut e = Errands::default();
        let opening = Opening {
            token: Bytes::from_static(b"t"),
            intended: ms(5),
            tries: 0,
        };
        e.opening = Some(opening.clone());
        assert_eq!(e.open_interrupted(), Settled::Retry);
        assert_eq!(e.to_open.as_ref().map(|o| o.intended), Some(ms(5)));
        let mut outcome = Settled::Retry;
        while outcome == Settled::Retry {
            e.opening = e.to_open.take();
            outcome = e.open_interrupted();
        }
        assert_eq!(outcome, Settled::GaveUp);
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
