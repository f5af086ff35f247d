//! `profiles/storage-chaos.yaml` at small scale: the data directory's disk fills up and
//! is freed, the envelope backend hangs and resumes, a gateway and payment are crashed
//! from outside `sut up`, all during a full flow. The run must pass: nothing lost,
//! nothing duplicated, every promise kept user by user, every part back (restarted by
//! the supervisor on its own after the outside crashes), and the full disk must have
//! been met by failed writes that the parts recovered from (their log says so).
//! Needs root, as the profile does (the data directory is a size-limited tmpfs).

mod common;

use std::path::Path;

/// Unmounts the run's data directory however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn storage_chaos_profile_loses_nothing_and_recovers_from_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut p: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(profiles.join("storage-chaos.yaml")).unwrap(),
    )
    .unwrap();
    p["users"] = 400.into();
    for stage in p["stages"].as_sequence_mut().unwrap() {
        if stage["target"].as_u64().unwrap() > 0 {
            stage["target"] = 400.into();
        }
    }
    // A longer full disk than the shipped profile's: with fewer users, fewer writes
    // arrive while it lasts.
    p["faults"][0]["down_for"] = "7s".into();
    let data = dir.join("data");
    let _unmount = Mounted(data.clone());
    let spawn = &mut p["target"]["spawn"];
    spawn["timeline"] = profiles.join("timeline.yaml").display().to_string().into();
    spawn["data"] = data.display().to_string().into();
    spawn["base_port"] = 18500.into();
    let (r, stdout) = common::run_loadgen(dir, &serde_yaml::to_string(&p).unwrap(), &[]);

    assert_eq!(r["passed"], true, "{stdout}");
    let audit = &r["audit"];
    for (field, want) in [("lost", 0), ("duplicated", 0), ("in_flight", 0)] {
        assert_eq!(audit[field].as_u64(), Some(want), "audit {field}\n{stdout}");
    }
    assert_eq!(r["promises"]["users_short"], 0, "{stdout}");
    let events: Vec<(String, String)> = r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["part"].as_str().unwrap().into(),
                e["event"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (part, event) in [
        ("data", "disk_full"),
        ("data", "disk_freed"),
        ("envelope", "paused"),
        ("envelope", "resumed"),
        ("gateway-1", "crashed"),
        ("payment", "crashed"),
    ] {
        assert!(
            events.contains(&(part.to_string(), event.to_string())),
            "no {event} of {part} in {events:?}"
        );
    }
    // Each crashed part was started again by the supervisor.
    for part in ["gateway-1", "payment"] {
        let crashed = events
            .iter()
            .position(|e| e.0 == part && e.1 == "crashed")
            .unwrap();
        assert!(
            events[crashed..]
                .iter()
                .any(|e| e.0 == part && e.1 == "started"),
            "{part} never came back: {events:?}"
        );
    }
    let log = std::fs::read_to_string(data.join("sut.log")).unwrap();
    assert!(
        log.contains("write failed (no_space)") && log.contains("reopened after a failed write"),
        "the full disk was never met and recovered from:\n{log}"
    );
    // Round 2 began after the disk was freed: issuance resumed.
    let round2 = &audit["rounds"][1];
    assert!(round2["issued"].as_u64().unwrap() > 0, "{stdout}");
}
