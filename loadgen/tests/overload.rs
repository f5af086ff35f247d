//! A gateway with a tiny capacity (each shake decision burns 2 ms of CPU) is offered
//! about three times what it can decide. It must raise its throttle tier, the clients
//! must obey (fewer shake requests than they wanted), and once the surge is over the
//! gateway must relax back to tier 0. Nothing here measures speed: the overload is
//! large by construction, and the checks are on tiers and counts.

mod common;

use common::{run_loadgen, scrape, sum, Sut};

const PORT: u16 = 17950;

const TIMELINE: &str = "
tiers: [200ms, 1s, 2s, 3s]
rounds:
  - { id: 1, start: 1s, duration: 30s, envelopes: 200, rate: 20, amount_cents: [1, 500], sponsors: [1, 2] }
";

#[test]
fn an_overloaded_gateway_raises_its_tier_clients_slow_down_and_it_relaxes_after() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let sut = Sut::start(dir.path(), 1, PORT, &["--shake-cost", "2ms"]);
    let data = dir.path().join("data");

    // 300 users wanting 10 shakes a second, sent at most one per 200 ms at tier 0:
    // 1,500 decisions a second offered to a gateway that can make at most 500.
    let profile = format!(
        "
target:
  addresses:
    gateways: ['127.0.0.1:{}']
    auth_key_file: {}
users: 300
stages:
  - {{ duration: 1s, target: 300 }}
  - {{ duration: 6s, target: 300 }}
  - {{ duration: 0s, target: 10 }}
  - {{ duration: 12s, target: 10 }}
behaviour:
  shake_rate: 10
  open_probability: 0.5
  request_timeout: 30s
",
        PORT + 10,
        data.join("auth.key").display()
    );
    let (r, stdout) = run_loadgen(dir.path(), &profile, &[]);
    let tier_after = sum(&scrape(PORT + 1010), "sut_gateway_throttle_tier");
    drop(sut);

    // The gateway raised its tier and the clients saw it.
    let tiers = r["tiers_seen"].as_object().unwrap();
    let highest = tiers
        .keys()
        .filter_map(|k| k.parse::<u8>().ok())
        .max()
        .unwrap();
    assert!(highest >= 1, "no tier above 0 was seen\n{stdout}");
    assert!(r["tier_transitions"].as_u64().unwrap() > 0, "{stdout}");
    // The clients obeyed: they sent fewer requests than the shakes they wanted.
    let requests = r["ops"]["shake"]["count"].as_u64().unwrap();
    let desired = r["desired_shakes"].as_u64().unwrap();
    assert!(
        requests > 0 && desired > 2 * requests,
        "{desired} wanted, {requests} sent\n{stdout}"
    );
    // Time above tier 0 was spent, and the gateway is back at 0 after the surge.
    let above: f64 = r["tier_seconds"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "0")
        .map(|(_, v)| v.as_f64().unwrap())
        .sum();
    assert!(above > 0.0, "{stdout}");
    assert_eq!(tier_after, 0, "the gateway did not relax\n{stdout}");
    // Nothing was lost or refused because of the overload.
    assert_eq!(
        r["errors_by_kind"].as_object().unwrap().len(),
        0,
        "{stdout}"
    );
}
