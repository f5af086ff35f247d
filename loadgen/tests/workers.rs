//! The million-connection benchmark scaled down to what CI can hold: tens of thousands
//! of real connections from several worker processes to several gateway processes. The
//! parent's merged figures are checked against each worker's and against the gateways'
//! own counters, which the load generator never sees.

mod common;

use common::{run_loadgen, scrape, sum, Sut};

const USERS: u64 = 24_000;
const GATEWAYS: usize = 3;
const WORKERS: usize = 3;
const BASE_PORT: u16 = 17800;

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 2s, duration: 8s, envelopes: 600, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

fn gateway_addrs(base_port: u16) -> Vec<String> {
    (0..GATEWAYS)
        .map(|i| format!("127.0.0.1:{}", base_port + 10 + i as u16))
        .collect()
}

#[test]
fn workers_merge_exactly_and_every_user_holds_one_session() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = Sut::start(dir.path(), GATEWAYS, BASE_PORT, &[]);
    let gateways = gateway_addrs(BASE_PORT);
    let profile = format!(
        "
target:
  addresses:
    gateways: [{}]
    auth_key_file: {}
users: {USERS}
stages:
  - {{ duration: 6s, target: {USERS} }}
  - {{ duration: 6s, target: {USERS} }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 0.34
  open_probability: 0.8
  heartbeat_interval: 2s
  request_timeout: 30s
",
        gateways.join(", "),
        dir.path().join("data/auth.key").display()
    );
    let (r, stdout) = run_loadgen(dir.path(), &profile, &["--workers", &WORKERS.to_string()]);
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let list =
        |v: &serde_json::Value| -> Vec<u64> { v.as_array().unwrap().iter().map(u).collect() };

    // Every user held exactly one session, on exactly one gateway.
    assert_eq!(u(&r["connection_drops"]), 0, "{stdout}");
    assert_eq!(u(&r["users_connected"]), USERS, "{stdout}");
    let sessions = list(&r["sessions_by_gateway"]);
    assert_eq!(sessions.len(), GATEWAYS);
    assert_eq!(sessions.iter().sum::<u64>(), USERS, "{stdout}");

    // The merge is exact: the workers' requests sum to the parent's, and the merged
    // histograms hold one sample per answered request.
    let by_worker = list(&r["requests_by_worker"]);
    assert_eq!(by_worker.len(), WORKERS);
    assert!(by_worker.iter().all(|n| *n > 0), "{by_worker:?}");
    let requests = u(&r["requests"]);
    assert_eq!(by_worker.iter().sum::<u64>(), requests);
    let ops = r["ops"].as_object().unwrap();
    let answered: u64 = ops.values().map(|o| u(&o["count"])).sum();
    let failed: u64 = ops.values().map(|o| u(&o["errors"])).sum();
    assert_eq!(failed, 0, "{stdout}");
    assert_eq!(answered, requests);

    // And it matches what the gateways themselves counted.
    let scraped: Vec<Vec<(String, f64)>> = (0..GATEWAYS)
        .map(|i| scrape(BASE_PORT + 1010 + i as u16))
        .collect();
    for (i, series) in scraped.iter().enumerate() {
        let accepted = sum(series, "sut_gateway_sessions_total{result=\"accepted\"}");
        assert_eq!(accepted, sessions[i], "gateway {i}");
    }
    let total = |prefix: &str| scraped.iter().map(|s| sum(s, prefix)).sum::<u64>();
    // Shakes the gateways answered "come back later" (when busy) carry no latency.
    let come_back = r["shake_outcomes"]["come_back_later"].as_u64().unwrap_or(0);
    assert_eq!(
        total("sut_gateway_shakes_total"),
        u(&ops["shake"]["count"]) + come_back
    );
    assert_eq!(
        total("sut_gateway_heartbeats_total"),
        u(&ops["heartbeat"]["count"])
    );
    assert_eq!(
        total("sut_gateway_opens_total{result=\"ok\"}"),
        u(&ops["open"]["count"])
    );
    // Every user shook at least once: decided, or told to come back later when the
    // gateways (on a busy machine) raised their tier.
    assert!(u(&ops["shake"]["count"]) + come_back >= USERS, "{stdout}");
    assert!(u(&ops["heartbeat"]["count"]) > 0, "{stdout}");
}

/// Gateways that hold only a few connections turn the rest away with `GatewayFull`, and
/// those users move on to the next gateway until every one of them holds a session.
#[test]
fn users_turned_away_by_a_full_gateway_connect_to_another() {
    const PORT: u16 = 17850;
    const MAX: u64 = 20;
    const FEW: u64 = 55;
    // The premise: by hash alone, some gateway would get more than it may hold.
    let mut homes = [0u64; GATEWAYS];
    for user in 0..FEW {
        homes[loadgen::worker::home_gateway(user, GATEWAYS)] += 1;
    }
    assert!(homes.iter().any(|n| *n > MAX), "{homes:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = Sut::start(
        dir.path(),
        GATEWAYS,
        PORT,
        &["--max-connections", &MAX.to_string()],
    );
    let profile = format!(
        "
target:
  addresses:
    gateways: [{}]
    auth_key_file: {}
users: {FEW}
stages:
  - {{ duration: 1s, target: {FEW} }}
  - {{ duration: 3s, target: {FEW} }}
behaviour:
  shake_rate: 1
  open_probability: 0.5
",
        gateway_addrs(PORT).join(", "),
        dir.path().join("data/auth.key").display()
    );
    let (r, stdout) = run_loadgen(dir.path(), &profile, &["--workers", "2"]);
    let sessions: Vec<u64> = r["sessions_by_gateway"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(r["users_connected"].as_u64(), Some(FEW), "{stdout}");
    assert_eq!(sessions.iter().sum::<u64>(), FEW, "{stdout}");
    assert!(sessions.iter().all(|n| *n <= MAX), "{sessions:?}");
    let turned_away = r["errors_by_kind"]["hello/gateway_full"]
        .as_u64()
        .unwrap_or(0);
    assert!(turned_away > 0, "{stdout}");
    let full: u64 = (0..GATEWAYS)
        .map(|i| {
            sum(
                &scrape(PORT + 1010 + i as u16),
                "sut_gateway_sessions_total{result=\"full\"}",
            )
        })
        .sum();
    assert_eq!(full, turned_away);
}
