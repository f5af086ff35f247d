//! Faults as part of a profile: parts of a spawned system under test killed (SIGKILL, a
//! crash), restarted (SIGTERM, a clean stop), hung (SIGSTOP, then SIGCONT) or crashed
//! from outside the supervisor, and the data directory's disk filled for a while, at
//! given or seeded random times while the load runs. This is the plan, with no I/O: the
//! run carries out each step at its time (most as a line on `sut up`'s control input),
//! and the audit then says whether anything was lost.
//!
//! ```yaml
//! faults:
//!   - { kill: gateway-0, at: 15s, down_for: 3s }     # crash, back 3 s later
//!   - { kill: gateway, between: { from: 10s, to: 40s } }   # a seeded random gateway and time
//!   - { restart: envelope, at: 30s }                 # clean stop, then start
//!   - { hang: envelope, at: 20s, down_for: 5s }      # SIGSTOP, SIGCONT 5 s later
//!   - { crash: gateway-1, at: 25s }                  # SIGKILL from outside: sut up restarts it
//!   - { disk_full: true, at: 12s, down_for: 4s }     # the data directory's disk full for 4 s
//!   - { channel_down: push, at: 5s, down_for: 30s }  # a live timeline channel cut at every gateway
//!   - { kill: config-0, at: 5s, down_for: 30s }      # a config service down
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault of the profile's `faults:` list.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Crash this part with SIGKILL (no drain, no clean close), then start it again after
    /// `down_for`: `payment`, `envelope`, `gateway-N`, or `gateway` for a seeded random one.
    #[serde(default)]
    pub kill: Option<String>,
    /// Stop this part cleanly (SIGTERM: a gateway drains its queue first), then start it
    /// again at once. Same names as `kill`.
    #[serde(default)]
    pub restart: Option<String>,
    /// Hang this part (SIGSTOP: it holds its connections and answers nothing) for
    /// `down_for`, then let it run again (SIGCONT). Same names as `kill`.
    #[serde(default)]
    pub hang: Option<String>,
    /// Crash this part from outside the supervisor (the load generator SIGKILLs its
    /// process): `sut up` must notice and start it again by itself. Same names.
    #[serde(default)]
    pub crash: Option<String>,
    /// Fill the disk of the run's data directory (every part's) for `down_for`, then
    /// free it. Needs `target.spawn.data_size`: the data directory is then a tmpfs of
    /// that size (mounting it needs root).
    #[serde(default)]
    pub disk_full: bool,
    /// Cut a live timeline channel (`push`, `pull` or `gossip`) at every gateway for
    /// `down_for`, then restore it. (A config service down is `kill: config-0`.)
    #[serde(default)]
    pub channel_down: Option<String>,
    /// When, counted from the run's start.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub at: Option<Duration>,
    /// Or a seeded random time inside this window.
    #[serde(default)]
    pub between: Option<Window>,
    /// How long a killed part stays down before it is started again (a hung part stays
    /// hung, a full disk stays full).
    #[serde(default = "default_down_for", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub down_for: Duration,
}

fn default_down_for() -> Duration {
    Duration::from_secs(2)
}

/// A span of the run, for a seeded random time.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub from: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub to: Duration,
}

/// What one step of the plan does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A control line for `sut up` (`kill gateway-0`, `pause envelope`...).
    Control(String),
    /// SIGKILL this part's process from outside `sut up`.
    Crash(String),
    /// Fill the data directory's disk.
    FillDisk,
    /// Free what [`Action::FillDisk`] took.
    FreeDisk,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Control(line) => f.write_str(line),
            Action::Crash(part) => write!(f, "crash {part} (SIGKILL from outside sut up)"),
            Action::FillDisk => f.write_str("fill the data directory's disk"),
            Action::FreeDisk => f.write_str("free the data directory's disk"),
        }
    }
}

/// One step, and when to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

impl Step {
    fn control(at: Duration, line: String) -> Step {
        Step {
            at,
            action: Action::Control(line),
        }
    }
}

/// The part a fault names, and what it does to it: (verb, part name).
fn action_of(f: &Fault) -> Option<(&'static str, &str)> {
    let named = [
        ("kill", &f.kill),
        ("restart", &f.restart),
        ("hang", &f.hang),
        ("crash", &f.crash),
        ("channel_down", &f.channel_down),
    ];
    let mut given = named
        .iter()
        .filter_map(|(verb, name)| name.as_deref().map(|n| (*verb, n)));
    match (given.next(), given.next(), f.disk_full) {
        (Some(a), None, false) => Some(a),
        (None, None, true) => Some(("disk_full", "")),
        _ => None,
    }
}

/// Checks what can be checked without knowing the fleet: one action, one time, a
/// known part name. `i` is the fault's place in the list, for messages.
pub fn check(i: usize, f: &Fault) -> Result<(), String> {
    let at = format!("faults[{i}]");
    let Some((verb, name)) = action_of(f) else {
        return Err(format!(
            "{at}: give exactly one of `kill: PART`, `restart: PART`, `hang: PART`, `crash: PART` (PART: payment, envelope, config-N, resources-N, gateway-N or gateway), `channel_down: push|pull|gossip` or `disk_full: true`"
        ));
    };
    match verb {
        "disk_full" => {}
        "channel_down" => {
            if sut_core::live_timeline::Channel::parse(name).is_none() {
                return Err(format!(
                    "{at}.channel_down: `{name}` is not a channel; use push, pull or gossip"
                ));
            }
        }
        _ => {
            part_name(name).map_err(|e| format!("{at}: {e}"))?;
        }
    }
    match (f.at, f.between) {
        (Some(_), None) => Ok(()),
        (None, Some(w)) if w.from < w.to => Ok(()),
        (None, Some(w)) => Err(format!(
            "{at}.between: `from` ({:?}) must come before `to` ({:?})",
            w.from, w.to
        )),
        _ => Err(format!(
            "{at}: give exactly one of `at: 15s` or `between: {{ from: 10s, to: 40s }}`"
        )),
    }
}

/// A part's name, or `None` for "a random gateway".
fn part_name(name: &str) -> Result<Option<PartName>, String> {
    match name {
        "payment" => Ok(Some(PartName::Payment)),
        "envelope" => Ok(Some(PartName::Envelope)),
        "gateway" => Ok(None),
        other if other.starts_with("resources-") => other
            .strip_prefix("resources-")
            .and_then(|n| n.parse::<u16>().ok())
            .map(|n| Some(PartName::Resources(n)))
            .ok_or_else(|| format!("`{other}` is not a part; resource servers are resources-0, resources-1, ...")),
        other if other.starts_with("config-") => other
            .strip_prefix("config-")
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|n| *n < 2)
            .map(|n| Some(PartName::Config(n)))
            .ok_or_else(|| format!("`{other}` is not a part; the config services are config-0 and config-1")),
        other => other
            .strip_prefix("gateway-")
            .and_then(|n| n.parse::<u16>().ok())
            .map(|n| Some(PartName::Gateway(n)))
            .ok_or_else(|| {
                format!("`{other}` is not a part; use payment, envelope, config-0, config-1, gateway-N (N from 0) or gateway (a random one)")
            }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartName {
    Payment,
    Envelope,
    Config(u16),
    Gateway(u16),
    Resources(u16),
}

impl PartName {
    fn name(self) -> String {
        match self {
            PartName::Payment => "payment".into(),
            PartName::Envelope => "envelope".into(),
            PartName::Config(n) => format!("config-{n}"),
            PartName::Gateway(n) => format!("gateway-{n}"),
            PartName::Resources(n) => format!("resources-{n}"),
        }
    }
}

/// The control steps for a system with `gateways` gateways, in time order. Random times
/// and gateways come from `seed`, so the same profile faults the same way every run.
pub fn plan(faults: &[Fault], gateways: u16, seed: u64) -> Result<Vec<Step>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa17);
    let mut steps = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        check(i, f)?;
        let at = match (f.at, f.between) {
            (Some(t), _) => t,
            (None, Some(w)) => {
                let span = (w.to - w.from).as_millis() as u64;
                w.from + Duration::from_millis(rng.random_range(0..=span))
            }
            (None, None) => unreachable!("check() requires a time"),
        };
        let Some((verb, name)) = action_of(f) else {
            unreachable!("check() requires one action")
        };
        if verb == "disk_full" {
            steps.push(Step {
                at,
                action: Action::FillDisk,
            });
            steps.push(Step {
                at: at + f.down_for,
                action: Action::FreeDisk,
            });
            continue;
        }
        if verb == "channel_down" {
            steps.push(Step::control(at, format!("channel {name} down")));
            steps.push(Step::control(at + f.down_for, format!("channel {name} up")));
            continue;
        }
        let part = match part_name(name)? {
            Some(PartName::Gateway(n)) if n >= gateways => {
                return Err(format!(
                "faults[{i}]: gateway-{n} does not exist; the system has gateway-0 to gateway-{}",
                gateways.saturating_sub(1)
            ))
            }
            Some(p) => p,
            None => PartName::Gateway(rng.random_range(0..gateways.max(1))),
        };
        let p = part.name();
        match verb {
            "kill" => {
                steps.push(Step::control(at, format!("kill {p}")));
                steps.push(Step::control(at + f.down_for, format!("start {p}")));
            }
            "hang" => {
                steps.push(Step::control(at, format!("pause {p}")));
                steps.push(Step::control(at + f.down_for, format!("resume {p}")));
            }
            "crash" => steps.push(Step {
                at,
                action: Action::Crash(p),
            }),
            _ => steps.push(Step::control(at, format!("restart {p}"))),
        }
    }
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

/// One change `sut up` made to a part during the run (from its `events.jsonl`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FaultEvent {
    /// Seconds since the run's start.
    #[serde(default)]
    pub at_s: f64,
    pub part: String,
    /// `killed`, `stopped`, `crashed`, `paused`, `resumed` or `started`; `disk_full` and
    /// `disk_freed` for the data directory (part `data`); `cut` and `restored` for a
    /// live timeline channel (part `channel-push`, ...).
    pub event: String,
    pub pid: Option<u32>,
    #[serde(default, skip_serializing)]
    unix_ms: i64,
}

/// The part changes after the run began (the first starts are the system coming up).
pub fn events(jsonl: &str, run_start_unix_ms: i64) -> Vec<FaultEvent> {
    jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<FaultEvent>(l).ok())
        .filter(|e| e.unix_ms >= run_start_unix_ms)
        .map(|mut e| {
            e.at_s = (e.unix_ms - run_start_unix_ms) as f64 / 1000.0;
            e
        })
        .collect()
}

/// Whether every part that went down came back: each `killed`, `stopped`, `crashed`
/// or `paused` is followed by a `started` (or `resumed`) of the same part, and a full
/// disk by its freeing.
pub fn all_came_back(events: &[FaultEvent]) -> bool {
    let mut down = std::collections::BTreeSet::new();
    for e in events {
        match e.event.as_str() {
            "started" | "resumed" | "disk_freed" | "restored" => {
                down.remove(&e.part);
            }
            _ => {
                down.insert(e.part.clone());
            }
        }
    }
    down.is_empty()
}

/// An event the load generator itself records (the disk's, which `sut up` cannot write
/// down while the disk is full).
pub fn own_event(part: &str, event: &str, at: Duration) -> FaultEvent {
    FaultEvent {
        at_s: at.as_secs_f64(),
        part: part.to_string(),
        event: event.to_string(),
        pid: None,
        unix_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(yaml: &str) -> Vec<Fault> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn kills_come_back_after_their_down_time_in_order() {
        let f = faults(
            "- { kill: gateway-1, at: 20s, down_for: 5s }\n- { restart: envelope, at: 10s }\n- { kill: payment, at: 22s }\n",
        );
        let steps = plan(&f, 2, 1).unwrap();
        let lines: Vec<(u64, String)> = steps
            .iter()
            .map(|s| (s.at.as_secs(), s.action.to_string()))
            .collect();
        let lines: Vec<(u64, &str)> = lines.iter().map(|(t, l)| (*t, l.as_str())).collect();
        assert_eq!(
            lines,
            [
                (10, "restart envelope"),
                (20, "kill gateway-1"),
                (22, "kill payment"),
                (24, "start payment"),
                (25, "start gateway-1"),
            ]
        );
    }

    #[test]
    fn hangs_crashes_and_full_disks_are_planned_with_their_ends() {
        let f = faults(
            "- { hang: envelope, at: 20s, down_for: 5s }\n- { crash: gateway-0, at: 12s }\n- { disk_full: true, at: 10s, down_for: 4s }\n",
        );
        let steps = plan(&f, 2, 1).unwrap();
        let want = [
            (10, Action::FillDisk),
            (12, Action::Crash("gateway-0".into())),
            (14, Action::FreeDisk),
            (20, Action::Control("pause envelope".into())),
            (25, Action::Control("resume envelope".into())),
        ];
        let got: Vec<(u64, Action)> = steps
            .into_iter()
            .map(|s| (s.at.as_secs(), s.action))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn paused_crashed_and_full_disks_must_come_back() {
        let e = |part: &str, event: &str| own_event(part, event, Duration::ZERO);
        assert!(all_came_back(&[
            e("envelope", "paused"),
            e("envelope", "resumed")
        ]));
        assert!(!all_came_back(&[e("envelope", "paused")]));
        assert!(all_came_back(&[
            e("gateway-0", "crashed"),
            e("gateway-0", "started")
        ]));
        assert!(!all_came_back(&[e("data", "disk_full")]));
        assert!(all_came_back(&[
            e("data", "disk_full"),
            e("data", "disk_freed")
        ]));
    }

    #[test]
    fn random_times_and_gateways_are_seeded_and_inside_their_window() {
        let f = faults("- { kill: gateway, between: { from: 10s, to: 40s } }\n");
        for seed in 0..50 {
            let a = plan(&f, 5, seed).unwrap();
            assert_eq!(a, plan(&f, 5, seed).unwrap(), "same seed, same plan");
            assert!(a[0].at >= Duration::from_secs(10) && a[0].at <= Duration::from_secs(40));
            let n: u16 = a[0]
                .action
                .to_string()
                .trim_start_matches("kill gateway-")
                .parse()
                .unwrap();
            assert!(n < 5);
            assert_eq!(a[1].action.to_string(), format!("start gateway-{n}"));
        }
    }

    #[test]
    fn events_after_the_start_are_kept_and_timed_from_it() {
        let log = concat!(
            "{\"unix_ms\":1000,\"part\":\"payment\",\"event\":\"started\",\"pid\":1}\n",
            "{\"unix_ms\":6000,\"part\":\"gateway-0\",\"event\":\"killed\",\"pid\":3}\n",
            "{\"unix_ms\":8500,\"part\":\"gateway-0\",\"event\":\"started\",\"pid\":4}\n",
            "{\"unix_ms\":9000,\"part\":\"payment\",\"event\":\"stopped\",\"pid\":1}\n",
        );
        let e = events(log, 5000);
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].at_s, e[0].event.as_str()), (1.0, "killed"));
        assert_eq!(e[1].at_s, 3.5);
        assert!(!all_came_back(&e), "payment stayed down");
        assert!(all_came_back(&e[..2]));
    }

    #[test]
    fn bad_faults_say_what_to_write() {
        for (yaml, hint) in [
            ("- { at: 1s }", "exactly one of `kill: PART`"),
            (
                "- { kill: payment, restart: payment, at: 1s }",
                "exactly one of `kill: PART`",
            ),
            (
                "- { hang: payment, disk_full: true, at: 1s }",
                "exactly one of `kill: PART`",
            ),
            ("- { hang: disk, at: 1s }", "`disk` is not a part"),
            ("- { kill: database, at: 1s }", "`database` is not a part"),
            ("- { kill: payment }", "exactly one of `at: 15s`"),
            (
                "- { kill: payment, between: { from: 9s, to: 3s } }",
                "must come before",
            ),
            ("- { kill: gateway-7, at: 1s }", "gateway-7 does not exist"),
        ] {
            let e = plan(&faults(yaml), 2, 1).unwrap_err();
            assert!(e.contains(hint), "{yaml}: {e}");
        }
    }
}
