//! Resource pre-push with real processes: phones of `loadgen run` pre-download from a
//! `sut up` with resource servers, while the test drives the operator and the faults
//! through `sut up`'s control input.
//!
//! - Counted twice, counted alike: what the phones received and what the servers say
//!   they served (bytes, answers by status, corrupted responses) agree exactly, every
//!   corrupted copy was refused, and an update fetched only the items it changed.
//! - A download cut by a server's death resumes elsewhere from its byte; phones told
//!   not to verify keep tampered copies, and `resources: tampered_shown == 0` fails
//!   the run.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Round 1 begins 9 s into the show; its greetings name items 7 and 1.
const TIMELINE: &str = "
rounds:
  - { id: 1, start: 9s, duration: 5s, envelopes: 200, rate: 100, amount_cents: [1, 500], sponsors: [1, 2], resources: [7, 1] }
";

/// `sut up` with 2 resource servers of `items` items, its control input piped.
struct Up {
    sut: common::Sut,
    manifest: sut_wire::manifest::Manifest,
}

impl Up {
    fn start(dir: &Path, base: u16, items: u32, sizes: (u32, u32), bandwidth: u32) -> Up {
        std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
        let (items, min, max, bandwidth) = (
            items.to_string(),
            sizes.0.to_string(),
            sizes.1.to_string(),
            bandwidth.to_string(),
        );
        let sut = common::Sut::start(
            dir,
            1,
            base,
            &[
                "--resource-servers",
                "2",
                "--resource-items",
                &items,
                "--resource-min-size",
                &min,
                "--resource-max-size",
                &max,
                "--resource-bandwidth",
                &bandwidth,
            ],
        );
        let path = sut_wire::manifest::path(&dir.join("data"));
        let text = std::fs::read_to_string(&path).unwrap();
        let manifest = sut_wire::manifest::Manifest::parse(&text, &path).unwrap();
        Up { sut, manifest }
    }

    /// Sends `lines` at their times (from now) on a thread of their own.
    fn later(&mut self, lines: Vec<(u64, String)>) -> std::thread::JoinHandle<()> {
        let mut stdin = self.sut.take_control();
        std::thread::spawn(move || {
            let start = Instant::now();
            for (at_ms, line) in lines {
                let due = start + Duration::from_millis(at_ms);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                writeln!(stdin, "{line}").unwrap();
                stdin.flush().unwrap();
            }
            // Keeps the input open until dropped with the thread's end: `sut up`
            // reads a closed input as no more control lines, which is fine too.
        })
    }

    /// A resource server's scrape.
    fn metrics(&self, i: usize) -> Vec<(String, f64)> {
        let name = format!("resources-{i}");
        let (_, addr) = self
            .manifest
            .metrics
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap();
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        common::scrape(port)
    }

    /// A series summed over both servers.
    fn served(&self, prefix: &str) -> u64 {
        (0..2).map(|i| common::sum(&self.metrics(i), prefix)).sum()
    }
}

fn profile(dir: &Path, users: u64, hold_s: u64, pre_push: &str, thresholds: &str) -> String {
    format!(
        "
target:
  addresses: {{ gateways: [{gw}], auth_key_file: {key} }}
users: {users}
stages:
  - {{ duration: 1s, target: {users} }}
  - {{ duration: {hold_s}s, target: {users} }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 1
  open_probability: 0
  heartbeat_interval: 5s
pre_push:
{pre_push}
thresholds:
{thresholds}
",
        gw = "127.0.0.1:{GW}",
        key = dir.join("data/auth.key").display(),
    )
}

fn counts(report: &serde_json::Value) -> &serde_json::Value {
    &report["pre_push"]
}

#[test]
fn phones_and_servers_count_alike_and_an_update_fetches_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), 26000, 6, (20_000, 40_000), 20 << 20);
    let gateway = up.manifest.gateway_addrs[0].clone();
    // resources-1 corrupts half its item responses from the start to 4 s; at 6 s the
    // operator gives items 7 and 2 new bytes.
    up.sut.control("resources corrupt resources-1 50%");
    let lines = up.later(vec![
        (4000, "resources ok resources-1".into()),
        (6000, "resources update 7 2".into()),
    ]);
    let users = 20;
    let text = profile(
        dir.path(),
        users,
        12,
        "  user_bandwidth: 256KiB\n  manifest_poll: 1s",
        "  - 'resources: tampered_shown == 0'\n  - 'coverage: before_show >= 90%'",
    )
    .replace("127.0.0.1:{GW}", &gateway);
    let (report, stdout) = common::run_loadgen(dir.path(), &text, &[]);
    lines.join().unwrap();
    let p = counts(&report);
    assert!(p.is_object(), "a pre-push section: {stdout}");
    // Every phone ended holding version 2 whole.
    assert_eq!(p["newest_manifest"], 2, "{p}");
    assert_eq!(
        (p["covered"].as_u64(), p["online"].as_u64()),
        (Some(users), Some(users)),
        "{p}"
    );
    // The update: each phone kept the 4 unchanged items and fetched the 2 changed.
    assert_eq!(p["manifests_adopted"], 2 * users, "{p}");
    assert_eq!(p["items_kept_on_update"], 4 * users, "{p}");
    let refused = p["tampered_refused"].as_u64().unwrap();
    assert!(refused > 0, "the corrupt fault was met: {p}");
    assert_eq!(p["tampered_kept"], 0);
    assert_eq!(p["tampered_shown"], 0);
    // Item answers: 6 per phone, 2 more after the update, and one more per refusal;
    // manifest answers: one 200 per version per phone.
    let ok = p["requests"]["200"].as_u64().unwrap();
    assert_eq!(ok, users * (6 + 2) + refused + 2 * users, "{p}");
    assert_eq!(p["items_verified"], users * 8, "{p}");
    // The servers' own counts agree.
    assert_eq!(
        up.served("sut_resource_requests_total{status=\"200\"}"),
        ok,
        "{p}"
    );
    assert_eq!(
        up.served("sut_resource_requests_total{status=\"304\"}"),
        p["requests"]["304"].as_u64().unwrap_or(0),
        "{p}"
    );
    assert_eq!(up.served("sut_resource_corrupted_total"), refused, "{p}");
    assert_eq!(
        up.served("sut_resource_bytes_served_total"),
        p["bytes"].as_u64().unwrap(),
        "{p}"
    );
    // The show began after every phone was covered; greetings found their images.
    assert_eq!(p["before_show"], 1.0, "{p}");
    assert!(p["greeting_hits"].as_u64().unwrap() > 0, "{p}\n{stdout}");
    assert_eq!(p["greeting_misses"], 0, "{p}");
    assert!(stdout.contains("pre-push (resources):"), "{stdout}");
    let html = std::fs::read_to_string(dir.path().join("profile/report.html")).unwrap();
    assert!(html.contains("Pre-push (resources)"));
}

#[test]
fn a_cut_download_resumes_elsewhere_and_phones_that_do_not_verify_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Three items of about 160 KB, each server sending 512 KiB/s in all: an item
    // takes a second or two to arrive, so a server's death cuts it (a fast server
    // would have handed the whole body to the kernel's buffers already, and a phone's
    // own cap only slows its reading of them).
    let mut up = Up::start(dir.path(), 26200, 3, (150_000, 170_000), 512 << 10);
    let gateway = up.manifest.gateway_addrs[0].clone();
    up.sut.control("resources corrupt resources-1 100%");
    // resources-0 dies 2 s in, mid-download for every phone on it, and comes back.
    let lines = up.later(vec![
        (2000, "kill resources-0".into()),
        (5000, "start resources-0".into()),
    ]);
    let text = profile(
        dir.path(),
        10,
        12,
        "  user_bandwidth: 1MiB\n  manifest_poll: 1s\n  verify: false",
        "  - 'resources: tampered_shown == 0'",
    )
    .replace("127.0.0.1:{GW}", &gateway);
    let (passed, report, stdout) = common::run_loadgen_named(dir.path(), "cut", &text, &[]);
    lines.join().unwrap();
    let p = counts(&report);
    assert!(
        p["resumed"].as_u64().unwrap() > 0,
        "a cut download resumed: {p}\n{stdout}"
    );
    assert!(p["requests"]["error/cut"].as_u64().unwrap_or(0) > 0, "{p}");
    assert!(p["tampered_kept"].as_u64().unwrap() > 0, "{p}");
    assert!(p["tampered_shown"].as_u64().unwrap() > 0, "{p}\n{stdout}");
    assert!(
        !passed,
        "a phone showing a tampered copy fails the run\n{stdout}"
    );
    let rule = report["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["threshold"] == "resources: tampered_shown == 0")
        .expect("the threshold's result");
    assert_eq!(rule["passed"], false, "{rule}");
}
