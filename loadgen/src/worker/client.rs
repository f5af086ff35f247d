//! One simulated phone inside a worker: its socket, its [`UserCore`] and its place in
//! the worker's schedule. The worker's event loop calls in when the client's wake-up
//! time comes or its socket is ready; everything else (what to send, when, what a
//! reply means) is the core's.

use super::clock::{Deadlines, Timeouts};
use super::quic::{Quic, QuicEvent};
use super::wire::{dial, io_kind, Wire};
use crate::profile::Profile;
use crate::stages::user_windows;
use crate::stats::{Op, Summary};
use crate::transport::Transport;
use crate::user::{Action, UserCore};
use mio::event::Event;
use mio::{Interest, Registry, Token};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::time::Duration;
use sut_core::passthrough::Backoff;
use sut_wire::protocol::{flush_rest, write_frame, ErrorCode, Frame, FrameReader, ReadStatus};
use sut_wire::signing::SigningKey;

/// What every client of a worker shares.
pub struct Shared<'a> {
    pub registry: &'a Registry,
    pub deadlines: &'a mut Deadlines,
    pub timeouts: &'a mut Timeouts,
    pub stats: &'a mut Summary,
    pub profile: &'a Profile,
    pub gateways: &'a [SocketAddr],
    /// Clients whose last window has ended.
    pub finished: usize,
    /// Friend lists, and shares on their way to friends.
    pub friends: &'a mut super::friends::Friends,
    /// The worker's QUIC endpoint, when any of its users goes over QUIC.
    pub quic: &'a mut Option<Quic>,
    /// The profile's network conditions.
    pub network: &'a crate::network::Network,
    /// What the worker's pre-push thread shares, when phones pre-download.
    pub pre_push: Option<&'a crate::pre_push::Shared>,
}

impl Shared<'_> {
    fn now_since(&self, earlier: Duration, now: Duration) -> u64 {
        now.saturating_sub(earlier).as_micros() as u64
    }
}

pub use sut_core::spread::spread as mix;

/// The gateway a user dials first: its id hashed over the gateway list.
pub fn home_gateway(user: u64, gateways: usize) -> usize {
    (mix(user) % gateways.max(1) as u64) as usize
}

enum Socket {
    Offline,
    Connecting(Wire),
    Online(Wire),
}

/// No wake-up pending.
const NEVER: Duration = Duration::MAX;

pub struct Client {
    core: UserCore,
    rng: SmallRng,
    socket: Socket,
    reader: FrameReader,
    /// Bytes of a request the socket did not take yet.
    unsent: Box<[u8]>,
    backoff: Backoff,
    /// The wake-up time this client is scheduled for; heap entries for other times are stale.
    pub wake_at: Duration,
    /// When the connect or request in progress times out; queue entries for other
    /// times are stale.
    pub timeout_at: Duration,
    window: u16,
    /// The session about to begin is the window's first: shakes count from the
    /// window's start, not from when the connection happened to complete.
    window_fresh: bool,
    window_end: Duration,
    connect_started: Duration,
    /// Added to the home gateway's index: each failure moves on to the next gateway.
    attempt: u16,
    gateway: u16,
    ever_connected: bool,
    /// Connects over QUIC (the worker's endpoint) rather than TCP.
    quic: bool,
    /// The session was online when the user's network changed, and has not been lost
    /// since: whether it survives the change is counted when it ends.
    changed: bool,
}

impl Client {
    /// A client for `user`, or `None` if the profile never connects that user.
    pub fn new(user: u64, slot: u32, auth: &SigningKey, sh: &mut Shared) -> Option<Client> {
        if sh
            .profile
            .behaviour
            .hostile
            .attack_of(user, sh.profile.seed)
            .is_some()
        {
            // Hostile users attack from the parent (see `crate::hostile`).
            return None;
        }
        let (start, end) = *user_windows(&sh.profile.stages, user).first()?;
        let mut rng = SmallRng::seed_from_u64(sh.profile.seed ^ mix(user));
        let adversarial =
            crate::profile::is_adversarial(user, sh.profile.seed, sh.profile.behaviour.adversarial);
        let core = UserCore::new(
            user,
            auth.auth_token(user),
            &sh.profile.behaviour,
            rng.random(),
            adversarial,
        );
        let mut client = Client {
            core,
            rng,
            socket: Socket::Offline,
            reader: FrameReader::default(),
            unsent: Box::default(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            wake_at: NEVER,
            timeout_at: NEVER,
            window: 0,
            window_fresh: true,
            window_end: end,
            connect_started: Duration::ZERO,
            attempt: 0,
            gateway: 0,
            ever_connected: false,
            quic: sh.quic.is_some()
                && sh.profile.behaviour.transport.of(user, sh.profile.seed) == Transport::Quic,
            changed: false,
        };
        client.schedule(start, slot, sh);
        Some(client)
    }

    fn schedule(&mut self, at: Duration, slot: u32, sh: &mut Shared) {
        if self.wake_at != at {
            self.wake_at = at;
            sh.deadlines.push(at, slot);
        }
    }

    /// Sets the deadline of the connect or request just started.
    fn time_out_after(&mut self, now: Duration, slot: u32, sh: &mut Shared) {
        self.timeout_at = now + sh.profile.behaviour.request_timeout;
        sh.timeouts.push(self.timeout_at, slot);
        // A wake-up set earlier (the next heartbeat, say) is moot until the reply.
        self.wake_at = NEVER;
    }

    /// The connect or request in progress ran out of time.
    pub fn on_timeout(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        self.timeout_at = NEVER;
        match &self.socket {
            Socket::Connecting(_) => {
                sh.stats.error(Op::Connect, "timeout");
                self.hang_up(sh);
                self.attempt = self.attempt.wrapping_add(1);
                self.retry(slot, now, sh);
            }
            Socket::Online(_) if self.in_flight() => {
                self.core.failed("timeout", sh.stats);
                self.lose(slot, now, sh, true);
            }
            _ => {}
        }
    }

    /// The user this client simulates.
    pub fn user(&self) -> u64 {
        self.core.user()
    }

    fn in_flight(&self) -> bool {
        self.core.intended().is_some()
    }

    /// A friend's share reached this user (by chat): it grabs at `due`.
    pub fn invite(&mut self, slot: u32, share_id: u64, due: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        self.core.invite(share_id, due);
        // Online and idle: wake for it. Otherwise the next poll (after the reply in
        // flight, or once connected) finds it.
        if matches!(self.socket, Socket::Online(_)) && !self.in_flight() && due < self.wake_at {
            self.schedule(due, slot, sh);
        }
    }

    /// The client's wake-up time came.
    pub fn on_wake(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        match &self.socket {
            Socket::Offline => {
                if now >= self.window_end {
                    self.next_window(slot, now, sh);
                } else {
                    self.connect(slot, now, sh);
                }
            }
            // Waiting for the connect: only its timeout matters.
            Socket::Connecting(_) => {}
            Socket::Online(_) => self.drive(slot, now, sh),
        }
    }

    fn connect(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        let n = sh.gateways.len();
        let index = (home_gateway(self.core.user(), n) + self.attempt as usize) % n;
        self.gateway = index as u16;
        let connected = match sh.quic.as_mut().filter(|_| self.quic) {
            Some(q) => {
                let condition = sh.network.condition_of(self.core.user(), sh.profile.seed);
                q.connect(
                    sh.gateways[index],
                    slot,
                    condition,
                    std::time::Instant::now(),
                )
                .map(Wire::Quic)
            }
            None => dial(sh.gateways[index], self.core.user()).and_then(|mut s| {
                sh.registry.register(
                    &mut s,
                    Token(slot as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(Wire::Tcp(s))
            }),
        };
        match connected {
            Ok(s) => {
                self.socket = Socket::Connecting(s);
                self.connect_started = now;
                self.time_out_after(now, slot, sh);
            }
            Err(e) => {
                // Out of files or ports: count it and come back later.
                sh.stats.error(Op::Connect, io_kind(&e));
                self.attempt = self.attempt.wrapping_add(1);
                self.retry(slot, now, sh);
            }
        }
    }

    fn retry(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        let delay = self.backoff.next_delay(self.rng.random());
        self.schedule(now + delay, slot, sh);
    }

    /// The socket is ready for something.
    pub fn on_ready(&mut self, slot: u32, event: &Event, now: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        match &mut self.socket {
            Socket::Offline | Socket::Connecting(Wire::Quic(_)) | Socket::Online(Wire::Quic(_)) => {
            }
            Socket::Connecting(Wire::Tcp(s)) => {
                let failed = match s.take_error() {
                    Ok(Some(_)) | Err(_) => true,
                    Ok(None) => match s.peer_addr() {
                        Ok(_) => false,
                        // Not connected yet: a spurious wake-up.
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                        Err(_) => true,
                    },
                };
                if failed {
                    return self.connect_failed("refused", slot, now, sh);
                }
                let _ = s.set_nodelay(true);
                self.connected(slot, now, sh);
            }
            Socket::Online(Wire::Tcp(_)) => {
                if event.is_writable() {
                    self.flush(slot, now, sh);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(slot, now, sh);
                }
            }
        }
    }

    /// What the worker's QUIC endpoint has for this client's connection.
    pub fn on_quic(&mut self, slot: u32, event: QuicEvent, now: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        match (&self.socket, event) {
            (Socket::Connecting(Wire::Quic(_)), QuicEvent::Connected) => {
                self.connected(slot, now, sh)
            }
            (Socket::Connecting(Wire::Quic(_)), QuicEvent::Lost(kind)) => {
                self.connect_failed(kind, slot, now, sh)
            }
            (Socket::Online(Wire::Quic(_)), QuicEvent::Readable) => self.read(slot, now, sh),
            (Socket::Online(Wire::Quic(_)), QuicEvent::Writable) => self.flush(slot, now, sh),
            (Socket::Online(Wire::Quic(_)), QuicEvent::Lost(kind)) => {
                self.core.failed(kind, sh.stats);
                self.lose(slot, now, sh, true);
            }
            _ => {}
        }
    }

    fn connect_failed(&mut self, kind: &'static str, slot: u32, now: Duration, sh: &mut Shared) {
        self.timeout_at = NEVER;
        sh.stats.error(Op::Connect, kind);
        self.hang_up(sh);
        self.attempt = self.attempt.wrapping_add(1);
        self.retry(slot, now, sh);
    }

    /// The connection is up: the session starts with the Hello.
    fn connected(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        self.timeout_at = NEVER;
        let latency = sh.now_since(self.connect_started, now);
        sh.stats.record(Op::Connect, latency);
        sh.stats.connected += 1;
        if let Some(part) = sh.stats.transport_part() {
            part.connected += 1;
        }
        self.backoff.reset();
        let Socket::Connecting(wire) = std::mem::replace(&mut self.socket, Socket::Offline) else {
            return;
        };
        self.socket = Socket::Online(wire);
        // The window's first session owes the shakes due since the window's start (a
        // slow connect makes them late, counted as such); after a drop, a phone skips
        // what it missed.
        let since = if std::mem::take(&mut self.window_fresh) {
            user_windows(&sh.profile.stages, self.core.user())
                .get(self.window as usize)
                .map_or(now, |w| w.0.min(now))
        } else {
            now
        };
        self.core.connected_since(now, since, self.window_end);
        self.drive(slot, now, sh);
    }

    /// Writes what the connection did not take of the last request.
    fn flush(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        let Socket::Online(wire) = &mut self.socket else {
            return;
        };
        if self.unsent.is_empty() {
            return;
        }
        match flush_rest(&self.unsent, |b| wire.write(sh.quic, b)) {
            Ok(rest) => self.unsent = rest,
            Err(_) => {
                self.core.failed("send_failed", sh.stats);
                self.lose(slot, now, sh, true);
            }
        }
    }

    fn transport(&self) -> Transport {
        if self.quic {
            Transport::Quic
        } else {
            Transport::Tcp
        }
    }

    /// The user's network changes now (a new address and port). A QUIC connection
    /// migrates and keeps its session; a TCP connection cannot, so the user reconnects
    /// (and a request in flight is lost).
    pub fn change_network(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        let Socket::Online(wire) = &self.socket else {
            return;
        };
        if let Some(part) = sh.stats.transport_part() {
            part.network_changes += 1;
        }
        match wire {
            Wire::Quic(h) => {
                let h = *h;
                if sh.quic.as_mut().is_some_and(|q| q.change_network(h)) {
                    self.changed = true;
                }
            }
            Wire::Tcp(_) => {
                if let Some(part) = sh.stats.transport_part() {
                    part.sessions_lost_to_change += 1;
                }
                if self.in_flight() {
                    self.core.failed("network_change", sh.stats);
                }
                self.lose(slot, now, sh, false);
            }
        }
    }

    /// Lets go of the connection, whatever it runs over.
    fn hang_up(&mut self, sh: &mut Shared) {
        let socket = std::mem::replace(&mut self.socket, Socket::Offline);
        if let Socket::Connecting(Wire::Quic(h)) | Socket::Online(Wire::Quic(h)) = socket {
            if let Some(q) = sh.quic.as_mut() {
                q.close(h, std::time::Instant::now());
            }
        }
    }

    fn read(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        loop {
            let Socket::Online(wire) = &mut self.socket else {
                return;
            };
            let status = self.reader.next_frame(|b| wire.read(sh.quic, b));
            match status {
                Ok(ReadStatus::Frame(frame)) => {
                    if let Some(p) = sh.pre_push {
                        crate::pre_push::greeting::on_frame(p, slot, &frame, sh.stats);
                    }
                    let had_hello = self.core.hello_done();
                    let roll: f64 = self.rng.random();
                    let ended = self.core.on_frame(frame, now, roll, sh.stats);
                    if let Some(share_id) = self.core.take_announcement() {
                        sh.friends
                            .announce(self.core.user(), share_id, now, &mut self.rng);
                    }
                    if !had_hello && self.core.hello_done() {
                        sh.stats.hello(self.gateway as usize);
                        if let Some(p) = sh.pre_push {
                            p.online(slot);
                        }
                        if !self.ever_connected {
                            self.ever_connected = true;
                            sh.stats.users_connected += 1;
                            if let Some(part) = sh.stats.transport_part() {
                                part.users_connected += 1;
                            }
                        }
                    }
                    if let Some(code) = ended {
                        // A full gateway sends us on to the next one at once.
                        let full = code == ErrorCode::GatewayFull;
                        if full {
                            self.attempt = self.attempt.wrapping_add(1);
                        }
                        return self.lose(slot, now, sh, !full);
                    }
                }
                Ok(ReadStatus::WouldBlock) => break,
                Ok(ReadStatus::Closed) => {
                    self.core.failed("closed", sh.stats);
                    return self.lose(slot, now, sh, true);
                }
                Err(e) => {
                    let kind = match e.code() {
                        Some(code) => code.name(),
                        None => "closed",
                    };
                    self.core.failed(kind, sh.stats);
                    return self.lose(slot, now, sh, true);
                }
            }
        }
        self.drive(slot, now, sh);
    }

    /// Lets the core act: send its next request, or sleep until it wants to.
    fn drive(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        if self.in_flight() {
            return;
        }
        self.timeout_at = NEVER;
        if !matches!(self.socket, Socket::Online(_)) {
            return;
        }
        match self.core.poll(now) {
            Action::Leave => {
                self.core.disconnected(sh.stats);
                self.hang_up(sh);
                self.reader = FrameReader::default();
                self.unsent = Box::default();
                sh.stats.connected -= 1;
                if let Some(part) = sh.stats.transport_part() {
                    part.connected -= 1;
                }
                self.next_window(slot, now, sh);
            }
            action @ (Action::Send(_) | Action::Share { .. }) => {
                let frame = match action {
                    Action::Share { token } => Frame::Share {
                        token,
                        friends: sh.friends.of(self.core.user()),
                    },
                    Action::Send(frame) => frame,
                    _ => return,
                };
                if let Some(intended) = self.core.due() {
                    let lag = sh.now_since(intended, now);
                    sh.stats.record_send_lag(lag);
                }
                let Socket::Online(wire) = &mut self.socket else {
                    return;
                };
                match write_frame(frame, |b| wire.write(sh.quic, b)) {
                    Ok(rest) => {
                        self.unsent = rest;
                        self.time_out_after(now, slot, sh);
                    }
                    Err(_) => {
                        self.core.failed("send_failed", sh.stats);
                        self.lose(slot, now, sh, true);
                    }
                }
            }
            Action::WaitUntil(t) => self.schedule(t, slot, sh),
            Action::Hop => {
                // The next gateway in the list, at once; not a drop.
                self.attempt = self.attempt.wrapping_add(1);
                sh.stats.hops += 1;
                self.lose(slot, now, sh, false);
            }
        }
    }

    /// The connection is gone (closed, timed out, refused): reconnect after a backoff.
    fn lose(&mut self, slot: u32, now: Duration, sh: &mut Shared, drop: bool) {
        self.core.disconnected(sh.stats);
        if std::mem::take(&mut self.changed) && drop {
            if let Some(part) = sh.stats.transport_part() {
                part.sessions_lost_to_change += 1;
            }
        }
        if matches!(self.socket, Socket::Online(_)) {
            sh.stats.connected -= 1;
            if drop {
                sh.stats.drops += 1;
            }
            if let Some(part) = sh.stats.transport_part() {
                part.connected -= 1;
                part.drops += u64::from(drop);
            }
        }
        self.hang_up(sh);
        self.reader = FrameReader::default();
        self.unsent = Box::default();
        self.timeout_at = NEVER;
        if drop {
            self.retry(slot, now, sh);
        } else {
            self.schedule(now, slot, sh);
        }
    }

    fn next_window(&mut self, slot: u32, now: Duration, sh: &mut Shared) {
        self.window += 1;
        let windows = user_windows(&sh.profile.stages, self.core.user());
        match windows.get(self.window as usize) {
            Some(&(start, end)) => {
                self.window_end = end;
                self.window_fresh = true;
                self.schedule(start.max(now), slot, sh);
            }
            None => {
                self.wake_at = NEVER;
                sh.finished += 1;
                if let Some(p) = sh.pre_push {
                    p.offline(slot);
                }
            }
        }
    }

    /// Closes the connection at once (the run was stopped).
    pub fn stop(&mut self, sh: &mut Shared) {
        sh.stats.recording = self.transport();
        self.core.disconnected(sh.stats);
        if matches!(self.socket, Socket::Online(_)) {
            sh.stats.connected -= 1;
            if let Some(part) = sh.stats.transport_part() {
                part.connected -= 1;
            }
        }
        self.hang_up(sh);
        self.wake_at = NEVER;
        self.timeout_at = NEVER;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker holds ~19,000 of these; the budget is 1 KiB per connection in all, with
    /// the cookie, the wake-up entries and the process's own costs on top.
    #[test]
    fn a_client_fits_its_memory_budget() {
        let size = std::mem::size_of::<Client>();
        assert!(size <= 512, "Client grew to {size} bytes");
    }

    #[test]
    fn users_spread_over_gateways() {
        let mut counts = [0usize; 4];
        for u in 0..4000 {
            counts[home_gateway(u, 4)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
