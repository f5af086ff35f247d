//! One simulated user, as a state machine with no I/O: the shell feeds it the time and
//! the frames that arrive, and it says what to send next and when.
//!
//! Shakes follow an open-loop schedule: the k-th shake is *intended* at
//! `first + k × interval(tier)` whatever happened before, and its latency is measured
//! from that intended time, so a slow reply that delays the next send is charged to the
//! system under test (coordinated omission corrected, as wrk2 does). The interval is
//! the one the server's throttle tier asks for.

mod money;
mod split;

use crate::profile::Behaviour;
use crate::stats::{Op, Summary};
use bytes::Bytes;
use split::{Errands, Opening, Settled, Task};
use std::time::Duration;
use sut_wire::protocol::{ErrorCode, Frame, Outcome};
use sut_wire::signing::MAC_LEN;

/// What the shell should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `frame` and wait for its reply (one request in flight per connection).
    Send(Frame),
    /// Share the pot of the envelope this token opened: the shell names the user's
    /// friends in the `Share` frame and sends it (the request is in flight already).
    Share { token: Bytes },
    /// Close this connection and connect to the next gateway at once (an adversarial
    /// user hopping after an envelope).
    Hop,
    /// Nothing to send before this time (from the run's start).
    WaitUntil(Duration),
    /// The user's window is over: close the connection.
    Leave,
}

/// Stands for "never" where a time must still add up without overflowing.
const NEVER: Duration = Duration::from_secs(1 << 40);

/// A simulated user's state across its connections. A worker holds tens of thousands
/// of these, so it stays small.
#[derive(Debug)]
pub struct UserCore {
    user: u64,
    auth: [u8; MAC_LEN],
    /// Time between the shakes the user wants (the profile's `shake_rate`, inverted).
    desire: Duration,
    /// The least time between shakes the gateway asked for, with its tier.
    server_interval: Duration,
    open_probability: f64,
    heartbeat: Duration,
    tier: u8,
    cookie: Bytes,
    hello_done: bool,
    next_shake: Duration,
    last_sent: Duration,
    /// When this session was meant to begin (its window's start, or the reconnect).
    session_from: Duration,
    /// How much sooner than a full interval the first heartbeat of a connection comes.
    beat_early: Duration,
    phase: f64,
    in_flight: Option<(Op, Duration)>,
    leave_at: Duration,
    /// Desired shakes the shake in flight stands for.
    coalesced: u32,
    /// When the last shake request was intended: a new interval counts from there.
    last_shake: Option<Duration>,
    /// Cheats: drops its cookie (even ids) or replays the first one it got (odd ids),
    /// hops gateways after each envelope, grabs its own shares and grabs twice.
    adversarial: bool,
    hop_pending: bool,
    share_probability: f64,
    /// Shares and grabs to do; boxed, and only while there are any.
    errands: Option<Box<Errands>>,
    /// The envelopes this client received: the client's own count of the limits.
    received: Received,
    /// How much later than intended the request in flight was due this time, in ms:
    /// a retry's wait (see [`UserCore::due`]). A u32, for the client's size budget.
    retry_shift_ms: u32,
}

/// The sponsors of the envelopes a client received, as far as the limits go: what the
/// user got, whatever the servers recorded (an issue recorded just before its gateway
/// crashed may never reach the user).
#[derive(Debug, Default, Clone, Copy)]
struct Received {
    sponsors: [u16; sut_wire::cookie::MAX_ENVELOPES_PER_USER],
    count: u8,
    over: bool,
}

impl Received {
    /// Counts an envelope of `sponsor`; true the first time the count passes the limits
    /// (more than 3 envelopes, or 2 of one sponsor).
    fn add(&mut self, sponsor: u16) -> bool {
        let n = usize::from(self.count);
        let seen = self.sponsors[..n.min(self.sponsors.len())].contains(&sponsor);
        if n < self.sponsors.len() {
            self.sponsors[n] = sponsor;
        }
        self.count = self.count.saturating_add(1);
        let over = seen || n >= self.sponsors.len();
        let first = over && !self.over;
        self.over |= over;
        first
    }
}

/// The time between a user's desired shakes; a rate of 0 never shakes.
fn desire_interval(rate: f64) -> Duration {
    if rate > 0.0 && rate.is_finite() {
        Duration::from_secs_f64(1.0 / rate).min(NEVER)
    } else {
        NEVER
    }
}

impl UserCore {
    /// `phase` in [0, 1) spreads users' first shakes over one interval, and the first
    /// heartbeat of each connection over one heartbeat interval: a population of
    /// long-lived connections beats evenly, not in the wave of its own ramp.
    pub fn new(
        user: u64,
        auth: [u8; MAC_LEN],
        behaviour: &Behaviour,
        phase: f64,
        adversarial: bool,
    ) -> Self {
        UserCore {
            user,
            auth,
            desire: desire_interval(behaviour.shake_rate),
            server_interval: Duration::ZERO,
            open_probability: behaviour.open_probability,
            heartbeat: behaviour.heartbeat_interval,
            tier: 0,
            cookie: Bytes::new(),
            hello_done: false,
            next_shake: desire_interval(behaviour.shake_rate).mul_f64(phase.clamp(0.0, 1.0)),
            last_sent: Duration::ZERO,
            session_from: Duration::ZERO,
            beat_early: Duration::ZERO,
            phase: phase.clamp(0.0, 1.0),
            in_flight: None,
            leave_at: Duration::ZERO,
            coalesced: 1,
            last_shake: None,
            adversarial,
            hop_pending: false,
            share_probability: behaviour.split.share_probability,
            errands: None,
            received: Received::default(),
            retry_shift_ms: 0,
        }
    }

    /// A friend shared a pot to this user: grab a part at `due`.
    pub fn invite(&mut self, share_id: u64, due: Duration) {
        self.errands
            .get_or_insert_default()
            .add(Task::Grab(share_id), due);
    }

    /// A share the server accepted, for the shell to tell the friends about (once).
    pub fn take_announcement(&mut self) -> Option<u64> {
        let id = self.errands.as_mut()?.take_announcement();
        self.tidy();
        id
    }

    /// Drops the errands' box once nothing is left in it.
    fn tidy(&mut self) {
        if self.errands.as_ref().is_some_and(|e| e.is_idle()) {
            self.errands = None;
        }
    }

    /// The reply to a share or grab in flight: counted by result; passing refusals
    /// are tried again, and count as errors only when the tries run out.
    fn settle_errand(&mut self, op: Op, code: u16, now: Duration, stats: &mut Summary) {
        let name = ErrorCode::from_u16(code)
            .map(|c| c.name())
            .unwrap_or("unknown");
        let settled = match self.errands.as_mut() {
            Some(e) => e.settle(code, now),
            None => Settled::Done,
        };
        match (code, settled) {
            (0, _) => stats.split_outcome(op, "ok"),
            (_, Settled::Done) => stats.split_outcome(op, name),
            (_, Settled::Retry) => stats.split_outcome(op, "retried"),
            (_, Settled::GaveUp) => stats.error(op, name),
        }
    }

    pub fn user(&self) -> u64 {
        self.user
    }

    /// The intended send time of the request in flight.
    pub fn intended(&self) -> Option<Duration> {
        self.in_flight.map(|(_, t)| t)
    }

    /// When the request in flight was due to go out this time: its intended time, or
    /// for a retried share or grab the retry's time (its latency still counts from the
    /// first try). The generator's own lateness is measured against this.
    pub fn due(&self) -> Option<Duration> {
        self.in_flight
            .map(|(_, t)| t + Duration::from_millis(u64::from(self.retry_shift_ms)))
    }

    pub fn tier(&self) -> u8 {
        self.tier
    }

    /// Whether the current connection's Hello was acknowledged.
    pub fn hello_done(&self) -> bool {
        self.hello_done
    }

    /// The time between shake requests: the user's desire, coalesced into at most one
    /// request per interval the server asked for.
    fn interval(&self) -> Duration {
        self.desire.max(self.server_interval)
    }

    /// The connection is gone (however it ended): the user leaves its tier's count.
    pub fn disconnected(&mut self, stats: &mut Summary) {
        if self.hello_done {
            stats.leave_tier(self.tier);
        }
        self.hello_done = false;
        self.in_flight = None;
    }

    /// A new connection is up at `now`; the user stays until `leave_at`. Shakes missed
    /// while disconnected are skipped, not fired in a burst: a phone does not queue them.
    pub fn connected(&mut self, now: Duration, leave_at: Duration) {
        self.connected_since(now, now, leave_at)
    }

    /// As [`UserCore::connected`], owing the shakes due from `since` (the intended
    /// time of this connection) on: they go late, their lateness counted.
    pub fn connected_since(&mut self, now: Duration, since: Duration, leave_at: Duration) {
        self.hello_done = false;
        self.session_from = since;
        self.in_flight = None;
        self.leave_at = leave_at;
        self.last_sent = now;
        self.beat_early = self.heartbeat.mul_f64(1.0 - self.phase);
        let interval = self.interval();
        if self.next_shake < since {
            let behind = (since - self.next_shake).as_nanos() / interval.as_nanos().max(1);
            self.next_shake += interval * (behind as u32 + 1);
        }
    }

    pub fn poll(&mut self, now: Duration) -> Action {
        if self.in_flight.is_some() {
            // The shell waits for the reply; nothing else goes out meanwhile.
            return Action::WaitUntil(now + self.heartbeat);
        }
        // A shake the schedule intended before the user leaves still goes, late, with
        // its lateness counted: what a user sends depends on its schedule alone, not on
        // how promptly this poll came (the same run gives the same shakes anywhere).
        let shake_owed = self.hello_done && self.next_shake < self.leave_at;
        if now >= self.leave_at && !shake_owed {
            return Action::Leave;
        }
        if !self.hello_done {
            return self.send(
                Op::Hello,
                now,
                Frame::Hello {
                    user_id: self.user,
                    auth_token: Bytes::copy_from_slice(&self.auth),
                },
            );
        }
        // Past the leave time only the owed shake goes; errands end with the session.
        let leaving = now >= self.leave_at;
        if let Some(e) = self.errands.as_mut().filter(|_| !leaving) {
            if let Some(o) = e.to_open.take() {
                // Kept until its reply: it may become a share, or go out again.
                let (token, intended) = (o.token.clone(), o.intended);
                e.opening = Some(o);
                return self.send(Op::Open, intended, Frame::Open { token });
            }
        }
        if let Some(e) = self
            .errands
            .as_mut()
            .filter(|_| !leaving)
            .and_then(|e| e.start(now))
        {
            let (intended, due) = (e.first_due, e.due);
            let action = match e.task.clone() {
                Task::Share(token) => {
                    self.begin(Op::Share, intended);
                    Action::Share { token }
                }
                Task::Grab(share_id) | Task::GrabAgain { share_id, .. } => {
                    self.send(Op::Grab, intended, Frame::Grab { share_id })
                }
                Task::OpenAgain { token, .. } => {
                    self.send(Op::Open, intended, Frame::Open { token })
                }
            };
            let shift = due.saturating_sub(intended).as_millis();
            self.retry_shift_ms = shift.min(u32::MAX as u128) as u32;
            return action;
        }
        if self.hop_pending && !leaving {
            self.hop_pending = false;
            return Action::Hop;
        }
        if now >= self.next_shake {
            let intended = self.next_shake;
            let interval = self.interval();
            self.next_shake += interval;
            self.last_shake = Some(intended);
            // The shakes the user wanted in this interval all ride on this one request.
            self.coalesced = (interval.as_secs_f64() / self.desire.as_secs_f64()).max(1.0) as u32;
            // An adversarial user never shows the limits it has reached: it sends no
            // cookie, or replays its first (see `on_frame`).
            let cookie = if self.adversarial && self.user.is_multiple_of(2) {
                Bytes::new()
            } else {
                self.cookie.clone()
            };
            return self.send(Op::Shake, intended, Frame::Shake { cookie });
        }
        let heartbeat_due = self.last_sent + self.heartbeat.saturating_sub(self.beat_early);
        if now >= heartbeat_due {
            return self.send(Op::Heartbeat, heartbeat_due, Frame::Heartbeat);
        }
        let errand_due = self
            .errands
            .as_ref()
            .and_then(|e| e.next_due())
            .unwrap_or(NEVER);
        Action::WaitUntil(
            self.next_shake
                .min(heartbeat_due)
                .min(self.leave_at)
                .min(errand_due),
        )
    }

    fn send(&mut self, op: Op, intended: Duration, frame: Frame) -> Action {
        self.begin(op, intended);
        Action::Send(frame)
    }

    /// Marks a request of `op` intended at `intended` in flight.
    fn begin(&mut self, op: Op, intended: Duration) {
        self.in_flight = Some((op, intended));
        self.retry_shift_ms = 0;
        self.last_sent = self.last_sent.max(intended);
        if op != Op::Hello {
            self.beat_early = Duration::ZERO;
        }
    }

    /// A frame arrived at `now`; `roll` in [0, 1) decides whether a won envelope is opened.
    /// Returns the error code if the server closed the session with an Error frame.
    pub fn on_frame(
        &mut self,
        frame: Frame,
        now: Duration,
        roll: f64,
        stats: &mut Summary,
    ) -> Option<ErrorCode> {
        let Some((op, intended)) = self.in_flight.take() else {
            // Unsolicited: the server is closing the session (shutdown, timeout).
            if let Frame::Error { code, .. } = frame {
                let code = ErrorCode::from_u16(code);
                *stats
                    .errors_by_kind
                    .entry(format!(
                        "session/{}",
                        code.map(|c| c.name()).unwrap_or("unknown")
                    ))
                    .or_default() += 1;
                return code.or(Some(ErrorCode::Unexpected));
            }
            return None;
        };
        let latency_us = now.saturating_sub(intended).as_micros() as u64;
        match (op, frame) {
            (
                Op::Hello,
                Frame::HelloAck {
                    tier,
                    shake_interval_ms,
                    ..
                },
            ) => {
                self.hello_done = true;
                stats.enter_tier(self.tier);
                self.set_tier(tier, shake_interval_ms, stats);
                stats.record(op, latency_us);
            }
            (
                Op::Shake,
                Frame::ShakeReply {
                    outcome,
                    tier,
                    shake_interval_ms,
                    cookie,
                    config_version,
                    ..
                },
            ) => {
                if outcome != Outcome::ComeBackLater {
                    *stats.versions.entry(config_version).or_default() += 1;
                }
                // The shake histogram holds shakes that got a decision; "come back
                // later" replies (no work done) are only counted, as an outcome.
                if outcome != Outcome::ComeBackLater {
                    stats.record(op, latency_us);
                }
                stats.desired_shakes += self.coalesced as u64;
                // A replaying cheater keeps the first cookie it was given.
                let replays = self.adversarial && !self.user.is_multiple_of(2);
                if !replays || self.cookie.is_empty() {
                    self.cookie = cookie;
                }
                let name = match outcome {
                    Outcome::Nothing => "nothing",
                    Outcome::ComeBackLater => "come_back_later",
                    Outcome::Greeting { .. } => "greeting",
                    Outcome::Envelope { token, sponsor, .. } => {
                        stats.record_win(latency_us);
                        if self.received.add(sponsor) {
                            stats.received_over_limit.push(self.user);
                        }
                        if roll < self.open_probability {
                            self.errands.get_or_insert_default().to_open = Some(Opening {
                                token,
                                intended: now,
                                tries: 0,
                            });
                        }
                        self.hop_pending = self.adversarial;
                        "envelope"
                    }
                };
                stats.outcome(name, tier);
                self.set_tier(tier, shake_interval_ms, stats);
            }
            (Op::Open, Frame::OpenReply { code, amount_cents }) => {
                self.on_open_reply(code, amount_cents, latency_us, now, roll, stats)
            }
            (Op::Share, Frame::ShareReply { code, share_id, .. }) => {
                if code == 0 {
                    stats.record(op, latency_us);
                    if let Some(e) = self.errands.as_mut() {
                        e.announce(share_id);
                        if self.adversarial {
                            // Bad input: a cheater tries to grab its own share.
                            let task = Task::GrabAgain {
                                share_id,
                                told: None,
                            };
                            e.add(task, now);
                        }
                    }
                }
                self.settle_errand(op, code, now, stats);
                self.tidy();
            }
            (Op::Grab, Frame::GrabReply { code, amount_cents }) => {
                self.on_grab_reply(code, amount_cents, latency_us, now, stats)
            }
            (Op::Heartbeat, Frame::HeartbeatAck { .. }) => stats.record(op, latency_us),
            (_, Frame::Error { code, .. }) => {
                if let Some(e) = self.errands.as_mut() {
                    if e.current().is_some() {
                        e.interrupted();
                    } else if op == Op::Open {
                        // Refused outright: nothing to open any more.
                        e.opening = None;
                    }
                }
                self.tidy();
                let code = ErrorCode::from_u16(code);
                stats.error(op, code.map(|c| c.name()).unwrap_or("unknown"));
                if code == Some(ErrorCode::CookieInvalid) {
                    self.cookie = Bytes::new();
                }
                // Errors to Hello end the session; errors to requests do not.
                if op == Op::Hello {
                    return code.or(Some(ErrorCode::Unexpected));
                }
            }
            (_, _) => stats.error(op, "unexpected_reply"),
        }
        None
    }

    /// The request in flight got no reply (timeout or closed connection).
    /// An open, share or grab goes out again (the server answers a repeat with its
    /// original answer, so the user learns what it got without doubling it).
    pub fn failed(&mut self, kind: &str, stats: &mut Summary) {
        if let Some((op, _)) = self.in_flight.take() {
            stats.error(op, kind);
            if let Some(e) = self.errands.as_mut() {
                if e.current().is_some() {
                    e.interrupted();
                } else if op == Op::Open {
                    e.open_interrupted();
                }
            }
        }
    }

    fn set_tier(&mut self, tier: u8, interval_ms: u32, stats: &mut Summary) {
        let interval = Duration::from_millis(interval_ms as u64);
        if tier != self.tier {
            stats.change_tier(self.tier, tier);
            self.tier = tier;
        }
        if interval != self.server_interval {
            self.server_interval = interval;
            // Obey at once: the next shake waits the new interval from the last one (or
            // comes sooner, when the gateway relaxes).
            // Each user waits between one and one and a half intervals (by its own
            // phase), so that clients told at once do not all come back at once.
            match self.last_shake {
                Some(last) => {
                    self.next_shake = last + self.interval().mul_f64(1.0 + 0.5 * self.phase)
                }
                // Told a raised tier before its first shake (in the HelloAck): the first
                // shake comes somewhere in the first interval of the session, not at
                // once; counted from when the session was meant to begin, so that the
                // schedule does not depend on how fast the Hello was answered.
                None if self.server_interval > self.desire => {
                    self.next_shake = self
                        .next_shake
                        .max(self.session_from + self.server_interval.mul_f64(self.phase));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
