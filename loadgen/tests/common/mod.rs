//! What the load generator's integration tests share: the two real binaries, a real
//! `sut up` stopped when dropped, a `loadgen run` and a scrape of a gateway's metrics.

#![allow(dead_code)] // each test file uses its own part of this

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary built beside `loadgen` by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_loadgen")).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` so both binaries are built",
        bin.display()
    );
    bin
}

/// `sut up` on `DIR/data` with `DIR/timeline.yaml`, its control input piped, stopped
/// (SIGTERM, so it drains) when dropped.
pub struct Sut(Child);

impl Sut {
    pub fn start(dir: &Path, gateways: usize, base_port: u16, extra: &[&str]) -> Sut {
        let data = dir.join("data");
        let log = std::fs::File::create(dir.join("sut.log")).unwrap();
        let child = Command::new(bin("sut"))
            .args([
                "up",
                "--gateways",
                &gateways.to_string(),
                "--countdown",
                "1s",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--timeline")
            .arg(dir.join("timeline.yaml"))
            .args(["--base-port", &base_port.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sut = Sut(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !data.join("manifest.json").exists() {
            assert!(
                Instant::now() < deadline,
                "sut up did not start; see sut.log"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sut
    }

    /// Writes a control line to `sut up`'s input.
    pub fn control(&mut self, line: &str) {
        let stdin = self.0.stdin.as_mut().expect("the control input, not taken");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// `sut up`'s input, for a thread that writes control lines at their times.
    pub fn take_control(&mut self) -> std::process::ChildStdin {
        self.0.stdin.take().expect("the control input, not taken")
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// Runs `loadgen run` (with `args`) on a profile written to `dir`; it must succeed.
/// Returns the summary JSON and stdout.
pub fn run_loadgen(dir: &Path, profile: &str, args: &[&str]) -> (serde_json::Value, String) {
    let (passed, report, stdout) = run_loadgen_named(dir, "profile", profile, args);
    assert!(passed, "loadgen failed\n{stdout}");
    (report, stdout)
}

/// Runs `loadgen run` (with `args`) on a profile written to `dir/NAME.yaml`, its summary
/// in `dir/NAME.json` and its report in `dir/NAME/`, whether it passes or not: whether
/// it exited 0, the summary JSON, and stdout followed by stderr.
pub fn run_loadgen_named(
    dir: &Path,
    name: &str,
    profile: &str,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, profile).unwrap();
    let summary = dir.join(format!("{name}.json"));
    let out = Command::new(bin("loadgen"))
        .arg("run")
        .arg(&path)
        .args(args)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--report-dir")
        .arg(dir.join(name))
        .output()
        .unwrap();
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("loadgen left no summary\n{output}"));
    (out.status.success(), report, output)
}

/// One process's `/metrics`, as (series with labels, value) pairs.
pub fn scrape(port: u16) -> Vec<(String, f64)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of the series whose name (with labels) starts with `prefix`.
pub fn sum(series: &[(String, f64)], prefix: &str) -> u64 {
    series
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// One HTTP/1.0 exchange with a process on loopback; the status code and the body.
pub fn http(addr: &str, request_head: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{request_head} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Every interval of an `.hlog` file added up per operation (its tag).
pub fn hlog_totals(
    path: &Path,
) -> std::collections::BTreeMap<String, hdrhistogram::Histogram<u64>> {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let log = std::fs::read(path).unwrap();
    let mut totals: std::collections::BTreeMap<String, hdrhistogram::Histogram<u64>> =
        std::collections::BTreeMap::new();
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(i) = entry.unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .unwrap();
            let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                .deserialize(&mut std::io::Cursor::new(bytes))
                .unwrap();
            let tag = i.tag().unwrap().as_str().to_string();
            match totals.get_mut(&tag) {
                Some(t) => t.add(&h).unwrap(),
                None => {
                    totals.insert(tag, h);
                }
            }
        }
    }
    totals
}

/// The distributed tests' flow: `users` ramp up in 2 s, hold `hold_s`, leave in 1 s,
/// shaking, opening and sharing to friends; `target` and `extra` are top-level YAML.
pub fn flow_profile(target: &str, users: u64, hold_s: u64, extra: &str) -> String {
    format!(
        "
{target}
users: {users}
stages:
  - {{ duration: 2s, target: {users} }}
  - {{ duration: {hold_s}s, target: {users} }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 1
  open_probability: 0.8
  heartbeat_interval: 3s
  split: {{ share_probability: 1, friends: 4, grab_delay: 200ms }}
{extra}
"
    )
}

/// A process whose stderr goes to a file, killed if the test drops it running.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(mut cmd: Command, log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).unwrap();
        let out = err.try_clone().unwrap();
        let child = cmd
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit, at most `limit`; the exit status's success.
    pub fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs after {limit:?}\n{}",
                self.log.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log holds `text`.
    pub fn wait_for(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "`{text}` never showed in {}\n{}",
                self.log.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM (`sut up` drains and stops), then waits at most a minute.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.wait(Duration::from_secs(60));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
