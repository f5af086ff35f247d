//! A gateway killed with SIGKILL mid-round and restarted never issues an id twice, and
//! every open it acknowledged before the kill is still credited.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::collections::HashSet;
use sut_wire::manifest::Manifest;
use sut_wire::protocol::Frame;
use sut_wire::signing::SigningKey;
use sut_wire::timeline::Timeline;

/// Shakes as fresh users from `users` until `want` envelopes are won (or the users run
/// out); opens every envelope won. Returns the envelope ids.
async fn shake_all(
    addr: &str,
    auth: &SigningKey,
    users: std::ops::Range<u64>,
    want: usize,
) -> Vec<u64> {
    let mut ids = Vec::new();
    for user in users {
        if ids.len() >= want {
            break;
        }
        let mut c = Client::hello(addr, user, auth).await;
        if let Some((token, amount_cents)) = c.shake_for_envelope().await {
            let opened = c
                .req(Frame::Open {
                    token: token.clone(),
                })
                .await;
            assert_eq!(
                opened,
                Some(Frame::OpenReply {
                    code: 0,
                    amount_cents
                })
            );
            ids.push(u64::from_be_bytes(token[8..16].try_into().unwrap()));
        }
    }
    ids
}

#[tokio::test(flavor = "current_thread")]
async fn killed_gateway_restarts_without_reissuing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let d = data.to_str().unwrap();
    prepare(data, 1);
    let show_start = shellkit::clock::unix_ms().to_string();
    let (pay, env, gw) = ("127.0.0.1:17300", "127.0.0.1:17301", "127.0.0.1:17310");
    let payment = spawn(&["payment", "--listen", pay, "--data", d]);
    wait_port(pay);
    let envelope = spawn(&["envelope", "--listen", env, "--payment", pay, "--data", d]);
    wait_port(env);
    let gw_args = [
        "gateway",
        "--id",
        "0",
        "--gateways",
        "1",
        "--listen",
        gw,
        "--data",
        d,
        "--envelope",
        env,
        "--show-start-ms",
        &show_start,
    ];
    let gateway = spawn(&gw_args);
    wait_port(gw);
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();

    let before = shake_all(gw, &auth, 0..20_000, 30).await;
    assert!(!before.is_empty(), "the first life issued envelopes");
    gateway.signal(Signal::SIGKILL);
    drop(gateway);

    let gateway = spawn(&gw_args);
    wait_port(gw);
    let after = shake_all(gw, &auth, 100_000..120_000, 30).await;
    assert!(!after.is_empty(), "the second life issued envelopes");
    let first: HashSet<u64> = before.iter().copied().collect();
    for id in &after {
        assert!(
            !first.contains(id),
            "envelope {id} issued again after the restart"
        );
    }

    assert!(gateway.stop().success());
    assert!(envelope.stop().success());
    assert!(payment.stop().success());
    let manifest = Manifest {
        gateways: 1,
        seed: 1,
        show_start_ms: show_start.parse().unwrap(),
        timeline: Timeline::parse(TIMELINE, "test").unwrap(),
        gateway_addrs: vec![gw.into()],
        envelope_addr: env.into(),
        payment_addr: pay.into(),
        config_addrs: vec![],
        gossip_addrs: vec![],
        resource_addrs: vec![],
        metrics: vec![],
    };
    sut::files::save_manifest(&manifest, data).unwrap();
    let report = sut::audit::run(data).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.issued, (before.len() + after.len()) as u64);
    assert_eq!(report.credited, report.opened);
    assert!(
        report.skipped > 0,
        "the kill skipped the rest of a lease: {report}"
    );
}
