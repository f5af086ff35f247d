//! The reference runs as `bench/shakes.sh` runs it: two servers, one client, saturated
//! and on a schedule, and prints figures that add up.

use std::process::{Child, Command};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_echo-reference");

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(addr: &str) -> Server {
    Server(
        Command::new(BIN)
            .args(["serve", "--listen", addr])
            .spawn()
            .expect("start the echo server"),
    )
}

fn drive(addrs: &str, rate: &str) -> serde_json::Value {
    drive_with(
        addrs,
        &["--rate", rate, "--warmup", "200ms", "--measure", "500ms"],
    )
}

fn drive_with(addrs: &str, args: &[&str]) -> serde_json::Value {
    // The servers may still be binding: the client fails to connect until they are.
    for _ in 0..100 {
        let out = Command::new(BIN)
            .args(["drive", "--connect", addrs, "--connections", "20"])
            .args(args)
            .output()
            .expect("run the echo client");
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("one JSON object");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the echo client never got through to {addrs}");
}

#[test]
fn the_echo_answers_every_request_and_counts_it() {
    let _a = serve("127.0.0.1:16941");
    let _b = serve("127.0.0.1:16942");
    let addrs = "127.0.0.1:16941,127.0.0.1:16942";
    let saturated = drive(addrs, "0");
    assert_eq!(saturated["connections"], 20);
    assert!(saturated["requests"].as_u64().unwrap() > 0, "{saturated}");
    // A shake with its cookie, as the load generator sends it.
    assert_eq!(saturated["frame_bytes"], 43);
    let paced = drive(addrs, "100");
    let requests = paced["requests"].as_f64().unwrap();
    let seconds = paced["seconds"].as_f64().unwrap();
    // 20 connections at 100 a second each: no more than 2,000 a second, and the
    // schedule is kept at least roughly on a loaded machine.
    assert!(requests <= 2000.0 * seconds + 20.0, "{paced}");
    assert!(requests > 0.0, "{paced}");
    assert!(paced["p99_ms"].as_f64().unwrap() >= paced["p50_ms"].as_f64().unwrap());
}

#[test]
fn the_progress_file_holds_the_replies_counted_so_far() {
    let _a = serve("127.0.0.1:16944");
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress");
    let path = progress.to_str().unwrap();
    let figures = drive_with(
        "127.0.0.1:16944",
        &[
            "--warmup",
            "0s",
            "--measure",
            "300ms",
            "--progress-file",
            path,
        ],
    );
    // With no warmup every reply is in the window; the file was last written at most
    // 10 ms before the end, so it holds at most that many and some.
    let requests = figures["requests"].as_u64().unwrap();
    let text = std::fs::read_to_string(&progress).unwrap();
    let counted: u64 = text.trim().parse().expect("a count");
    assert!(
        counted > 0 && counted <= requests,
        "{counted} of {requests}"
    );
}

#[test]
fn a_client_without_a_server_says_so() {
    let out = Command::new(BIN)
        .args([
            "drive",
            "--connect",
            "127.0.0.1:16943",
            "--connections",
            "1",
        ])
        .output()
        .expect("run the echo client");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to the echo server at 127.0.0.1:16943"),
        "{err}"
    );
}
