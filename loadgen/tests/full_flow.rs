//! The real `loadgen` drives a real `sut up` (spawned by the profile) on loopback, and the
//! run's audit must pass with envelopes opened and credited.

mod common;

use std::process::Command;

fn loadgen() -> Command {
    let mut c = Command::new(common::bin("loadgen"));
    c.env("SUT_BIN", common::bin("sut"));
    c
}

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 6s, envelopes: 400, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

#[test]
fn a_small_full_flow_passes_its_audit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let data = dir.path().join("data");
    let profile = format!(
        "
target:
  spawn: {{ gateways: 2, timeline: timeline.yaml, data: {}, base_port: 17500, countdown: 1s, settle: 1s, split_ttl: 2s }}
users: 300
stages:
  - {{ duration: 1s, target: 300 }}
  - {{ duration: 7s, target: 300 }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 2
  open_probability: 0.8
  split: {{ share_probability: 1, friends: 4, grab_delay: 200ms }}
thresholds:
  - 'errors: count == 0'
",
        data.display()
    );
    let path = dir.path().join("small.yaml");
    std::fs::write(&path, profile).unwrap();
    let summary = dir.path().join("summary.json");
    let out = loadgen()
        .arg("run")
        .arg(&path)
        .arg("--summary-json")
        .arg(&summary)
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed\n{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let audit = &report["audit"];
    let n = |k: &str| {
        audit[k]
            .as_u64()
            .unwrap_or_else(|| panic!("audit.{k} missing: {audit}"))
    };
    assert!(
        audit["violations"].as_array().unwrap().is_empty(),
        "{audit}"
    );
    assert!(n("opened") >= 1, "{audit}");
    assert_eq!(n("credited"), n("opened"));
    assert_eq!(n("issued"), n("opened") + n("unopened"));
    assert_eq!(n("lost"), 0);
    assert_eq!(n("duplicated"), 0);
    assert_eq!(
        report["ops"]["shake"]["count"].as_u64().unwrap(),
        report["shake_outcomes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
    // Every opened pot shared; friends grabbed, each grab credited once at its amount,
    // and what expired went back: grabbed + recycled + still open = the pots.
    let split = &audit["split"];
    let s = |k: &str| {
        split[k]
            .as_u64()
            .unwrap_or_else(|| panic!("split.{k}: {split}"))
    };
    assert_eq!(s("pots"), n("opened"));
    assert!(s("shared") > 0 && s("grabs") > 0, "{split}");
    assert_eq!(s("grab_credits"), s("grabs"));
    assert_eq!(s("grab_credited_cents"), s("grabbed_cents"));
    assert_eq!(
        s("grabbed_cents"),
        report["grabbed_cents"].as_u64().unwrap(),
        "every grab's reply reached its user here (no faults)"
    );
    assert!(s("recycled_pots") > 0, "{split}");
    assert_eq!(
        s("grabbed_cents") + s("recycled_cents") + s("open_cents"),
        s("pot_cents")
    );
    assert_eq!(report["ops"]["grab"]["errors"].as_u64(), Some(0));
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
}

#[test]
fn a_bad_profile_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "
target:
  addresses: { gateways: ['127.0.0.1:1'], auth_key_file: nowhere.key }
users: 10
stages: [{ duration: 1s, target: 10 }]
behaviour:
  shake_rate: 1
  open_probability: 0.5
thresholds:
  - 'shook: p99 < 5ms'
",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let out = loadgen().arg(cmd).arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unknown operation `shook`") && err.contains("line 10"),
            "{cmd}: {err}"
        );
    }
}
