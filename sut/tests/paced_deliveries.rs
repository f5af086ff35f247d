//! Paced deliveries: a forwarder starts at most one delivery per `--deliver-every`.
//! With an hour's pace, the first open goes to the backend at once; the next one, its
//! user already told ok, waits in the gateway's durable queue; a stop ends the wait and
//! delivers it, so both are credited and nothing is left queued.

mod common;

use bytes::Bytes;
use common::*;
use std::process::Stdio;
use std::time::Duration;
use sut_wire::protocol::Frame;

const GATEWAY: &str = "127.0.0.1:24810";
const GATEWAY_METRICS: &str = "127.0.0.1:25810";

fn acked() -> f64 {
    value(
        &scrape(GATEWAY_METRICS),
        "sut_passthrough_forwarded_total{result=\"acked\"}",
    )
}

fn queued() -> f64 {
    value(&scrape(GATEWAY_METRICS), "sut_passthrough_queue_depth")
}

/// `user` shakes until it wins, then opens the envelope: the amount it was told.
async fn win_and_open(user: u64, auth: &sut_wire::signing::SigningKey) -> u32 {
    let mut c = Client::hello(GATEWAY, user, auth).await;
    let (token, amount): (Bytes, u32) = loop {
        if let Some(won) = c.shake_for_envelope().await {
            break won;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        c.req(Frame::Open { token }).await,
        Some(Frame::OpenReply {
            code: 0,
            amount_cents: amount
        })
    );
    amount
}

#[tokio::test(flavor = "current_thread")]
async fn a_paced_forwarder_holds_the_next_delivery_and_a_stop_sends_it() {
    let (_dir, data, timeline) = show_dir(TIMELINE);
    let sut = Proc(
        sut_cmd()
            .args(["up", "--gateways", "1", "--base-port", "24800"])
            .args(["--countdown", "0s", "--deliver-every", "1h"])
            .arg("--data")
            .arg(&data)
            .arg("--timeline")
            .arg(&timeline)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_manifest(&data);
    wait_port(GATEWAY);
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();

    // Nothing was delivered before: the first open goes at once.
    let first = win_and_open(1, &auth).await;
    wait_for(
        "the first open to be acked",
        Duration::from_secs(30),
        || acked() == 1.0,
    );
    assert_eq!(queued(), 0.0);

    // The next one waits for the pace, durable in the queue.
    let second = win_and_open(2, &auth).await;
    assert_eq!(queued(), 1.0, "queued before its user is told");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(acked(), 1.0, "delivered before its pace");
    assert_eq!(queued(), 1.0);

    // A stop does not wait out the pace: it delivers, and leaves nothing queued.
    let status = sut.stop();
    assert_eq!(status.code(), Some(0), "sut up exited with {status}");
    let out = sut_cmd()
        .args(["audit", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let a: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("sut audit: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        (a["lost"].as_u64(), a["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{a}"
    );
    assert_eq!(
        a["credited_cents"].as_u64(),
        Some(u64::from(first) + u64::from(second)),
        "{a}"
    );
}
