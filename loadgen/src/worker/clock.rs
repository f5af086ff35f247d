//! Time in a worker: one monotonic clock shared by every user, a heap of wake-up times,
//! and one kernel timer (timerfd) armed for the earliest of them.
//!
//! A timer per connection would cost memory a million times over; a sleep with
//! millisecond granularity (epoll's timeout) would add up to a millisecond to every
//! latency, since latency counts from the intended send time. The timerfd wakes the
//! loop at the intended nanosecond, with one descriptor for the whole worker.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::time::{clock_gettime, ClockId as Clock};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds on CLOCK_MONOTONIC, the clock the timerfd runs on.
fn monotonic_ns() -> i128 {
    clock_gettime(Clock::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
        .unwrap_or(0)
}

/// The run's clock: time since the common start, which every worker (and every machine
/// running a segment) agrees on as a Unix time.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start_ns: i128,
}

impl RunClock {
    /// A clock whose zero is `start_unix_ms`.
    pub fn starting_at(start_unix_ms: i64) -> RunClock {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let until_start = start_unix_ms as i128 * 1_000_000 - unix_now;
        RunClock {
            start_ns: monotonic_ns() + until_start,
        }
    }

    /// Time since the start; zero before it.
    pub fn now(&self) -> Duration {
        let ns = (monotonic_ns() - self.start_ns).max(0);
        Duration::from_nanos(ns as u64)
    }

    fn absolute(&self, at: Duration) -> TimeSpec {
        let ns = (self.start_ns + at.as_nanos() as i128).max(1);
        TimeSpec::new((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64)
    }
}

/// Wake-up times of the worker's users. Each user keeps at most one live entry (the
/// time it was last scheduled for); entries for a time the user no longer wants are
/// skipped when they surface, which is cheaper than removing them.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Duration, u32)>>,
}

impl Deadlines {
    pub fn push(&mut self, at: Duration, slot: u32) {
        self.heap.push(Reverse((at, slot)));
    }

    pub fn next(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest entry.
    pub fn peek(&self) -> Option<(Duration, u32)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// The next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<(Duration, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

/// Deadlines of one fixed length (the request timeout), in the order they were set.
/// Since every deadline is `now + the same timeout`, they come due in that order: a queue
/// does what a heap would, in O(1), and keeps the heap for the wake-ups that do vary.
/// As with [`Deadlines`], entries a client no longer holds are skipped.
#[derive(Debug, Default)]
pub struct Timeouts {
    queue: std::collections::VecDeque<(Duration, u32)>,
}

impl Timeouts {
    pub fn push(&mut self, at: Duration, slot: u32) {
        debug_assert!(self.queue.back().is_none_or(|(last, _)| *last <= at));
        self.queue.push_back((at, slot));
    }

    pub fn peek(&self) -> Option<(Duration, u32)> {
        self.queue.front().copied()
    }

    pub fn pop_due(&mut self, now: Duration) -> Option<(Duration, u32)> {
        match self.queue.front() {
            Some((at, _)) if *at <= now => self.queue.pop_front(),
            _ => None,
        }
    }

    pub fn pop(&mut self) {
        self.queue.pop_front();
    }
}

/// The least time between two timer wake-ups of a worker. Each wake-up costs system
/// calls and a switch back into the process; at tens of thousands of requests a second
/// spread over thousands of users, nearly every request would be due at a moment of
/// its own. Waking at most once per slack sends all that came due meanwhile together,
/// each up to this much late: counted, as any lateness is, in the send lag and (since
/// latency counts from the intended time) in the latency.
pub const SEND_SLACK: Duration = Duration::from_micros(50);

/// When to wake for the earliest pending time `next`, the loop being at `now` with
/// everything due by `now` done: not sooner than [`SEND_SLACK`] from now.
pub fn coalesce(next: Duration, now: Duration) -> Duration {
    next.max(now + SEND_SLACK)
}

/// The worker's one kernel timer.
pub struct Alarm {
    fd: TimerFd,
    armed: Option<Duration>,
}

impl Alarm {
    pub fn new() -> nix::Result<Alarm> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Alarm { fd, armed: None })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// Wakes the loop at `at` (run time); re-arming for the same time costs nothing.
    pub fn arm(&mut self, clock: &RunClock, at: Duration) -> nix::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        self.fd.set(
            Expiration::OneShot(clock.absolute(at)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        )?;
        self.armed = Some(at);
        Ok(())
    }

    /// Called when the timer fired: it must be re-armed before it fires again. Its
    /// expiration count is not read: re-arming resets it (timerfd_settime(2)), and under
    /// edge-triggered epoll each expiration is an event of its own. That saves a system
    /// call per wake-up.
    pub fn fired(&mut self) {
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_surface_in_time_order_and_only_when_due() {
        let mut d = Deadlines::default();
        let ms = Duration::from_millis;
        d.push(ms(30), 1);
        d.push(ms(10), 2);
        d.push(ms(20), 3);
        assert_eq!(d.next(), Some(ms(10)));
        assert_eq!(d.pop_due(ms(5)), None);
        assert_eq!(d.pop_due(ms(25)), Some((ms(10), 2)));
        assert_eq!(d.pop_due(ms(25)), Some((ms(20), 3)));
        assert_eq!(d.pop_due(ms(25)), None);
        assert_eq!(d.peek(), Some((ms(30), 1)));
    }

    #[test]
    fn timeouts_come_due_in_order() {
        let mut t = Timeouts::default();
        let ms = Duration::from_millis;
        t.push(ms(10), 1);
        t.push(ms(10), 2);
        t.push(ms(30), 3);
        assert_eq!(t.pop_due(ms(9)), None);
        assert_eq!(t.pop_due(ms(10)), Some((ms(10), 1)));
        assert_eq!(t.peek(), Some((ms(10), 2)));
        t.pop();
        assert_eq!(t.pop_due(ms(29)), None);
        assert_eq!(t.pop_due(ms(31)), Some((ms(30), 3)));
    }

    #[test]
    fn a_clock_started_in_the_past_reads_the_elapsed_time() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let clock = RunClock::starting_at(now_ms - 5_000);
        let t = clock.now();
        assert!(t >= Duration::from_secs(5), "{t:?}");
        assert_eq!(RunClock::starting_at(now_ms + 60_000).now(), Duration::ZERO);
    }
}
