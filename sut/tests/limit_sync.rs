//! The third limit layer across real processes: a user who reached the limit on one
//! gateway, then drops the cookie and hops to another gateway that never saw them, gets
//! no more envelopes there once the gateways have synced the shared view through the
//! envelope backend; a user the view does not know is still served.

mod common;

use common::*;

/// Shakes (no cookie) until `want` envelopes are won; gives up after `tries`.
async fn win(c: &mut Client, want: usize, tries: usize) -> usize {
    let mut won = 0;
    for _ in 0..tries {
        if won >= want {
            break;
        }
        if c.shake_for_envelope().await.is_some() {
            won += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    won
}

fn view_users(metrics: &str) -> u64 {
    scrape(metrics)
        .lines()
        .find_map(|l| l.strip_prefix("sut_gateway_limit_view_users "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
async fn a_user_at_the_limit_hops_gateways_without_a_cookie_and_gets_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let d = data.to_str().unwrap();
    prepare(data, 2);
    let show_start = shellkit::clock::unix_ms().to_string();
    let (pay, env) = ("127.0.0.1:17330", "127.0.0.1:17331");
    let gws = ["127.0.0.1:17340", "127.0.0.1:17341"];
    let metrics = ["127.0.0.1:17350", "127.0.0.1:17351"];
    let payment = spawn(&["payment", "--listen", pay, "--data", d]);
    wait_port(pay);
    let envelope = spawn(&["envelope", "--listen", env, "--payment", pay, "--data", d]);
    wait_port(env);
    let gateways: Vec<Proc> = (0..2)
        .map(|i| {
            let id = i.to_string();
            let g = spawn(&[
                "gateway",
                "--id",
                &id,
                "--gateways",
                "2",
                "--listen",
                gws[i],
                "--metrics",
                metrics[i],
                "--data",
                d,
                "--envelope",
                env,
                "--show-start-ms",
                &show_start,
                "--sync-interval",
                "200ms",
                // The shared view alone: the owner's reservations would refuse the
                // hop whether or not the view synced.
                "--no-strict-limits",
            ]);
            wait_port(gws[i]);
            g
        })
        .collect();
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();

    let mut first = Client::hello(gws[0], 42, &auth).await;
    assert_eq!(
        win(&mut first, 3, 2_000).await,
        3,
        "user 42 reaches the limit on gateway 0"
    );

    // Wait (on a condition, not a clock) until gateway 1's view knows user 42.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while view_users(metrics[1]) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway 1 never synced the view"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut hopper = Client::hello(gws[1], 42, &auth).await;
    assert_eq!(
        win(&mut hopper, 1, 300).await,
        0,
        "the hop without a cookie won more"
    );
    let mut stranger = Client::hello(gws[1], 43, &auth).await;
    assert!(
        win(&mut stranger, 1, 2_000).await == 1,
        "gateway 1 still serves other users"
    );

    for g in gateways {
        assert!(g.stop().success());
    }
    assert!(envelope.stop().success());
    assert!(payment.stop().success());
}
