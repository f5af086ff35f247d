//! `loadgen run`'s exit codes, one meaning each (see `loadgen/src/exit.rs`): a real run
//! aborted by a threshold exits 4, a breached threshold 1, Ctrl-C 130, a bad profile 2.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 6s, envelopes: 200, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

fn profile(dir: &Path, base_port: u16, hold_s: u64, thresholds: &str) -> String {
    format!(
        "
target:
  spawn: {{ gateways: 1, timeline: timeline.yaml, data: {}, base_port: {base_port}, countdown: 1s, settle: 1s }}
users: 100
stages:
  - {{ duration: 1s, target: 100 }}
  - {{ duration: {hold_s}s, target: 100 }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 2
  open_probability: 0.5
thresholds:
{thresholds}
",
        dir.join(format!("data-{base_port}")).display()
    )
}

fn loadgen(dir: &Path, name: &str, text: &str) -> Command {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    let mut c = Command::new(common::bin("loadgen"));
    c.env("SUT_BIN", common::bin("sut"))
        .arg("run")
        .arg(&path)
        .arg("--summary-json")
        .arg(dir.join(format!("{name}.json")))
        .arg("--report-dir")
        .arg(dir.join(name));
    c
}

fn summary(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_failing_abort_threshold_stops_the_run_with_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    // No reply comes back within a microsecond: this fails from the first second
    // after the grace, and the run (planned at 62 s) stops there.
    let thresholds = "  - { threshold: 'shake: p99 < 1us', abort_on_fail: true, grace: 2s }";
    let out = loadgen(dir, "abort", &profile(dir, 15000, 60, thresholds))
        .output()
        .unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(4), "{log}");
    assert!(
        log.contains("aborting: threshold `shake: p99 < 1us` failed at"),
        "{log}"
    );
    let r = summary(dir, "abort");
    assert_eq!(r["exit_code"], 4);
    assert_eq!(r["passed"], false);
    assert!(r["aborted"].as_str().unwrap().contains("shake: p99 < 1us"));
    assert!(
        r["duration_s"].as_f64().unwrap() < 40.0,
        "{}",
        r["duration_s"]
    );
    // The system was still stopped and audited as usual.
    assert!(r["audit"].is_object());
}

#[test]
fn a_breached_threshold_exits_1_and_a_bad_profile_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    let thresholds = "  - 'shake: count >= 100000000'\n  - 'shake: rate > 0/s'";
    // Overrides from the command line, recorded as used.
    let out = loadgen(dir, "breach", &profile(dir, 15100, 2, thresholds))
        .args(["--users", "50", "--seed", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = summary(dir, "breach");
    assert_eq!(r["users"], 50);
    let overrides = r["overrides"].to_string();
    assert!(overrides.contains("users 50 (was 100"), "{overrides}");
    assert!(overrides.contains("seed 4 (was 1)"), "{overrides}");
    let passed: Vec<bool> = r["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, [false, true]);

    let out = loadgen(dir, "bad", "users: 0\n").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn ctrl_c_exits_130_with_what_was_measured() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    let log = dir.join("interrupt.log");
    let mut child = loadgen(
        dir,
        "interrupt",
        &profile(dir, 15200, 60, "  - 'errors: count == 0'"),
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap().contains("[   2s]") {
        assert!(Instant::now() < deadline, "no progress line");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let r = summary(dir, "interrupt");
    assert_eq!(r["interrupted"], true);
    assert!(r["requests"].as_u64().unwrap() > 0);
}
