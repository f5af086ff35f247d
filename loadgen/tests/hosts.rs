//! Several hosts on this machine: network namespaces on a bridge (`scripts/hosts.sh`)
//! stand in for machines. The system under test runs in one, the coordinator in
//! another, an agent in each of two more; the merged result must match one host's run
//! of the same profile and seed, and both audits must pass. Skipped, with a message,
//! where namespaces cannot be made (not root, no `ip`).

mod common;

use common::{bin, flow_profile, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "a token shared by the coordinator and its agents";

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 8s, envelopes: 400, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

/// Namespaces PREFIX0..PREFIX<n-1>, removed when dropped.
struct Hosts {
    prefix: String,
    n: usize,
    subnet: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hosts.sh")
}

impl Hosts {
    /// `None` (having said why) where namespaces cannot be made here.
    fn up(n: usize) -> Option<Hosts> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next().map(str::to_string))
            });
        if uid.as_deref() != Some("0") {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let pid = std::process::id();
        let hosts = Hosts {
            prefix: format!("sb{}", pid % 100_000),
            n,
            subnet: format!("10.231.{}", 20 + pid % 200),
        };
        let out = Command::new("sh")
            .arg(script())
            .args(["up", &hosts.prefix, &n.to_string(), &hosts.subnet])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(hosts),
            Ok(o) => {
                eprintln!(
                    "skipped: network namespaces cannot be made here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run scripts/hosts.sh: {e}");
                None
            }
        }
    }

    fn ip(&self, host: usize) -> String {
        format!("{}.{}", self.subnet, host + 2)
    }

    /// `program` on host `host`.
    fn command(&self, host: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}{host}", self.prefix)])
            .arg(program)
            .env("LOADGEN_TOKEN", TOKEN);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(script())
            .args(["down", &self.prefix, &self.n.to_string()])
            .status();
    }
}

/// `sut up` on host 0 with a fresh data directory `dir/NAME`.
fn system(hosts: &Hosts, dir: &Path, name: &str) -> Proc {
    let data = dir.join(name);
    let mut c = hosts.command(0, &bin("sut"));
    c.args([
        "up",
        "--gateways",
        "2",
        "--countdown",
        "1s",
        "--base-port",
        "7100",
    ])
    .args(["--host", &hosts.ip(0)])
    .arg("--data")
    .arg(&data)
    .arg("--timeline")
    .arg(dir.join("timeline.yaml"));
    let p = Proc::start(c, dir.join(format!("{name}.log")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("manifest.json").exists() {
        assert!(
            Instant::now() < deadline,
            "sut up did not start\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn profile(hosts: &Hosts, dir: &Path, data: &str) -> String {
    let target = format!(
        "target:\n  addresses:\n    gateways: [{ip}:7110, {ip}:7111]\n    auth_key_file: {key}",
        ip = hosts.ip(0),
        key = dir.join(data).join("auth.key").display()
    );
    flow_profile(&target, 600, 8, "seed: 11")
}

fn audit(dir: &Path, data: &str) -> String {
    let out = Command::new(bin("sut"))
        .args(["audit", "--data"])
        .arg(dir.join(data))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the audit of {data} failed\n{text}");
    text
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn agents_on_two_hosts_add_up_to_one_host() {
    let Some(hosts) = Hosts::up(4) else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();

    // The coordinator on host 1, agents on hosts 2 and 3.
    let mut sut = system(&hosts, dir, "data-many");
    std::fs::write(dir.join("many.yaml"), profile(&hosts, dir, "data-many")).unwrap();
    let listen = format!("{}:7700", hosts.ip(1));
    let mut c = hosts.command(1, &bin("loadgen"));
    c.arg("coordinator")
        .arg(dir.join("many.yaml"))
        .args([
            "--agents",
            "2",
            "--listen",
            &listen,
            "--workers-per-agent",
            "1",
        ])
        .arg("--summary-json")
        .arg(dir.join("many.json"))
        .arg("--report-dir")
        .arg(dir.join("many"));
    let mut coordinator = Proc::start(c, dir.join("coordinator.log"));
    let _agents: Vec<Proc> = [2, 3]
        .into_iter()
        .map(|h| {
            let mut a = hosts.command(h, &bin("loadgen"));
            a.args(["agent", "--coordinator", &listen]);
            Proc::start(a, dir.join(format!("agent-{h}.log")))
        })
        .collect();
    assert!(
        coordinator.wait(Duration::from_secs(120)),
        "{}",
        coordinator.log()
    );
    sut.stop();
    let audit_many = audit(dir, "data-many");

    // The same profile and seed from one host (host 2), two workers.
    let mut sut = system(&hosts, dir, "data-one");
    std::fs::write(dir.join("one.yaml"), profile(&hosts, dir, "data-one")).unwrap();
    let mut c = hosts.command(2, &bin("loadgen"));
    c.arg("run")
        .arg(dir.join("one.yaml"))
        .args(["--workers", "2", "--summary-json"])
        .arg(dir.join("one.json"))
        .arg("--report-dir")
        .arg(dir.join("one"));
    let mut single = Proc::start(c, dir.join("single.log"));
    assert!(single.wait(Duration::from_secs(120)), "{}", single.log());
    sut.stop();
    let audit_one = audit(dir, "data-one");

    let (one, many) = (
        summary(&dir.join("one.json")),
        summary(&dir.join("many.json")),
    );
    let count = |r: &serde_json::Value, op: &str| r["ops"][op]["count"].as_u64().unwrap_or(0);
    for op in ["connect", "hello", "shake"] {
        assert!(count(&one, op) > 0);
        assert_eq!(
            count(&one, op),
            count(&many, op),
            "{op}\n{}",
            coordinator.log()
        );
    }
    assert_eq!(
        one["shake_outcomes"]["envelope"],
        many["shake_outcomes"]["envelope"]
    );
    for a in [&audit_one, &audit_many] {
        assert!(a.contains("verdict: PASS"), "{a}");
    }
    // The agents reached the coordinator from their own hosts.
    let agents = many["cluster"]["agents"].as_array().unwrap();
    let mut peers: Vec<&str> = agents
        .iter()
        .map(|a| a["peer"].as_str().unwrap().split(':').next().unwrap())
        .collect();
    peers.sort();
    assert_eq!(peers, [hosts.ip(2), hosts.ip(3)]);
    // The summary's percentiles are those of the merged histograms: the coordinator's
    // interval log, added up, holds every shake and gives the same p99.
    let shakes = &common::hlog_totals(&dir.join("many/latency.hlog"))["shake"];
    assert_eq!(shakes.len(), count(&many, "shake"));
    let p99_ms = shakes.value_at_quantile(0.99) as f64 / 1000.0;
    let reported = many["ops"]["shake"]["p99_ms"].as_f64().unwrap();
    assert!(
        (p99_ms - reported).abs() <= reported * 0.01 + 0.01,
        "{p99_ms} against {reported}"
    );
    // The gateways ran on another host: unknown, never zero.
    assert!(many["resources"]["gateway_bytes_per_connection"].is_null());
}
