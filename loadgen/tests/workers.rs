//! The million-connection benchmark scaled down to what CI can hold: tens of thousands
//! of real connections from several worker processes to several gateway processes. The
//! parent's merged figures are checked against each worker's and against the gateways'
//! own counters, which the load generator never sees.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USERS: u64 = 24_000;
const GATEWAYS: usize = 3;
const WORKERS: usize = 3;
const BASE_PORT: u16 = 17800;

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 2s, duration: 8s, envelopes: 600, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

fn bin(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_loadgen")).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` so both binaries are built",
        bin.display()
    );
    bin
}

/// `sut up`, stopped (SIGTERM, so it drains) when dropped.
struct Sut(Child);

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn start_sut(dir: &Path, base_port: u16, extra: &[&str]) -> Sut {
    let data = dir.join("data");
    let log = std::fs::File::create(dir.join("sut.log")).unwrap();
    let child = Command::new(bin("sut"))
        .args([
            "up",
            "--gateways",
            &GATEWAYS.to_string(),
            "--countdown",
            "1s",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--timeline")
        .arg(dir.join("timeline.yaml"))
        .args(["--base-port", &base_port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
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

fn gateway_addrs(base_port: u16) -> Vec<String> {
    (0..GATEWAYS)
        .map(|i| format!("127.0.0.1:{}", base_port + 10 + i as u16))
        .collect()
}

/// Runs `loadgen run` on a profile written to `dir`; the summary JSON and stdout.
fn run_loadgen(dir: &Path, profile: &str, workers: usize) -> (serde_json::Value, String) {
    let path = dir.join("profile.yaml");
    std::fs::write(&path, profile).unwrap();
    let summary = dir.join("summary.json");
    let out = Command::new(bin("loadgen"))
        .arg("run")
        .arg(&path)
        .args(["--workers", &workers.to_string()])
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed\n{stdout}\n{stderr}");
    let report = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    (report, stdout)
}

/// One gateway's `/metrics`, as (series with labels, value) pairs.
fn scrape(port: u16) -> Vec<(String, f64)> {
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

fn sum(series: &[(String, f64)], prefix: &str) -> u64 {
    series
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn workers_merge_exactly_and_every_user_holds_one_session() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = start_sut(dir.path(), BASE_PORT, &[]);
    let gateways = gateway_addrs(BASE_PORT);
    let profile = format!(
        "
target:
  addresses:
    gateways: [{}]
    auth_key_file: {}
users: {USERS}
stages:
  - {{ duration: 6s, target: {USERS} }}
  - {{ duration: 6s, target: {USERS} }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 0.34
  open_probability: 0.8
  heartbeat_interval: 2s
  request_timeout: 30s
",
        gateways.join(", "),
        dir.path().join("data/auth.key").display()
    );
    let (r, stdout) = run_loadgen(dir.path(), &profile, WORKERS);
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let list =
        |v: &serde_json::Value| -> Vec<u64> { v.as_array().unwrap().iter().map(u).collect() };

    // Every user held exactly one session, on exactly one gateway.
    assert_eq!(u(&r["connection_drops"]), 0, "{stdout}");
    assert_eq!(u(&r["users_connected"]), USERS, "{stdout}");
    let sessions = list(&r["sessions_by_gateway"]);
    assert_eq!(sessions.len(), GATEWAYS);
    assert_eq!(sessions.iter().sum::<u64>(), USERS, "{stdout}");

    // The merge is exact: the workers' requests sum to the parent's, and the merged
    // histograms hold one sample per answered request.
    let by_worker = list(&r["requests_by_worker"]);
    assert_eq!(by_worker.len(), WORKERS);
    assert!(by_worker.iter().all(|n| *n > 0), "{by_worker:?}");
    let requests = u(&r["requests"]);
    assert_eq!(by_worker.iter().sum::<u64>(), requests);
    let ops = r["ops"].as_object().unwrap();
    let answered: u64 = ops.values().map(|o| u(&o["count"])).sum();
    let failed: u64 = ops.values().map(|o| u(&o["errors"])).sum();
    assert_eq!(failed, 0, "{stdout}");
    assert_eq!(answered, requests);

    // And it matches what the gateways themselves counted.
    let scraped: Vec<Vec<(String, f64)>> = (0..GATEWAYS)
        .map(|i| scrape(BASE_PORT + 1010 + i as u16))
        .collect();
    for (i, series) in scraped.iter().enumerate() {
        let accepted = sum(series, "sut_gateway_sessions_total{result=\"accepted\"}");
        assert_eq!(accepted, sessions[i], "gateway {i}");
    }
    let total = |prefix: &str| scraped.iter().map(|s| sum(s, prefix)).sum::<u64>();
    // Shakes the gateways answered "come back later" (when busy) carry no latency.
    let come_back = r["shake_outcomes"]["come_back_later"].as_u64().unwrap_or(0);
    assert_eq!(
        total("sut_gateway_shakes_total"),
        u(&ops["shake"]["count"]) + come_back
    );
    assert_eq!(
        total("sut_gateway_heartbeats_total"),
        u(&ops["heartbeat"]["count"])
    );
    assert_eq!(
        total("sut_gateway_opens_total{result=\"ok\"}"),
        u(&ops["open"]["count"])
    );
    assert!(u(&ops["shake"]["count"]) >= USERS, "{stdout}");
    assert!(u(&ops["heartbeat"]["count"]) > 0, "{stdout}");
}

/// Gateways that hold only a few connections turn the rest away with `GatewayFull`, and
/// those users move on to the next gateway until every one of them holds a session.
#[test]
fn users_turned_away_by_a_full_gateway_connect_to_another() {
    const PORT: u16 = 17850;
    const MAX: u64 = 20;
    const FEW: u64 = 55;
    // The premise: by hash alone, some gateway would get more than it may hold.
    let mut homes = [0u64; GATEWAYS];
    for user in 0..FEW {
        homes[loadgen::worker::home_gateway(user, GATEWAYS)] += 1;
    }
    assert!(homes.iter().any(|n| *n > MAX), "{homes:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = start_sut(dir.path(), PORT, &["--max-connections", &MAX.to_string()]);
    let profile = format!(
        "
target:
  addresses:
    gateways: [{}]
    auth_key_file: {}
users: {FEW}
stages:
  - {{ duration: 1s, target: {FEW} }}
  - {{ duration: 3s, target: {FEW} }}
behaviour:
  shake_rate: 1
  open_probability: 0.5
",
        gateway_addrs(PORT).join(", "),
        dir.path().join("data/auth.key").display()
    );
    let (r, stdout) = run_loadgen(dir.path(), &profile, 2);
    let sessions: Vec<u64> = r["sessions_by_gateway"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(r["users_connected"].as_u64(), Some(FEW), "{stdout}");
    assert_eq!(sessions.iter().sum::<u64>(), FEW, "{stdout}");
    assert!(sessions.iter().all(|n| *n <= MAX), "{sessions:?}");
    let turned_away = r["errors_by_kind"]["hello/gateway_full"]
        .as_u64()
        .unwrap_or(0);
    assert!(turned_away > 0, "{stdout}");
    let full: u64 = (0..GATEWAYS)
        .map(|i| {
            sum(
                &scrape(PORT + 1010 + i as u16),
                "sut_gateway_sessions_total{result=\"full\"}",
            )
        })
        .sum();
    assert_eq!(full, turned_away);
}
