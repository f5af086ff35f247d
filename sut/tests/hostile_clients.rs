//! Hostile clients against a real gateway process: each attack is held to its bound
//! (closed with its documented code, counted, memory released) while an honest user
//! on the same gateway keeps being answered. Liveness bounds are generous: a bound that
//! holds is met in milliseconds; one that does not hold misses it by seconds.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use std::time::{Duration, Instant};
use sut_wire::protocol::{ErrorCode, Frame};
use sut_wire::signing::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway of its own for one test, with extra flags.
struct Gateway {
    addr: String,
    metrics: String,
    auth: SigningKey,
    proc: Proc,
    _dir: tempfile::TempDir,
}

fn gateway(port: u16, flags: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, 1);
    let addr = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", port + 1);
    let mut args = vec![
        "gateway",
        "--id",
        "0",
        "--gateways",
        "1",
        "--listen",
        &addr,
        "--metrics",
        &metrics,
        "--data",
        data.to_str().unwrap(),
        "--envelope",
        "127.0.0.1:9",
    ];
    args.extend_from_slice(flags);
    let proc = spawn(&args);
    wait_port(&addr);
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();
    Gateway {
        addr,
        metrics,
        auth,
        proc,
        _dir: dir,
    }
}

impl Gateway {
    /// `sut_gateway_connection_limits_total{limit}` now.
    fn limit_hits(&self, limit: &str) -> u64 {
        let needle = format!("sut_gateway_connection_limits_total{{limit=\"{limit}\"}} ");
        scrape(&self.metrics)
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("no {needle} in the scrape"))
    }
}

/// The raw bytes of one frame, as a client writes them.
fn wire(frame: Frame) -> BytesMut {
    use tokio_util::codec::Encoder;
    let mut out = BytesMut::new();
    sut_wire::protocol::FrameCodec::default()
        .encode(frame, &mut out)
        .unwrap();
    out
}

fn hello_bytes(user: u64, auth: &SigningKey) -> BytesMut {
    wire(Frame::Hello {
        user_id: user,
        auth_token: Bytes::copy_from_slice(&auth.auth_token(user)),
    })
}

fn error_code(f: &Option<Frame>) -> Option<u16> {
    match f {
        Some(Frame::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

/// An honest user's round trip: a heartbeat answered, and how long it took.
async fn honest_round_trip(c: &mut Client) -> Duration {
    let t = Instant::now();
    let reply = c.req(Frame::Heartbeat).await;
    assert!(
        matches!(reply, Some(Frame::HeartbeatAck { .. })),
        "{reply:?}"
    );
    t.elapsed()
}

#[tokio::test(flavor = "current_thread")]
async fn a_pipelining_flood_costs_an_honest_user_nothing() {
    let gw = gateway(17520, &[]);
    let mut honest = Client::hello(&gw.addr, 1, &gw.auth).await;
    let baseline = honest_round_trip(&mut honest).await;

    // The attacker writes shakes with ~60 KB garbage cookies, 16 to a write, as fast
    // as the gateway takes them, and reads whatever comes back.
    let mut attacker = TcpStream::connect(&gw.addr).await.unwrap();
    attacker.write_all(&hello_bytes(2, &gw.auth)).await.unwrap();
    let mut burst = BytesMut::new();
    for _ in 0..16 {
        burst.extend_from_slice(&wire(Frame::Shake {
            cookie: Bytes::from(vec![0x5a; 60_000]),
        }));
    }
    let burst = burst.freeze();
    let (mut rd, mut wr) = attacker.into_split();
    let flood = tokio::spawn(async move { while wr.write_all(&burst).await.is_ok() {} });
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });

    let mut worst = Duration::ZERO;
    for _ in 0..30 {
        worst = worst.max(honest_round_trip(&mut honest).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_secs(2),
        "an honest user waited {worst:?} behind the flood (baseline {baseline:?})"
    );
    assert!(
        gw.limit_hits("rate_waits") > 0,
        "the flood was not held to its allowance"
    );
    let tier = scrape(&gw.metrics)
        .lines()
        .find_map(|l| l.strip_prefix("sut_gateway_throttle_tier "))
        .map(|v| v.trim().to_string());
    assert_eq!(
        tier.as_deref(),
        Some("0"),
        "one connection's flood raised the tier for everyone"
    );
    flood.abort();
    drain.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn slow_frames_before_and_after_hello_are_closed_with_their_codes() {
    let gw = gateway(17530, &["--hello-timeout", "1s", "--frame-timeout", "1s"]);
    let mut honest = Client::hello(&gw.addr, 1, &gw.auth).await;

    // Before Hello: a frame's first bytes, then nothing.
    let mut before = Client::raw(&gw.addr).await;
    before
        .conn
        .get_mut()
        .write_all(&[0, 0, 0x10])
        .await
        .unwrap();
    assert_eq!(
        error_code(&before.next().await),
        Some(ErrorCode::HelloTimeout as u16)
    );
    assert!(before.next().await.is_none(), "closed");

    // After Hello: half of a shake, a byte now and then.
    let mut after = Client::hello(&gw.addr, 2, &gw.auth).await;
    let shake = wire(Frame::Shake {
        cookie: Bytes::new(),
    });
    for b in &shake[..shake.len() / 2] {
        after.conn.get_mut().write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        error_code(&after.next().await),
        Some(ErrorCode::FrameTimeout as u16)
    );
    assert!(gw.limit_hits("hello_timeout") >= 1);
    assert!(gw.limit_hits("frame_timeout") >= 1);
    honest_round_trip(&mut honest).await;
}

#[tokio::test(flavor = "current_thread")]
async fn unfinished_frames_share_one_budget_and_the_grower_is_refused() {
    let gw = gateway(17540, &["--partial-budget", "150KiB"]);
    let mut honest = Client::hello(&gw.addr, 1, &gw.auth).await;
    // Each holds 60 KB of a 64 KB frame; the third goes past 150 KiB.
    let mut holders = Vec::new();
    let mut refused = 0;
    for user in 2..5u64 {
        let mut c = Client::hello(&gw.addr, user, &gw.auth).await;
        let mut part = BytesMut::new();
        part.put_u32(64 * 1024);
        part.put_slice(&vec![1u8; 60_000]);
        c.conn.get_mut().write_all(&part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        honest_round_trip(&mut honest).await;
        holders.push(c);
    }
    for c in holders.iter_mut() {
        if let Ok(Some(f)) =
            tokio::time::timeout(Duration::from_millis(500), async { c.next().await }).await
        {
            assert_eq!(error_code(&Some(f)), Some(ErrorCode::Overloaded as u16));
            refused += 1;
        }
    }
    assert_eq!(
        refused, 1,
        "exactly the connection past the budget is refused"
    );
    assert_eq!(gw.limit_hits("partial_budget"), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_does_not_read_is_closed_and_others_are_served() {
    let gw = gateway(
        17550,
        &[
            "--write-timeout",
            "1s",
            "--frames-per-second",
            "1000000",
            "--send-buffer",
            "16KiB",
        ],
    );
    let mut honest = Client::hello(&gw.addr, 1, &gw.auth).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut deaf = socket.connect(gw.addr.parse().unwrap()).await.unwrap();
    deaf.write_all(&hello_bytes(2, &gw.auth)).await.unwrap();
    // Heartbeats by the hundred thousand; their acks pile up unread.
    let beats: Vec<u8> = wire(Frame::Heartbeat).repeat(100_000);
    let _ = tokio::time::timeout(Duration::from_secs(30), deaf.write_all(&beats)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.limit_hits("write_timeout") == 0 {
        assert!(
            Instant::now() < deadline,
            "the deaf client was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    honest_round_trip(&mut honest).await;
}

#[tokio::test(flavor = "current_thread")]
async fn oversized_and_forged_cookies_are_refused_never_echoed() {
    let gw = gateway(17560, &[]);
    let mut c = Client::hello(&gw.addr, 1, &gw.auth).await;
    let reply = c
        .req(Frame::Shake {
            cookie: Bytes::from(vec![7u8; 65_000]),
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::FieldTooLarge as u16));
    let reply = c
        .req(Frame::Shake {
            cookie: Bytes::from(vec![7u8; 40]),
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::CookieInvalid as u16));
    // The session goes on.
    honest_round_trip(&mut c).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stop_does_not_wait_for_connections_that_never_logged_in() {
    let gw = gateway(17570, &["--hello-timeout", "10m", "--drain-timeout", "10m"]);
    let _lurker = TcpStream::connect(&gw.addr).await.unwrap();
    let mut half = TcpStream::connect(&gw.addr).await.unwrap();
    half.write_all(&[0, 0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.proc.stop())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the stop waited {:?} for connections with no Hello (hello deadline 10 min)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_users_frames_are_handled_at_their_allowance_and_no_faster() {
    // 100 frames a second with bursts of 200: 400 pipelined heartbeats take at least
    // (400 - 200) / 100 = 2 s, however fast the machine.
    let gw = gateway(17580, &["--frames-per-second", "100"]);
    let mut c = Client::hello(&gw.addr, 1, &gw.auth).await;
    let beats: Vec<u8> = wire(Frame::Heartbeat).repeat(400);
    let started = Instant::now();
    c.conn.get_mut().write_all(&beats).await.unwrap();
    for i in 0..400 {
        let reply = c.next().await;
        assert!(
            matches!(reply, Some(Frame::HeartbeatAck { .. })),
            "reply {i}: {reply:?}"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_950),
        "400 frames past a burst of 200 at 100/s took only {took:?}"
    );
    assert!(gw.limit_hits("rate_waits") >= 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_flood_is_turned_away_as_gateway_full_and_others_are_served() {
    let gw = gateway(17590, &["--max-connections", "40"]);
    let mut honest = Client::hello(&gw.addr, 1, &gw.auth).await;
    // Fill the gateway with connections that log in and hold on.
    let mut held = Vec::new();
    for user in 100..139 {
        held.push(Client::hello(&gw.addr, user, &gw.auth).await);
    }
    // The flood: every connection past the limit is told `gateway_full` and closed.
    let mut full = 0;
    for _ in 0..100 {
        let mut c = Client::raw(&gw.addr).await;
        let first = c.next().await;
        if error_code(&first) == Some(ErrorCode::GatewayFull as u16) {
            full += 1;
            assert!(c.next().await.is_none(), "closed after gateway_full");
        }
    }
    assert_eq!(full, 100, "every connection past the limit was turned away");
    // Those who hold a place are served throughout.
    honest_round_trip(&mut honest).await;
    honest_round_trip(&mut held[0]).await;
    // A place freed is a place for the next user.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Client::raw(&gw.addr).await;
        let token = Bytes::copy_from_slice(&gw.auth.auth_token(500));
        match c
            .req(Frame::Hello {
                user_id: 500,
                auth_token: token,
            })
            .await
        {
            Some(Frame::HelloAck { .. }) => break,
            other => {
                assert!(Instant::now() < deadline, "no place freed: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn while_the_gateway_sheds_a_forged_cookie_is_refused_never_echoed() {
    // Each decision burns 20 ms of CPU: fifty busy users overload the gateway, whose
    // tier climbs until it sheds shakes ("come back later", no decision).
    let gw = gateway(17594, &["--shake-cost", "20ms"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for user in 1000..1050 {
        let (addr, auth, stop) = (gw.addr.clone(), gw.auth.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut c = Client::hello(&addr, user, &auth).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cookie = Bytes::new();
                if c.req(Frame::Shake { cookie }).await.is_none() {
                    break;
                }
            }
        }));
    }
    let mut c = Client::hello(&gw.addr, 7, &gw.auth).await;
    let forged = Bytes::from(vec![7u8; 40]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shed_then_forged = 0;
    while shed_then_forged < 5 {
        assert!(Instant::now() < deadline, "the gateway never shed a shake");
        let reply = c
            .req(Frame::Shake {
                cookie: Bytes::new(),
            })
            .await;
        if let Some(Frame::ShakeReply {
            outcome: sut_wire::protocol::Outcome::ComeBackLater,
            ..
        }) = reply
        {
            // Shedding now: a forged cookie must be refused, not echoed back.
            let reply = c
                .req(Frame::Shake {
                    cookie: forged.clone(),
                })
                .await;
            assert_eq!(
                error_code(&reply),
                Some(ErrorCode::CookieInvalid as u16),
                "{reply:?}"
            );
            shed_then_forged += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
}
