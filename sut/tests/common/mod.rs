//! Helpers for tests that run real `sut` processes on loopback.
#![allow(dead_code)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sut_wire::protocol::{Frame, FrameCodec};
use sut_wire::signing::SigningKey;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// One process's `/metrics` response (headers and body).
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the series `name` (with its labels, as exposed) in a scrape.
pub fn value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// A temporary directory holding `timeline` as `timeline.yaml`, with the path of a data
/// directory beside it (made by `sut up`): the directory, the data path, the timeline's.
pub fn show_dir(timeline: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("timeline.yaml");
    std::fs::write(&path, timeline).unwrap();
    (dir, data, path)
}

/// A child process killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Writes a control line to `sut up`'s input (the process was started with a piped
    /// stdin).
    pub fn control(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().expect("started with a piped stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig);
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.0.wait().expect("wait for child");
        std::mem::forget(self);
        status
    }
}

pub fn sut_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sut"));
    c.stdin(Stdio::null());
    c
}

pub fn spawn(args: &[&str]) -> Proc {
    Proc(sut_cmd().args(args).spawn().expect("start sut"))
}

/// Waits until `sut up` wrote its manifest into `data` (bounded).
pub fn wait_manifest(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("manifest.json").exists() {
        assert!(Instant::now() < deadline, "sut up did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds, checking every 50 ms; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until something accepts on `addr` (bounded: a broken start fails the test).
pub fn wait_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const TIMELINE: &str = "
version: 1
rounds:
  - { id: 1, start: 0s, duration: 10m, envelopes: 100000, rate: 200, amount_cents: [1, 999], sponsors: [1, 2, 3, 4, 5, 6], resources: [7] }
";

/// Writes the timeline, keys and seed shards for `gateways` into `data`.
pub fn prepare(data: &Path, gateways: u16) {
    std::fs::create_dir_all(data).unwrap();
    let timeline = data.join("timeline.yaml");
    std::fs::write(&timeline, TIMELINE).unwrap();
    let out = sut_cmd()
        .args([
            "seed",
            "--timeline",
            timeline.to_str().unwrap(),
            "--gateways",
            &gateways.to_string(),
            "--out",
            data.join("seeds").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A minimal client speaking the wire protocol.
pub struct Client {
    pub conn: Framed<TcpStream, FrameCodec>,
}

impl Client {
    pub async fn raw(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client {
            conn: Framed::new(stream, FrameCodec::default()),
        }
    }

    pub async fn hello(addr: &str, user: u64, auth: &SigningKey) -> Client {
        let mut c = Client::raw(addr).await;
        let token = Bytes::copy_from_slice(&auth.auth_token(user));
        let ack = c
            .req(Frame::Hello {
                user_id: user,
                auth_token: token,
            })
            .await;
        assert!(matches!(ack, Some(Frame::HelloAck { .. })), "{ack:?}");
        c
    }

    /// Sends a frame and returns the next one (None if the connection closed).
    pub async fn req(&mut self, f: Frame) -> Option<Frame> {
        self.conn.send(f).await.ok()?;
        self.next().await
    }

    /// Shakes once with no cookie; the token and amount if it won an envelope.
    pub async fn shake_for_envelope(&mut self) -> Option<(Bytes, u32)> {
        match self
            .req(Frame::Shake {
                cookie: Bytes::new(),
            })
            .await
        {
            Some(Frame::ShakeReply {
                outcome:
                    sut_wire::protocol::Outcome::Envelope {
                        token,
                        amount_cents,
                        ..
                    },
                ..
            }) => Some((token, amount_cents)),
            _ => None,
        }
    }

    pub async fn next(&mut self) -> Option<Frame> {
        match tokio::time::timeout(Duration::from_secs(10), self.conn.next()).await {
            Ok(Some(Ok(f))) => Some(f),
            _ => None,
        }
    }
}
