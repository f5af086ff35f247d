//! Bad input against a real gateway process: each gets its own code, is counted, and
//! costs the other users nothing.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use futures_util::SinkExt;
use sut_wire::protocol::{ErrorCode, Frame};
use sut_wire::signing::SigningKey;
use tokio::io::AsyncWriteExt;

fn code(f: &Option<Frame>) -> Option<u16> {
    match f {
        Some(Frame::Error { code, .. }) => Some(*code),
        Some(Frame::OpenReply { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Shakes as fresh users until one wins an envelope: (user, token, amount).
async fn win(addr: &str, auth: &SigningKey, first_user: u64) -> (Client, u64, Bytes, u32) {
    for user in first_user..first_user + 50_000 {
        let mut c = Client::hello(addr, user, auth).await;
        if let Some((token, amount)) = c.shake_for_envelope().await {
            return (c, user, token, amount);
        }
    }
    panic!("no envelope won");
}

#[tokio::test(flavor = "current_thread")]
async fn bad_input_is_refused_with_its_code_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, 1);
    let (gw, metrics) = ("127.0.0.1:17410", "127.0.0.1:17411");
    let _gateway = spawn(&[
        "gateway",
        "--id",
        "0",
        "--gateways",
        "1",
        "--listen",
        gw,
        "--metrics",
        metrics,
        "--data",
        data.to_str().unwrap(),
        "--envelope",
        "127.0.0.1:17401",
        // No envelope backend runs here, so no win could be reserved at the users'
        // owner: this test is about the gateway's own checks.
        "--no-strict-limits",
    ]);
    wait_port(gw);
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();

    // A well-behaved user holds its connection through everything below.
    let mut good = Client::hello(gw, 1, &auth).await;

    // Wrong version byte: refused and closed.
    let mut c = Client::raw(gw).await;
    c.conn
        .get_mut()
        .write_all(&[0, 0, 0, 2, 9, 1])
        .await
        .unwrap();
    assert_eq!(
        code(&c.next().await),
        Some(ErrorCode::UnsupportedVersion as u16)
    );
    assert!(c.next().await.is_none(), "closed after a malformed frame");

    // Garbage body under the right version.
    let mut c = Client::raw(gw).await;
    c.conn
        .get_mut()
        .write_all(&[0, 0, 0, 3, sut_wire::protocol::VERSION, 0x42, 7])
        .await
        .unwrap();
    assert_eq!(code(&c.next().await), Some(ErrorCode::Malformed as u16));

    // Oversized frame.
    let mut c = Client::raw(gw).await;
    let mut big = BytesMut::new();
    big.put_u32(1 << 20);
    big.put_slice(&[1u8; 64]);
    c.conn.get_mut().write_all(&big).await.unwrap();
    assert_eq!(code(&c.next().await), Some(ErrorCode::TooLarge as u16));

    // A shake before Hello.
    let mut c = Client::raw(gw).await;
    assert_eq!(
        code(&c.req(Frame::Heartbeat).await),
        Some(ErrorCode::NotHelloFirst as u16)
    );

    // Someone else's auth token.
    let mut c = Client::raw(gw).await;
    let token = Bytes::copy_from_slice(&auth.auth_token(2));
    assert_eq!(
        code(
            &c.req(Frame::Hello {
                user_id: 3,
                auth_token: token
            })
            .await
        ),
        Some(ErrorCode::AuthFailed as u16)
    );

    // A tampered cookie is refused, but the session goes on.
    let mut c = Client::hello(gw, 4, &auth).await;
    let Some(Frame::ShakeReply { cookie, .. }) = c
        .req(Frame::Shake {
            cookie: Bytes::new(),
        })
        .await
    else {
        panic!("no shake reply");
    };
    let mut bad = cookie.to_vec();
    bad[9] ^= 0x01;
    assert_eq!(
        code(&c.req(Frame::Shake { cookie: bad.into() }).await),
        Some(ErrorCode::CookieInvalid as u16)
    );
    assert!(matches!(
        c.req(Frame::Heartbeat).await,
        Some(Frame::HeartbeatAck { .. })
    ));

    // Tokens: forged, someone else's, replayed.
    let (mut owner, _user, token, amount) = win(gw, &auth, 10_000).await;
    let mut forged = token.to_vec();
    forged[17] ^= 0x40; // raise the amount
    assert_eq!(
        code(
            &owner
                .req(Frame::Open {
                    token: forged.into()
                })
                .await
        ),
        Some(ErrorCode::TokenForged as u16)
    );
    let mut thief = Client::hello(gw, 999_999, &auth).await;
    assert_eq!(
        code(
            &thief
                .req(Frame::Open {
                    token: token.clone()
                })
                .await
        ),
        Some(ErrorCode::TokenNotYours as u16)
    );
    assert_eq!(
        owner
            .req(Frame::Open {
                token: token.clone()
            })
            .await,
        Some(Frame::OpenReply {
            code: 0,
            amount_cents: amount
        })
    );
    // A repeat gets the original answer again: ok and the amount.
    assert_eq!(
        owner.req(Frame::Open { token }).await,
        Some(Frame::OpenReply {
            code: 0,
            amount_cents: amount
        })
    );

    // The server frame sent by a client is refused.
    let mut c = Client::hello(gw, 5, &auth).await;
    c.conn
        .send(Frame::HeartbeatAck { server_time_ms: 0 })
        .await
        .unwrap();
    assert_eq!(code(&c.next().await), Some(ErrorCode::Unexpected as u16));

    // The good user never noticed.
    assert!(matches!(
        good.req(Frame::Heartbeat).await,
        Some(Frame::HeartbeatAck { .. })
    ));
    assert!(matches!(
        good.req(Frame::Shake {
            cookie: Bytes::new()
        })
        .await,
        Some(Frame::ShakeReply { .. })
    ));

    // Every refusal was counted.
    let body = scrape(metrics);
    for (name, n) in [
        ("unsupported_version", 1),
        ("malformed", 1),
        ("too_large", 1),
        ("not_hello_first", 1),
        ("auth_failed", 1),
        ("cookie_invalid", 1),
        ("unexpected", 1),
    ] {
        let line = format!("sut_gateway_errors_total{{code=\"{name}\"}} {n}");
        assert!(body.contains(&line), "missing `{line}` in:\n{body}");
    }
    for (name, n) in [
        ("token_forged", 1),
        ("token_not_yours", 1),
        ("repeat", 1),
        ("ok", 1),
    ] {
        let line = format!("sut_gateway_opens_total{{result=\"{name}\"}} {n}");
        assert!(body.contains(&line), "missing `{line}` in:\n{body}");
    }
}

#[test]
fn corrupt_seed_shard_stops_the_gateway_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, 1);
    let shard = data.join("seeds/round-1/gateway-0.shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let out = sut_cmd()
        .args([
            "gateway",
            "--id",
            "0",
            "--gateways",
            "1",
            "--listen",
            "127.0.0.1:17420",
            "--data",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway-0.shard") && err.contains("checksum"),
        "{err}"
    );
}

/// A corrupt database never means an empty start: each part refuses to start and
/// names the file, so nobody loses the records of a run by restarting over them.
#[test]
fn corrupt_databases_stop_each_part_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, 1);
    let garbage = vec![0x5au8; 16 * 1024];
    for (file, args) in [
        (
            "gateway-0.redb",
            vec![
                "gateway",
                "--id",
                "0",
                "--gateways",
                "1",
                "--listen",
                "127.0.0.1:17421",
            ],
        ),
        (
            "envelope.redb",
            vec!["envelope", "--listen", "127.0.0.1:17422"],
        ),
        (
            "payment.redb",
            vec!["payment", "--listen", "127.0.0.1:17423"],
        ),
    ] {
        std::fs::write(data.join(file), &garbage).unwrap();
        let out = sut_cmd()
            .args(&args)
            .args(["--data", data.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{file}: started on a corrupt database"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file), "{file}: {err}");
        // Nothing was written over the evidence.
        assert_eq!(std::fs::read(data.join(file)).unwrap(), garbage, "{file}");
    }
}
