//! A load generator worker: one process, one thread, one event loop (mio over epoll)
//! driving a segment of the profile's users.
//!
//! Why not a task per user on an async runtime: a worker holds up to ~20,000 long
//! connections (the open-file limit), and a task with its own timer and framed buffers
//! costs several KiB each. Here a user is a plain struct of a few hundred bytes, reads
//! land in one scratch buffer per worker, and one kernel timer wakes the loop at the
//! next user's intended send time (see [`clock`]).
//!
//! Every `report_every`, and once at the end, the worker hands its parent what it
//! measured since the last report (a [`WorkerReport`]); the parent merges them exactly.
//!
//! With a profile's `pre_push:`, one more thread runs the users' phones' downloads
//! (`crate::pre_push`) beside the loop, sharing only atomics and a few locks with it.

mod client;
pub mod clock;
mod friends;
mod quic;
mod wire;

pub use client::{home_gateway, mix};
pub use friends::Mail;

use crate::network::Network;
use crate::profile::Profile;
use crate::segment::Segment;
use crate::stats::{Summary, WireError, WireSummary};
use crate::transport::Transport;
use client::{Client, Shared};
use clock::{Alarm, Deadlines, RunClock, Timeouts};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use quic::Quic;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;
use sut_wire::signing::SigningKey;
use thiserror::Error;

/// What a worker sends its parent, as a length-prefixed postcard message on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's last report: it is about to exit.
    pub last: bool,
    /// What happened since the previous report (`connected` is the current level).
    pub summary: WireSummary,
}

/// Everything a worker writes to its parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerMessage {
    Report(Box<WorkerReport>),
    /// Shares for friends simulated in other workers (see [`friends`]).
    Mail(Vec<Mail>),
}

/// What the worker hands its writer: a report, or mail for the parent to route.
pub enum Out<'a> {
    Report { summary: &'a Summary, last: bool },
    Mail(&'a [Mail]),
}

/// The largest frame of mail a worker accepts on its stdin.
const MAX_INBOX_FRAME: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("event loop: {0}")]
    Poll(#[source] io::Error),
    #[error("timer: {0}")]
    Timer(#[from] nix::Error),
    #[error("cannot send a report to the parent: {0}")]
    Report(#[source] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the parent sent a mail frame that does not decode ({0})")]
    Inbox(String),
}

pub struct WorkerConfig {
    /// Where phones pre-download resources, when the profile has them do it.
    pub pre_push: Option<crate::pre_push::Target>,
    /// How QUIC users connect (trusting the gateways' certificate), when there are any.
    pub quic: Option<quinn_proto::ClientConfig>,
    pub profile: Profile,
    pub segment: Segment,
    /// The users a share's notice can reach (the run's, or this machine's segment).
    pub reach: Segment,
    pub gateways: Vec<SocketAddr>,
    pub auth: SigningKey,
    /// The common start, Unix ms: stages count from here in every worker.
    pub start_unix_ms: i64,
    pub report_every: Duration,
}

const ALARM: Token = Token(usize::MAX - 1);
const STOP: Token = Token(usize::MAX - 2);
const QUIC: Token = Token(usize::MAX - 3);
/// The second QUIC socket, which connections whose network changed send from.
const QUIC_MOVED: Token = Token(usize::MAX - 4);

/// QUIC's idle timeout for a profile's users: past the gateway's own heartbeat timeout
/// for them (three heartbeat intervals, at least 30 s), so that the session's deadline,
/// which answers with a reason, comes first.
pub fn quic_idle(profile: &Profile) -> Duration {
    (profile.behaviour.heartbeat_interval * 3).max(Duration::from_secs(30))
        + Duration::from_secs(10)
}

/// The worker's QUIC endpoint, registered with its poll, when it has QUIC users.
fn quic_endpoint(
    config: &WorkerConfig,
    network: &Network,
    registry: &mio::Registry,
) -> Result<Option<Quic>, WorkerError> {
    let Some(client) = config.quic.clone() else {
        return Ok(None);
    };
    let any = match config.gateways.first() {
        Some(SocketAddr::V6(_)) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        _ => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
    };
    let mut quic = Quic::new(
        any,
        client,
        network.clone(),
        config.profile.seed ^ config.segment.index,
    )
    .map_err(WorkerError::Poll)?;
    let (first, second) = quic.sockets();
    registry
        .register(first, QUIC, Interest::READABLE)
        .map_err(WorkerError::Poll)?;
    if let Some(second) = second {
        registry
            .register(second, QUIC_MOVED, Interest::READABLE)
            .map_err(WorkerError::Poll)?;
    }
    Ok(Some(quic))
}

/// Hands the QUIC endpoint's news to the clients, and sends what they wrote in turn.
fn pump_quic(clients: &mut [Client], now: Duration, sh: &mut Shared) {
    for _ in 0..4 {
        let Some(q) = sh.quic.as_mut() else { return };
        q.flush(std::time::Instant::now());
        let events = std::mem::take(&mut q.events);
        if events.is_empty() {
            return;
        }
        for (slot, event) in events {
            if let Some(client) = clients.get_mut(slot as usize) {
                client.on_quic(slot, event, now, sh);
            }
        }
    }
}

/// Moves the count of datagrams that reached changed addresses into the QUIC figures.
fn take_migrations(sh: &mut Shared) {
    if let Some(q) = sh.quic.as_mut() {
        let n = std::mem::take(&mut q.received_moved);
        if let Some(part) = sh.stats.by_transport.get_mut(Transport::Quic as usize) {
            part.datagrams_to_new_address += n;
        }
    }
}

/// The next QUIC timer on the run's clock.
fn quic_wake(quic: &mut Option<Quic>, now: Duration) -> Option<Duration> {
    let at = quic.as_mut()?.next_wake()?;
    Some(now + at.saturating_duration_since(std::time::Instant::now()))
}
/// Writes one report to `out` as `u32 big-endian length` + postcard bytes.
pub fn write_message(out: &mut impl Write, message: Out<'_>) -> Result<(), WorkerError> {
    let message = match message {
        Out::Report { summary, last } => WorkerMessage::Report(Box::new(WorkerReport {
            last,
            summary: summary.to_wire()?,
        })),
        Out::Mail(mail) => WorkerMessage::Mail(mail.to_vec()),
    };
    let bytes = postcard::to_stdvec(&message)
        .map_err(|e| WorkerError::Report(io::Error::other(e.to_string())))?;
    out.write_all(&(bytes.len() as u32).to_be_bytes())
        .and_then(|_| out.write_all(&bytes))
        .and_then(|_| out.flush())
        .map_err(WorkerError::Report)
}

/// The parent's end of the worker's stdin: mail frames (a 4-byte length, then a
/// postcard list of [`Mail`]) until it closes, which means stop.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    /// Reads what is there; `true` once the parent closed it.
    fn read(
        &mut self,
        fd: &std::os::fd::BorrowedFd,
        friends: &mut friends::Friends,
    ) -> Result<bool, WorkerError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Ok(true),
            }
        }
        while self.buf.len() >= 4 {
            let len =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > MAX_INBOX_FRAME {
                return Err(WorkerError::Inbox(format!("a frame of {len} bytes")));
            }
            if self.buf.len() < 4 + len {
                break;
            }
            let mail: Vec<Mail> = postcard::from_bytes(&self.buf[4..4 + len])
                .map_err(|e| WorkerError::Inbox(e.to_string()))?;
            friends.receive(&mail);
            self.buf.drain(..4 + len);
        }
        Ok(false)
    }
}

/// Runs the segment to its end (or until `stop` — the parent's end of a pipe — closes),
/// sending reports through `report`.
pub fn run(
    config: WorkerConfig,
    stop: Option<&std::os::fd::BorrowedFd>,
    mut report: impl FnMut(Out<'_>) -> Result<(), WorkerError>,
) -> Result<(), WorkerError> {
    let mut poll = Poll::new().map_err(WorkerError::Poll)?;
    let mut alarm = Alarm::new()?;
    let registry = poll.registry().try_clone().map_err(WorkerError::Poll)?;
    registry
        .register(&mut SourceFd(&alarm.raw_fd()), ALARM, Interest::READABLE)
        .map_err(WorkerError::Poll)?;
    if let Some(fd) = stop {
        // Edge-triggered: the inbox reads until the pipe is empty, so it must not block.
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        registry
            .register(&mut SourceFd(&fd.as_raw_fd()), STOP, Interest::READABLE)
            .map_err(WorkerError::Poll)?;
    }

    let clock = RunClock::starting_at(config.start_unix_ms);
    let mut deadlines = Deadlines::default();
    let mut timeouts = Timeouts::default();
    let mut stats = Summary {
        hellos_by_gateway: vec![0; config.gateways.len()],
        ..Summary::default()
    };
    if config.profile.behaviour.transport.any_quic() {
        stats.by_transport = crate::transport_stats::split();
    }
    let auth = config.auth.clone();
    let mut friends = friends::Friends::new(&config.profile, config.reach);
    let mut inbox = Inbox::default();
    let network = Network::new(config.profile.network.clone());
    let mut quic = quic_endpoint(&config, &network, &registry)?;
    // The phones' shared state exists before the clients; their thread starts once
    // the clients (and so the users by slot) are known.
    let phones = config.profile.pre_push.as_ref().map(|_| {
        std::sync::Arc::new(crate::pre_push::Shared::new(
            config.segment.len(config.profile.users) as usize,
        ))
    });
    let mut sh = Shared {
        pre_push: phones.as_deref(),
        network: &network,
        quic: &mut quic,
        friends: &mut friends,
        registry: &registry,
        deadlines: &mut deadlines,
        timeouts: &mut timeouts,
        stats: &mut stats,
        profile: &config.profile,
        gateways: &config.gateways,
        finished: 0,
    };
    let mut clients = Vec::with_capacity(config.segment.len(config.profile.users) as usize);
    let mut changes: Vec<(Duration, u32)> = Vec::new();
    for user in config.segment.users(config.profile.users) {
        let slot = clients.len() as u32;
        if let Some(c) = Client::new(user, slot, &auth, &mut sh) {
            sh.friends.enroll(user, slot);
            clients.push(c);
            if let Some(at) = network.change_of(user, config.profile.seed) {
                changes.push((at, slot));
            }
        }
    }
    clients.shrink_to_fit();
    let mut pre_push = match (&config.profile.pre_push, &config.pre_push, &phones) {
        (Some(spec), Some(target), Some(shared)) => {
            let users = clients.iter().map(Client::user).collect();
            let seed = config.profile.seed ^ config.segment.to_string().len() as u64;
            Some(
                crate::pre_push::Running::start(spec, target.clone(), shared.clone(), users, seed)
                    .map_err(WorkerError::Poll)?,
            )
        }
        _ => None,
    };
    // Network changes, latest first (popped from the end as they come due).
    changes.sort_unstable_by(|a, b| b.cmp(a));

    let mut events = Events::with_capacity(1024);
    let mut next_report = config.report_every;
    let mut last_report = Duration::ZERO;
    let mut stopping = false;
    // Sleep through the wait for the common start rather than fire everything at zero.
    while clock.now().is_zero() {
        let wait = Duration::from_millis(1);
        alarm.arm(&clock, wait)?;
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .or_else(interrupted)
            .map_err(WorkerError::Poll)?;
        alarm.fired();
        if let Some(fd) = stop.filter(|_| events.iter().any(|e| e.token() == STOP)) {
            if inbox.read(fd, sh.friends)? {
                stopping = true;
                break;
            }
        }
    }
    while !stopping {
        let now = clock.now();
        while let Some((at, slot)) = sh.timeouts.pop_due(now) {
            let client = &mut clients[slot as usize];
            if client.timeout_at == at {
                client.on_timeout(slot, clock.now(), &mut sh);
            }
        }
        while let Some((at, slot)) = sh.deadlines.pop_due(now) {
            let client = &mut clients[slot as usize];
            if client.wake_at == at {
                client.wake_at = Duration::MAX;
                client.on_wake(slot, clock.now(), &mut sh);
            }
        }
        while changes.last().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, slot)) = changes.pop() {
                if let Some(client) = clients.get_mut(slot as usize) {
                    client.change_network(slot, clock.now(), &mut sh);
                }
            }
        }
        if let Some(q) = sh.quic.as_mut() {
            q.on_timers(std::time::Instant::now());
        }
        // The clock moves on while clients act: each later call is given a later time,
        // as the request deadlines (one queue, in order) need.
        pump_quic(&mut clients, clock.now(), &mut sh);
        if now >= next_report {
            take_migrations(&mut sh);
            sh.stats.accrue_tier_time(now - last_report);
            if let Some(p) = sh.pre_push {
                p.report_into(&mut sh.stats.pre_push);
            }
            last_report = now;
            report(Out::Report {
                summary: sh.stats,
                last: false,
            })?;
            sh.stats.clear_interval();
            while next_report <= now {
                next_report += config.report_every;
            }
        }
        if sh.finished == clients.len() {
            break;
        }
        // Entries a client no longer wants (a reply came before its deadline, say) are
        // dropped here rather than armed: each would otherwise cost a wake-up.
        while let Some((at, slot)) = sh.deadlines.peek() {
            if clients[slot as usize].wake_at == at {
                break;
            }
            sh.deadlines.pop_due(at);
        }
        while let Some((at, slot)) = sh.timeouts.peek() {
            if clients[slot as usize].timeout_at == at {
                break;
            }
            sh.timeouts.pop();
        }
        let wake = [
            sh.deadlines.next(),
            sh.timeouts.peek().map(|(at, _)| at),
            quic_wake(sh.quic, now),
            changes.last().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .fold(next_report, Duration::min);
        alarm.arm(&clock, clock::coalesce(wake, now))?;
        poll.poll(&mut events, None)
            .or_else(interrupted)
            .map_err(WorkerError::Poll)?;
        for event in events.iter() {
            match event.token() {
                ALARM => alarm.fired(),
                STOP => {
                    if let Some(fd) = stop {
                        stopping |= inbox.read(fd, sh.friends)?;
                    }
                }
                QUIC | QUIC_MOVED => {
                    if let Some(q) = sh.quic.as_mut() {
                        q.receive(std::time::Instant::now());
                    }
                }
                Token(slot) => {
                    if let Some(client) = clients.get_mut(slot) {
                        client.on_ready(slot as u32, event, clock.now(), &mut sh);
                    }
                }
            }
        }
        pump_quic(&mut clients, clock.now(), &mut sh);
        for (slot, share_id, due) in std::mem::take(&mut sh.friends.mail) {
            if let Some(client) = clients.get_mut(slot as usize) {
                client.invite(slot, share_id, due, &mut sh);
            }
        }
        if !sh.friends.outbox.is_empty() {
            report(Out::Mail(&sh.friends.outbox))?;
            sh.friends.outbox.clear();
        }
    }
    let now = clock.now();
    sh.stats.accrue_tier_time(now.saturating_sub(last_report));
    for client in &mut clients {
        client.stop(&mut sh);
    }
    // The closes go out before the worker exits, so the gateways end those sessions now
    // rather than at their idle timeout.
    pump_quic(&mut clients, clock.now(), &mut sh);
    take_migrations(&mut sh);
    if let Some(p) = pre_push.as_mut() {
        p.stop();
    }
    if let Some(p) = sh.pre_push {
        p.report_into(&mut sh.stats.pre_push);
    }
    report(Out::Report {
        summary: sh.stats,
        last: true,
    })
}

fn interrupted(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}
