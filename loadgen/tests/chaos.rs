//! `profiles/chaos.yaml` at small scale: the shipped profile's faults (every part
//! crashed and brought back, payment slow, flaky and down for a while, a clean restart
//! of the backend) against a spawned system, with fewer users. The run must pass: the
//! audit finds nothing lost, nothing duplicated, no honest user over the limit (some
//! users cheat: they drop cookies and hop gateways), every
//! promised open and grab credited, split pots that add up (grabbed + recycled + still
//! open = pot, each grab credited once), and every part that went down came back.

mod common;

use std::path::Path;

#[test]
fn chaos_profile_loses_nothing_and_every_part_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut p: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(profiles.join("chaos.yaml")).unwrap())
            .unwrap();
    // Smaller: 300 users; own ports and data; the timeline beside the shipped profile.
    p["users"] = 300.into();
    for stage in p["stages"].as_sequence_mut().unwrap() {
        if stage["target"].as_u64().unwrap() > 0 {
            stage["target"] = 300.into();
        }
    }
    let spawn = &mut p["target"]["spawn"];
    spawn["timeline"] = profiles.join("timeline.yaml").display().to_string().into();
    spawn["data"] = dir.join("data").display().to_string().into();
    spawn["base_port"] = 17900.into();
    let (r, stdout) = common::run_loadgen(dir, &serde_yaml::to_string(&p).unwrap(), &[]);

    let audit = &r["audit"];
    for (field, want) in [("lost", 0), ("duplicated", 0), ("in_flight", 0)] {
        assert_eq!(audit[field].as_u64(), Some(want), "audit {field}\n{stdout}");
    }
    assert!(audit["opened"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(audit["opened"], audit["credited"], "{stdout}");
    assert!(
        audit["credited_cents"].as_u64().unwrap() >= r["opened_cents"].as_u64().unwrap(),
        "every open a user was told succeeded is credited\n{stdout}"
    );
    // Split envelopes through the crashes: friends' grabs completed (retried across
    // a crashed gateway or backend), each credited once, and expired pots recycled.
    let split = &audit["split"];
    let n = |k: &str| {
        split[k]
            .as_u64()
            .unwrap_or_else(|| panic!("split.{k}: {split}"))
    };
    assert!(n("shared") > 0 && n("grabs") > 0, "{stdout}");
    assert_eq!(n("grab_credits"), n("grabs"), "{stdout}");
    assert_eq!(n("grab_credited_cents"), n("grabbed_cents"), "{stdout}");
    assert!(n("recycled_pots") > 0, "{stdout}");
    assert_eq!(
        n("grabbed_cents") + n("recycled_cents") + n("open_cents"),
        n("pot_cents"),
        "{stdout}"
    );
    assert!(
        n("grab_credited_cents") >= r["grabbed_cents"].as_u64().unwrap(),
        "every grab a user was told succeeded is credited\n{stdout}"
    );
    assert_eq!(
        r["limits"]["honest_over_limit"].as_u64(),
        Some(0),
        "an honest user got more than the limits allow\n{stdout}"
    );
    assert!(
        r["limits"]["adversarial_users"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    let faults = r["faults"].as_array().unwrap();
    for part in ["payment", "envelope", "gateway-0", "gateway-1"] {
        let events: Vec<&str> = faults
            .iter()
            .filter(|e| e["part"] == part)
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert!(
            events.contains(&"killed"),
            "{part} was never killed: {events:?}"
        );
        assert_eq!(
            events.last(),
            Some(&"started"),
            "{part} did not come back: {events:?}"
        );
    }
    assert_eq!(r["passed"], true, "{stdout}");
}
