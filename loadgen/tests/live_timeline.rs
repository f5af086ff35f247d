//! A live show from a profile: while users shake, the operator moves round 2 ten
//! seconds earlier and raises its budget, with the push channel cut and a config
//! service down. Every gateway must take both versions (by pull or gossip), round 2
//! must issue in its new window only and past its first budget, and the audit must
//! pass judging each envelope by the version it was decided on.

mod common;

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 5s, envelopes: 300, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
  - { id: 2, start: 20s, duration: 6s, envelopes: 300, rate: 100, amount_cents: [1, 500], sponsors: [5, 6, 7, 8] }
";

#[test]
fn a_moved_round_issues_in_its_new_window_with_its_raised_budget() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let data = dir.path().join("data");
    let target = format!(
        "target:\n  spawn: {{ gateways: 3, timeline: timeline.yaml, data: {}, base_port: 23000, countdown: 1s, settle: 1s }}",
        data.display()
    );
    let extra = "
timeline_changes:
  - { at: 3s, change: 'move 2 -10s' }
  - { at: 5s, change: 'budget 2 500' }
faults:
  - { channel_down: push, at: 500ms, down_for: 12s }
  - { kill: config-1, at: 500ms, down_for: 12s }
thresholds:
  - 'errors: count == 0'
";
    let profile = common::flow_profile(&target, 600, 16, extra);
    let (report, stdout) = common::run_loadgen(dir.path(), &profile, &[]);
    let changes = report["timeline"].as_array().expect("timeline figures");
    assert_eq!(changes.len(), 2, "{stdout}");
    for c in changes {
        assert_eq!(c["applied"], 3, "every gateway took it: {c}\n{stdout}");
        let first = c["first_channel"].as_object().unwrap();
        assert!(!first.contains_key("push"), "push was cut: {c}");
    }
    assert!(stdout.contains("live timeline"), "{stdout}");
    let audit = &report["audit"];
    assert!(
        audit["violations"].as_array().unwrap().is_empty(),
        "{audit}"
    );
    let round2 = audit["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["round"] == 2)
        .expect("round 2's figures");
    assert_eq!(
        round2["window_ms"],
        serde_json::json!([10_000, 16_000]),
        "{round2}"
    );
    assert_eq!(round2["outside_window"], 0, "{round2}");
    let first = round2["first_issue_ms"].as_i64().unwrap();
    let last = round2["last_issue_ms"].as_i64().unwrap();
    assert!(
        (10_000..16_000).contains(&first) && last < 16_000,
        "{round2}"
    );
    assert!(
        round2["issued"].as_u64().unwrap() > 300,
        "the raised budget issued past the first one: {round2}"
    );
    assert_eq!(round2["budget"], 500);
    // The clients saw the versions move on.
    let versions = report["shake_versions"].as_object().unwrap();
    assert!(versions.contains_key("3"), "{versions:?}");
}
