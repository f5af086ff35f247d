//! Strict per-user limits across real gateway processes: one user shaking on two
//! gateways at the same moment, with no cookie, never gets more than 3 envelopes nor 2
//! of one sponsor, because every win is reserved at the user's owner (the envelope
//! backend) before it is issued. The same race with strictness off shows what the
//! three layers alone allow when the gateways have not synced.

mod common;

use common::*;
use sut_wire::protocol::{Frame, Outcome};

/// Payment, the backend and two gateways; `flags` go to both gateways.
struct System {
    gateways: [String; 2],
    auth: sut_wire::signing::SigningKey,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn system(base: u16, flags: &[&str]) -> System {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let d = data.to_str().unwrap().to_string();
    prepare(data, 2);
    let show_start = shellkit::clock::unix_ms().to_string();
    let pay = format!("127.0.0.1:{base}");
    let env = format!("127.0.0.1:{}", base + 1);
    let gws = [
        format!("127.0.0.1:{}", base + 10),
        format!("127.0.0.1:{}", base + 11),
    ];
    let mut procs = vec![spawn(&["payment", "--listen", &pay, "--data", &d])];
    wait_port(&pay);
    procs.push(spawn(&[
        "envelope",
        "--listen",
        &env,
        "--payment",
        &pay,
        "--data",
        &d,
    ]));
    wait_port(&env);
    for (i, gw) in gws.iter().enumerate() {
        let id = i.to_string();
        let mut args = vec![
            "gateway",
            "--id",
            &id,
            "--gateways",
            "2",
            "--listen",
            gw,
            "--data",
            &d,
            "--envelope",
            &env,
            "--show-start-ms",
            &show_start,
            // The shared view never syncs during the test: only the reservations can
            // tell one gateway what the other issued.
            "--sync-interval",
            "1h",
        ];
        args.extend_from_slice(flags);
        procs.push(spawn(&args));
        wait_port(gw);
    }
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();
    System {
        gateways: gws,
        auth,
        _procs: procs,
        _dir: dir,
    }
}

/// The sponsor of the envelope a reply carries, if any.
fn won(reply: Option<Frame>) -> Option<u16> {
    match reply {
        Some(Frame::ShakeReply {
            outcome: Outcome::Envelope { sponsor, .. },
            ..
        }) => Some(sponsor),
        _ => None,
    }
}

/// One user shakes on both gateways at once, with no cookie, `rounds` times; the
/// sponsors of every envelope won.
async fn race(s: &System, user: u64, rounds: usize) -> Vec<u16> {
    let mut a = Client::hello(&s.gateways[0], user, &s.auth).await;
    let mut b = Client::hello(&s.gateways[1], user, &s.auth).await;
    let mut sponsors = Vec::new();
    for _ in 0..rounds {
        let shake = || Frame::Shake {
            cookie: bytes::Bytes::new(),
        };
        let (x, y) = tokio::join!(a.req(shake()), b.req(shake()));
        sponsors.extend(won(x));
        sponsors.extend(won(y));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sponsors
}

#[tokio::test(flavor = "current_thread")]
async fn a_user_racing_two_gateways_never_passes_the_limits() {
    let s = system(17600, &[]);
    for user in [7, 8, 9] {
        let mut sponsors = race(&s, user, 60).await;
        assert_eq!(sponsors.len(), 3, "user {user} won {sponsors:?}");
        sponsors.sort_unstable();
        sponsors.dedup();
        assert_eq!(sponsors.len(), 3, "user {user}: a sponsor twice");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn without_reservations_the_race_passes_the_limits() {
    let s = system(17620, &["--no-strict-limits"]);
    let sponsors = race(&s, 7, 60).await;
    assert_eq!(
        sponsors.len(),
        6,
        "each gateway alone allows 3 when they have not synced: {sponsors:?}"
    );
}
