//! `sut up` as a service manager: a part killed from outside is recorded as crashed and
//! started again while the rest runs on; a part that keeps crashing stops the system
//! with the reason.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// `(event, pid)` of every event of `part` in the run's events.jsonl so far.
fn events(data: &Path, part: &str) -> Vec<(String, Option<u32>)> {
    let text = std::fs::read_to_string(data.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["part"] == part)
        .map(|v| {
            (
                v["event"].as_str().unwrap_or("").to_string(),
                v["pid"].as_u64().map(|p| p as u32),
            )
        })
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn up(data: &Path, base: u16, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(data).unwrap();
    let timeline = data.join("timeline-in.yaml");
    std::fs::write(&timeline, TIMELINE).unwrap();
    let base = base.to_string();
    let mut args = vec![
        "up",
        "--gateways",
        "2",
        "--data",
        data.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--base-port",
        &base,
    ];
    args.extend_from_slice(extra);
    let p = Proc(
        sut_cmd()
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("the manifest", || data.join("manifest.json").exists());
    p
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn a_part_killed_from_outside_is_restarted_and_the_rest_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut system = up(&data, 17700, &[]);
    let pid = events(&data, "gateway-0")
        .iter()
        .find_map(|(e, pid)| (e == "started").then_some(*pid).flatten())
        .expect("gateway-0 started");
    sigkill(pid);
    wait_for("gateway-0's restart", || {
        let e = events(&data, "gateway-0");
        e.iter().any(|(e, _)| e == "crashed")
            && e.iter().filter(|(e, _)| e == "started").count() == 2
    });
    assert!(
        system.0.try_wait().unwrap().is_none(),
        "sut up stopped after one crash"
    );
    // The restarted gateway serves again.
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Client::hello("127.0.0.1:17710", 5, &auth).await;
        assert!(matches!(
            c.req(sut_wire::protocol::Frame::Heartbeat).await,
            Some(sut_wire::protocol::Frame::HeartbeatAck { .. })
        ));
    });
    assert!(system.stop().success(), "a clean stop after the restart");
}

#[test]
fn a_crash_loop_stops_the_system_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut system = up(
        &data,
        17730,
        &["--max-crashes", "2", "--crash-window", "10m"],
    );
    for round in 0..2 {
        let pid = events(&data, "gateway-1")
            .iter()
            .filter(|(e, _)| e == "started")
            .nth(round)
            .and_then(|(_, pid)| *pid)
            .expect("gateway-1 started");
        sigkill(pid);
        if round == 0 {
            wait_for("gateway-1's restart", || {
                events(&data, "gateway-1")
                    .iter()
                    .filter(|(e, _)| e == "started")
                    .count()
                    == 2
            });
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = system.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sut up kept running a crash loop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "a crash loop is a failure: {status}");
}
