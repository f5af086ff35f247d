//! A hung envelope backend (SIGSTOP, as a stalled disk or a GC pause would) costs a
//! user a retry, not a timeout: shares and grabs are answered `unavailable` within the
//! gateway's backend deadline however many are waiting, the same connection's shakes
//! go on being answered, and once the backend resumes the answers are real again.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};
use sut_wire::protocol::{ErrorCode, Frame};

fn envelope_pid(data: &Path) -> i32 {
    let text = std::fs::read_to_string(data.join("events.jsonl")).unwrap();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["part"] == "envelope" && v["event"] == "started")
        .find_map(|v| v["pid"].as_i64())
        .expect("the backend's pid in events.jsonl") as i32
}

fn grab_code(f: &Option<Frame>) -> Option<u16> {
    match f {
        Some(Frame::GrabReply { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Continues the backend whatever happens to the test.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_hung_backend_costs_a_retry_within_the_deadline_not_a_timeout() {
    let (_dir, data, timeline) = common::show_dir(TIMELINE);
    let up = Proc(
        sut_cmd()
            .args([
                "up",
                "--gateways",
                "1",
                "--base-port",
                "18300",
                "--countdown",
                "0s",
            ])
            .args(["--backend-deadline", "300ms"])
            .arg("--data")
            .arg(&data)
            .arg("--timeline")
            .arg(&timeline)
            .spawn()
            .unwrap(),
    );
    wait_manifest(&data);
    let gw = "127.0.0.1:18310";
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();
    let mut users = Vec::new();
    for user in 1..=6 {
        users.push(Client::hello(gw, user, &auth).await);
    }
    // The backend answers: no such share.
    let no_such = Some(ErrorCode::NoSuchShare as u16);
    assert_eq!(
        grab_code(&users[0].req(Frame::Grab { share_id: 77 }).await),
        no_such
    );

    let hung = Stopped(envelope_pid(&data));
    kill(Pid::from_raw(hung.0), Signal::SIGSTOP).unwrap();
    // Six users grab at once, twice each: twelve requests queue for a backend that does
    // not answer. Every one is answered `unavailable` within the deadline (300 ms here;
    // the RPC timeout behind it is 3 s), checked with a generous margin.
    let started = Instant::now();
    let rounds = users.iter_mut().map(|c| async move {
        let mut codes = Vec::new();
        for _ in 0..2 {
            let asked = Instant::now();
            codes.push(grab_code(&c.req(Frame::Grab { share_id: 77 }).await));
            assert!(
                asked.elapsed() < Duration::from_millis(2_500),
                "a grab to a hung backend waited {:?} (deadline 300 ms)",
                asked.elapsed()
            );
        }
        // The same connection's shake is answered right after.
        let shake = c
            .req(Frame::Shake {
                cookie: bytes::Bytes::new(),
            })
            .await;
        assert!(matches!(shake, Some(Frame::ShakeReply { .. })), "{shake:?}");
        codes
    });
    let codes = futures_util::future::join_all(rounds).await;
    let took = started.elapsed();
    for c in codes.iter().flatten() {
        assert_eq!(*c, Some(ErrorCode::Unavailable as u16), "{codes:?}");
    }
    assert!(
        took < Duration::from_secs(10),
        "twelve grabs to a hung backend took {took:?}: they waited behind each other"
    );

    // Resumed: real answers again.
    drop(hung);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match grab_code(&users[0].req(Frame::Grab { share_id: 77 }).await) {
            c if c == no_such => break,
            c => {
                assert_eq!(c, Some(ErrorCode::Unavailable as u16));
                assert!(
                    Instant::now() < deadline,
                    "the backend never answered again"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drop(users);
    assert!(up.stop().success());
}
