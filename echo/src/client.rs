//! The echo client: N connections, one request in flight on each, one event loop.
//!
//! It does what the load generator's worker does for a shake and nothing more: wake on
//! the kernel timer for the next due request (at most once per the worker's timer slack,
//! sending everything due by then), write a frame of a shake's size, read the reply,
//! count it in a histogram from its intended send time.

use anyhow::{Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use loadgen::worker::clock::{coalesce, Alarm, Deadlines, RunClock};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Args)]
pub struct DriveArgs {
    /// Echo servers, comma-separated; connections are dealt over them in turn.
    #[arg(long, value_delimiter = ',')]
    pub connect: Vec<SocketAddr>,
    #[arg(long)]
    pub connections: usize,
    /// Requests a second per connection, phase-spread; 0: the next as soon as the reply
    /// to the last is in (saturated).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Bytes per request (the reply is as long) [default: a shake with its cookie].
    #[arg(long)]
    pub frame_bytes: Option<usize>,
    /// Run this long before measuring.
    #[arg(long, default_value = "3s", value_parser = super::duration)]
    pub warmup: Duration,
    /// Then measure this long.
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    pub measure: Duration,
    /// Keep the count of replies so far in this file (rewritten every 10 ms of running),
    /// for a caller that measures windows of its own (`bench/shakes.py`'s paired
    /// slices, which stop and continue this process).
    #[arg(long)]
    pub progress_file: Option<std::path::PathBuf>,
}

/// How often the progress file is rewritten.
const PROGRESS_EVERY: Duration = Duration::from_millis(10);

/// The count of replies so far, in a file a caller reads while this runs.
struct Progress {
    file: std::fs::File,
    next: Duration,
}

impl Progress {
    fn create(path: &std::path::Path) -> Result<Progress> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write the progress file {}", path.display()))?;
        Ok(Progress {
            file,
            next: Duration::ZERO,
        })
    }

    /// Rewrites the count if the last write is `PROGRESS_EVERY` old: one fixed-width
    /// line at the start of the file, so a reader never sees a shorter number's tail.
    fn update(&mut self, now: Duration, requests: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if now >= self.next {
            self.file
                .write_all_at(format!("{requests:>20}\n").as_bytes(), 0)?;
            self.next = now + PROGRESS_EVERY;
        }
        Ok(())
    }
}

/// What one drive measured over its window.
#[derive(Serialize)]
pub struct Figures {
    pub connections: usize,
    pub frame_bytes: usize,
    pub rate_per_connection: f64,
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub cpu_s: f64,
    pub cpu_us_per_request: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

struct Conn {
    stream: TcpStream,
    /// The intended send time of the request in flight (or the next one).
    due: Duration,
    sent_at: Duration,
    /// Reply bytes read so far.
    got: usize,
    in_flight: bool,
}

const ALARM: Token = Token(usize::MAX - 1);

/// The size of a shake request carrying a one-envelope cookie, as the gateway signs it.
fn shake_frame_bytes() -> usize {
    use sut_wire::cookie::Cookie;
    use sut_wire::protocol::{write_frame, Frame};
    let key = sut_wire::signing::SigningKey::from_bytes([7; 32]);
    let cookie = Cookie {
        user: 1,
        sponsors: vec![1],
        expires_ms: 1,
    }
    .seal(&key);
    let mut n = 0;
    let _ = write_frame(Frame::Shake { cookie }, |b| {
        n += b.len();
        Ok(b.len())
    });
    n
}

pub fn drive(args: &DriveArgs) -> Result<Figures> {
    let frame_bytes = args.frame_bytes.unwrap_or_else(shake_frame_bytes).max(1);
    let frame = vec![0x5au8; frame_bytes];
    let mut poll = Poll::new()?;
    let mut alarm = Alarm::new()?;
    poll.registry()
        .register(&mut SourceFd(&alarm.raw_fd()), ALARM, Interest::READABLE)?;
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let addr = args.connect[i % args.connect.len()];
        let std = std::net::TcpStream::connect(addr)
            .with_context(|| format!("cannot connect to the echo server at {addr}"))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        conns.push(Conn {
            stream,
            due: Duration::ZERO,
            sent_at: Duration::ZERO,
            got: 0,
            in_flight: false,
        });
    }
    let clock = RunClock::starting_at(shellkit::clock::unix_ms());
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut deadlines = Deadlines::default();
    for (i, c) in conns.iter_mut().enumerate() {
        c.due = period.map_or(Duration::ZERO, |p| p * i as u32 / args.connections as u32);
        deadlines.push(c.due, i as u32);
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut requests, mut window) = (0u64, None::<(Duration, f64, u64)>);
    let end = args.warmup + args.measure;
    let mut events = Events::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let mut progress = args
        .progress_file
        .as_deref()
        .map(Progress::create)
        .transpose()?;
    loop {
        let now = clock.now();
        if let Some(p) = progress.as_mut() {
            p.update(now, requests)?;
        }
        if window.is_none() && now >= args.warmup {
            window = Some((now, shellkit::cpu::process_seconds(), requests));
            hist.reset();
        }
        if now >= end {
            break;
        }
        while let Some((_, i)) = deadlines.pop_due(now) {
            send(&mut conns[i as usize], &frame, now)?;
        }
        let next = deadlines.next().unwrap_or(end).min(end);
        alarm.arm(&clock, coalesce(next, now))?;
        poll.poll(&mut events, None)?;
        let now = clock.now();
        for event in events.iter() {
            if event.token() == ALARM {
                alarm.fired();
                continue;
            }
            let i = event.token().0;
            let conn = &mut conns[i];
            // A read that comes up short emptied the socket: the next arrival is a new
            // edge, so no read to see WouldBlock (the worker's reader does the same).
            loop {
                match conn.stream.read(&mut scratch) {
                    Ok(0) => anyhow::bail!("the echo server closed connection {i}"),
                    Ok(n) => {
                        conn.got += n;
                        if n < scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
            if conn.in_flight && conn.got >= frame_bytes {
                conn.got -= frame_bytes;
                conn.in_flight = false;
                requests += 1;
                let from = conn.due.min(conn.sent_at);
                let _ = hist.record((now.saturating_sub(from).as_micros() as u64).max(1));
                conn.due = match period {
                    Some(p) => conn.due + p,
                    None => now,
                };
                if conn.due <= now {
                    send(conn, &frame, now)?;
                } else {
                    deadlines.push(conn.due, i as u32);
                }
            }
        }
    }
    let (start, cpu0, requests0) =
        window.unwrap_or((Duration::ZERO, shellkit::cpu::process_seconds(), 0));
    let seconds = clock.now().saturating_sub(start).as_secs_f64().max(1e-9);
    let done = requests - requests0;
    let cpu_s = shellkit::cpu::process_seconds() - cpu0;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Ok(Figures {
        connections: args.connections,
        frame_bytes,
        rate_per_connection: args.rate,
        seconds,
        requests: done,
        requests_per_s: done as f64 / seconds,
        cpu_s,
        cpu_us_per_request: cpu_s * 1e6 / done.max(1) as f64,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1e3,
    })
}

fn send(conn: &mut Conn, frame: &[u8], now: Duration) -> Result<()> {
    // A frame this small goes out whole into an empty send buffer: one request is in
    // flight per connection, and its reply was read before the next is sent.
    let n = conn.stream.write(frame)?;
    anyhow::ensure!(
        n == frame.len(),
        "the socket took {n} of {} bytes",
        frame.len()
    );
    conn.sent_at = now;
    conn.in_flight = true;
    Ok(())
}
