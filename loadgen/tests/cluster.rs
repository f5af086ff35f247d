//! Distributed runs on loopback: a real `loadgen coordinator` and real `loadgen agent`
//! processes against a real system. The merged figures must equal one machine's, a lost
//! agent must be named and fail the run (unless the profile allows it), a dead
//! coordinator must take its agents' users down with it, a stranger's token must be
//! refused, and a segment that starts late must say so and fail.

mod common;

use common::{bin, flow_profile, Proc, Sut};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOKEN: &str = "a token shared by the coordinator and its agents";

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 8s, envelopes: 400, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

fn spawn_target(dir: &Path, base_port: u16) -> String {
    format!(
        "target:\n  spawn: {{ gateways: 2, timeline: timeline.yaml, data: {}, base_port: {base_port}, countdown: 1s, settle: 1s, split_ttl: 3s, tiers: false }}",
        dir.join("data").display()
    )
}

fn address_target(dir: &Path, base_port: u16) -> String {
    format!(
        "target:\n  addresses:\n    gateways: [127.0.0.1:{}, 127.0.0.1:{}]\n    auth_key_file: {}",
        base_port + 10,
        base_port + 11,
        dir.join("data/auth.key").display()
    )
}

fn loadgen(dir: &Path) -> Command {
    let mut c = Command::new(bin("loadgen"));
    c.env("SUT_BIN", bin("sut"))
        .env("LOADGEN_TOKEN", TOKEN)
        .current_dir(dir);
    c
}

fn coordinator(dir: &Path, name: &str, port: u16, agents: u64, args: &[&str]) -> Proc {
    let mut c = loadgen(dir);
    c.arg("coordinator")
        .arg(dir.join(format!("{name}.yaml")))
        .args(["--agents", &agents.to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers-per-agent", "1"])
        .arg("--summary-json")
        .arg(dir.join(format!("{name}.json")))
        .arg("--report-dir")
        .arg(dir.join(name))
        .args(args);
    Proc::start(c, dir.join(format!("{name}-coordinator.log")))
}

fn agent(dir: &Path, name: &str, port: u16) -> Proc {
    let mut c = loadgen(dir);
    c.arg("agent")
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--name", name]);
    Proc::start(c, dir.join(format!("agent-{name}.log")))
}

fn summary(dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(format!("{name}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|_| panic!("no {}", path.display())),
    )
    .unwrap()
}

fn count(r: &serde_json::Value, op: &str) -> u64 {
    r["ops"][op]["count"].as_u64().unwrap_or(0)
}

#[test]
fn agents_merge_to_what_one_machine_measures() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    let text = flow_profile(&spawn_target(dir, 16000), 600, 8, "");
    std::fs::write(dir.join("one.yaml"), &text).unwrap();
    std::fs::write(dir.join("many.yaml"), &text).unwrap();

    // One machine, two workers.
    let single: Output = loadgen(dir)
        .arg("run")
        .arg(dir.join("one.yaml"))
        .args(["--workers", "2", "--summary-json"])
        .arg(dir.join("one.json"))
        .arg("--report-dir")
        .arg(dir.join("one"))
        .output()
        .unwrap();
    let single_out = String::from_utf8_lossy(&single.stderr).into_owned();
    assert!(single.status.success(), "{single_out}");

    // Two agents of one worker each: the same users in the same parts.
    let mut c = coordinator(dir, "many", 16301, 2, &[]);
    let _a = agent(dir, "a", 16301);
    let _b = agent(dir, "b", 16301);
    let passed = c.wait(Duration::from_secs(120));
    let log = c.log();
    assert!(passed, "{log}");
    let (one, many) = (summary(dir, "one"), summary(dir, "many"));

    // What the stages and the seed decide is the same, request for request.
    for op in ["connect", "hello", "shake"] {
        assert!(count(&one, op) > 0, "{op}");
        assert_eq!(count(&one, op), count(&many, op), "{op}\n{log}");
    }
    assert_eq!(
        one["shake_outcomes"]["envelope"], many["shake_outcomes"]["envelope"],
        "every envelope issued is won in both"
    );
    assert_eq!(one["users_connected"], many["users_connected"]);
    assert_eq!(one["desired_shakes"], many["desired_shakes"]);
    // Both audits passed (the runs passed), and the merge lost nothing.
    assert_eq!(many["audit"]["lost"], 0);
    let by_worker: Vec<u64> = many["requests_by_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(by_worker.len(), 2);
    assert_eq!(
        by_worker.iter().sum::<u64>(),
        many["requests"].as_u64().unwrap()
    );
    let cluster = &many["cluster"];
    assert_eq!(cluster["lost"], 0);
    assert_eq!(cluster["passed"], true);
    for a in cluster["agents"].as_array().unwrap() {
        assert_eq!(a["state"], "finished", "{a}");
        assert!(a["requests"].as_u64().unwrap() > 0);
    }
    // Friends on the other agent were told of shares, and grabbed.
    assert!(cluster["relayed_mail"].as_u64().unwrap() > 0, "{cluster}");
    assert!(count(&many, "grab") > 0);
    // One interval log, HTML report and summary, as from one machine.
    for f in ["latency.hlog", "report.html", "summary.json"] {
        assert!(dir.join("many").join(f).exists(), "{f}");
    }
    // The resources line names what it covers and prints no made-up zeros.
    assert!(many["resources"]["hosts"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));
}

#[test]
fn a_lost_agent_is_named_and_fails_the_run_unless_the_profile_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    for (name, port, base, extra, should_pass) in [
        ("strict", 16302, 16100, "", false),
        ("lenient", 16303, 16200, "agents: { min: 1 }", true),
    ] {
        let metrics = port + 10;
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            flow_profile(&spawn_target(&dir.join(name), base), 300, 8, extra),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("timeline.yaml"), TIMELINE).unwrap();
        let metrics_addr = format!("127.0.0.1:{metrics}");
        let mut c = coordinator(
            dir,
            name,
            port,
            2,
            &["--agent-silence", "3s", "--metrics", &metrics_addr],
        );
        let _a = agent(dir, "a", port);
        let mut b = agent(dir, "b", port);
        c.wait_for("[   2s]", Duration::from_secs(60));
        b.child.kill().unwrap();
        if should_pass {
            // The run goes on without b, and /metrics says b is down.
            c.wait_for("lost at", Duration::from_secs(30));
            // Every series also carries the run's id.
            let agent_up = |k: &str, agent: &str, segment: &str| {
                k.starts_with("loadgen_agent_up{")
                    && k.contains(&format!(r#"agent="{agent}""#))
                    && k.contains(&format!(r#"segment="{segment}""#))
                    && k.contains("run_id=")
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while !common::scrape(metrics)
                .iter()
                .any(|(k, v)| agent_up(k, "b", "1/2") && *v == 0.0)
            {
                assert!(
                    Instant::now() < deadline,
                    "agent b's loadgen_agent_up never went to 0"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(common::scrape(metrics)
                .iter()
                .any(|(k, v)| agent_up(k, "a", "0/2") && *v == 1.0));
        }
        let passed = c.wait(Duration::from_secs(120));
        let log = c.log();
        assert_eq!(passed, should_pass, "{name}\n{log}");
        assert!(log.contains("agent b (127.0.0.1:"), "{log}");
        assert!(log.contains("lost at"), "{log}");
        let r = summary(dir, name);
        let agents = r["cluster"]["agents"].as_array().unwrap();
        let lost = agents.iter().find(|a| a["name"] == "b").unwrap();
        assert!(
            lost["state"].as_str().unwrap().starts_with("lost"),
            "{lost}"
        );
        assert_eq!(r["cluster"]["lost"], 1);
        assert_eq!(r["cluster"]["passed"], should_pass, "{}", r["cluster"]);
        assert_eq!(r["passed"], should_pass);
        // What the lost agent sent before it went stays counted.
        assert!(lost["requests"].as_u64().unwrap() > 0, "{lost}");
    }
}

#[test]
fn a_dead_coordinator_stops_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = Sut::start(dir, 2, 16400, &[]);
    std::fs::write(
        dir.join("long.yaml"),
        flow_profile(&address_target(dir, 16400), 200, 120, ""),
    )
    .unwrap();
    let mut c = coordinator(dir, "long", 16304, 1, &[]);
    let mut a = agent(dir, "a", 16304);
    c.wait_for("[   2s]", Duration::from_secs(60));
    c.child.kill().unwrap();
    // The agent stops its users and exits long before the profile's two minutes.
    assert!(!a.wait(Duration::from_secs(20)), "{}", a.log());
    assert!(a.log().contains("the coordinator is gone"), "{}", a.log());
}

#[test]
fn a_stranger_is_refused_and_the_coordinator_does_not_wait_forever() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("p.yaml"),
        flow_profile(&address_target(dir, 16500), 10, 2, ""),
    )
    .unwrap();
    // The coordinator checks the files its profile names before it listens.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/auth.key"), "a key nobody uses here").unwrap();
    let mut c = coordinator(dir, "p", 16305, 1, &["--join-timeout", "4s"]);
    let mut stranger = loadgen(dir);
    stranger
        .env("LOADGEN_TOKEN", "not the token the coordinator holds")
        .args([
            "agent",
            "--coordinator",
            "127.0.0.1:16305",
            "--join-timeout",
            "20s",
        ]);
    let mut s = Proc::start(stranger, dir.join("stranger.log"));
    assert!(!s.wait(Duration::from_secs(30)));
    assert!(s.log().contains("different tokens"), "{}", s.log());
    assert!(!c.wait(Duration::from_secs(30)));
    let log = c.log();
    assert!(log.contains("was refused: the handshake failed"), "{log}");
    assert!(
        log.contains("only 0 of 1 agents joined within 4 s"),
        "{log}"
    );
}

#[test]
fn a_segment_that_starts_late_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = Sut::start(dir, 2, 16600, &[]);
    let (passed, r, out) = common::run_loadgen_named(
        dir,
        "late",
        &flow_profile(&address_target(dir, 16600), 100, 3, ""),
        &[
            "--segment",
            "1/2",
            "--start-at",
            &(unix_ms() - 3_000).to_string(),
        ],
    );
    assert!(!passed, "{out}");
    assert!(out.contains("joined mid-ramp"), "{out}");
    assert_eq!(r["origin"]["segment"], "1/2");
    assert!(r["origin"]["started_after_ms"].as_i64().unwrap() >= 3_000);
    // Gateways elsewhere: their figures are unknown, not zero.
    assert!(
        r["resources"]["gateway_bytes_per_connection"].is_null(),
        "{}",
        r["resources"]
    );
    assert!(out.contains("gateways, backend: not measured"), "{out}");
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
