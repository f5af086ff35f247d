//! `profiles/hostile.yaml` at small scale: the full flow with hostile users among the
//! honest ones (every attack of `behaviour.hostile`), against a spawned system. The
//! run must pass its thresholds on the honest users (no error at all, p99s), its audit
//! and its promises; each attack must have met its bound (trickled frames cut by their
//! deadline, oversized cookies refused with their own code and the connection kept, the
//! flood read no faster than one user's allowance) and no racer may pass the limits.

mod common;

use std::path::Path;

#[test]
fn hostile_users_cost_honest_users_nothing_and_meet_their_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut p: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(profiles.join("hostile.yaml")).unwrap())
            .unwrap();
    // Smaller: 600 users, a tenth of them hostile so every attack is made.
    p["users"] = 600.into();
    for stage in p["stages"].as_sequence_mut().unwrap() {
        if stage["target"].as_u64().unwrap() > 0 {
            stage["target"] = 600.into();
        }
    }
    p["behaviour"]["hostile"]["share"] = 0.1.into();
    // Liveness, not speed: a frozen gateway (seconds) fails; a busy CI machine does not.
    p["thresholds"] = serde_yaml::from_str(
        "['shake: p99 < 2s', 'open: p99 < 2s', 'grab: p99 < 2s', 'errors: rate < 0.1%']",
    )
    .unwrap();
    let spawn = &mut p["target"]["spawn"];
    spawn["timeline"] = profiles.join("timeline.yaml").display().to_string().into();
    spawn["data"] = dir.join("data").display().to_string().into();
    spawn["base_port"] = 18200.into();
    let (r, stdout) = common::run_loadgen(dir, &serde_yaml::to_string(&p).unwrap(), &[]);

    assert_eq!(r["passed"], true, "{stdout}");
    assert!(
        r["errors_by_kind"].as_object().unwrap().is_empty(),
        "honest users saw no error\n{stdout}"
    );
    assert_eq!(r["promises"]["users_short"], 0, "{stdout}");
    let h = &r["hostile"]["by_attack"];
    let n = |attack: &str, path: &[&str]| {
        let mut v = &h[attack];
        for k in path {
            v = &v[*k];
        }
        v.as_u64().unwrap_or(0)
    };
    for attack in [
        "flood",
        "slowloris_before_hello",
        "slowloris_after_hello",
        "silent",
        "non_reading",
        "oversized_cookie",
        "race",
    ] {
        assert!(n(attack, &["users"]) > 0, "no {attack} user\n{stdout}");
    }
    assert!(
        n("slowloris_before_hello", &["ended", "hello_timeout"]) > 0,
        "{stdout}"
    );
    assert!(
        n("slowloris_after_hello", &["ended", "frame_timeout"]) > 0,
        "{stdout}"
    );
    assert!(
        n("oversized_cookie", &["refused", "field_too_large"]) > 0,
        "{stdout}"
    );
    // A flood is read at one user's allowance (20 frames a second, a burst of 40):
    // its users get back far fewer replies than they sent.
    let (sent, back) = (
        n("flood", &["frames_sent"]),
        n("flood", &["frames_received"]),
    );
    assert!(
        back > 0 && back * 10 < sent,
        "flood: {sent} sent, {back} back\n{stdout}"
    );
    assert_eq!(n("race", &["over_limit_users"]), 0, "{stdout}");
    assert_eq!(r["limits"]["hostile_over_limit"], 0, "{stdout}");
    assert_eq!(r["limits"]["honest_over_limit"], 0, "{stdout}");
}
