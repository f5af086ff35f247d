//! A clean stop that leaves work queued says so: with the envelope backend down, an open
//! told ok waits in the gateway's durable queue; `sut up` stopped then exits with code 3
//! and names the part, and the audit counts the open as pending, not lost. The next
//! `sut up` on the same data directory forwards it, and it is credited once.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use sut_wire::protocol::Frame;

fn up(data: &Path, timeline: &Path, drain: &str) -> Proc {
    let p = Proc(
        sut_cmd()
            .args([
                "up",
                "--gateways",
                "1",
                "--base-port",
                "18400",
                "--countdown",
                "0s",
            ])
            .args(["--drain-timeout", drain])
            .arg("--data")
            .arg(data)
            .arg("--timeline")
            .arg(timeline)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_manifest(data);
    wait_port("127.0.0.1:18410");
    p
}

fn audit(data: &Path) -> serde_json::Value {
    let out = sut_cmd()
        .args(["audit", "--json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("sut audit: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Stops `sut up` and returns its exit code and what it printed.
fn stop(p: Proc) -> (Option<i32>, String) {
    let mut child = p;
    let mut out = child.0.stdout.take().unwrap();
    let status = child.stop();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    (status.code(), text)
}

#[tokio::test(flavor = "current_thread")]
async fn a_stop_with_opens_still_queued_says_so_and_the_next_start_delivers_them() {
    let (_dir, data, timeline) = common::show_dir(TIMELINE);
    let mut sut = up(&data, &timeline, "1s");
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();
    let mut c = Client::hello("127.0.0.1:18410", 42, &auth).await;
    let (token, amount) = loop {
        if let Some(won) = c.shake_for_envelope().await {
            break won;
        }
    };
    // The backend goes down; the open is still told ok: it is durable in the queue.
    writeln!(sut.0.stdin.as_mut().unwrap(), "kill envelope").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(data.join("events.jsonl"))
        .unwrap_or_default()
        .contains("\"killed\"")
    {
        assert!(Instant::now() < deadline, "the backend was never killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.req(Frame::Open { token }).await,
        Some(Frame::OpenReply {
            code: 0,
            amount_cents: amount
        })
    );
    drop(c);
    let (code, said) = stop(sut);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("work still queued in gateway-0"), "{said}");
    let a = audit(&data);
    assert_eq!(a["lost"], 0, "{a}");
    assert_eq!(a["in_flight"], 1, "the open is pending: {a}");

    // The next start forwards it (a stop drains for as long as that takes, up to 60 s);
    // a clean stop then leaves nothing.
    let sut = up(&data, &timeline, "60s");
    let (code, said) = stop(sut);
    assert_eq!(code, Some(0), "{said}");
    let a = audit(&data);
    assert_eq!(
        (a["lost"].as_u64(), a["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{a}"
    );
    assert_eq!(a["credited_cents"].as_u64(), Some(u64::from(amount)), "{a}");
}
