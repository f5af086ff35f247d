//! The profile's `pre_push:` section: the resource servers a spawned system runs, what
//! each simulated phone does with them, and the operator's updates and the servers'
//! faults during the run.
//!
//! ```yaml
//! pre_push:
//!   servers: 2                 # resource servers `sut up` runs (spawned targets)
//!   items: 65                  # the first manifest's items (the seed's 65)
//!   min_size: 8KiB             # item sizes, spread from here...
//!   max_size: 32KiB            # ...to here
//!   server_bandwidth: 20MiB    # each server's budget, bytes per second
//!   user_bandwidth: 32KiB      # each phone's cap, bytes per second
//!   updates:
//!     - { at: 20s, items: [100, 3, 7] }           # new bytes, the next manifest
//!   faults:
//!     - { corrupt: resources-1, share: 30%, at: 5s, for: 10s }
//!     - { slow: resources-0, bandwidth: 256KiB, at: 5s, for: 10s }
//! ```
//!
//! Killing a server is a fault of the main list: `- { kill: resources-1, at: 8s }`.

use crate::faults::{Action, Step};
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrePushSpec {
    /// Resource servers the spawned system runs.
    #[serde(default = "two")]
    pub servers: u16,
    /// Items the first manifest lists (the timeline's greeting images first).
    #[serde(default = "sixty_five")]
    pub items: u32,
    #[serde(default = "min_size")]
    pub min_size: String,
    #[serde(default = "max_size")]
    pub max_size: String,
    /// Each resource server's bandwidth budget, bytes per second.
    #[serde(default = "server_bandwidth")]
    pub server_bandwidth: String,
    /// Each phone's download cap, bytes per second.
    #[serde(default = "user_bandwidth")]
    pub user_bandwidth: String,
    /// Downloads a worker runs at once (each holds one HTTP connection): the rest of
    /// its users wait their turn, as phones on one cell would.
    #[serde(default = "concurrent")]
    pub concurrent: u32,
    /// How often a phone that holds everything asks whether the manifest changed
    /// (`If-None-Match`: a 304 costs nothing).
    #[serde(default = "manifest_poll", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub manifest_poll: Duration,
    /// Whether phones check every item's digest (the default). `false` makes phones
    /// keep tampered copies: only to prove that `resources: tampered_shown == 0`
    /// catches a client that shows them.
    #[serde(default = "yes")]
    pub verify: bool,
    /// The operator's manifest updates during the run.
    #[serde(default)]
    pub updates: Vec<Update>,
    /// Resource server faults during the run.
    #[serde(default)]
    pub faults: Vec<ServerFault>,
    /// A running system's resource servers (host:port); a spawned system's are known.
    /// When absent, read from the run manifest beside the target's auth key file.
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub at: Duration,
    /// Item ids given new bytes.
    pub items: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerFault {
    /// Corrupt a share of this server's item responses (one byte flipped).
    #[serde(default)]
    pub corrupt: Option<String>,
    /// The share corrupted, e.g. `30%`.
    #[serde(default)]
    pub share: Option<String>,
    /// Slow this server down to `bandwidth` bytes per second.
    #[serde(default)]
    pub slow: Option<String>,
    #[serde(default)]
    pub bandwidth: Option<String>,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub at: Duration,
    /// How long the fault lasts.
    #[serde(rename = "for", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lasts: Duration,
}

fn two() -> u16 {
    2
}
fn sixty_five() -> u32 {
    65
}
fn min_size() -> String {
    "8KiB".into()
}
fn max_size() -> String {
    "64KiB".into()
}
fn server_bandwidth() -> String {
    "20MiB".into()
}
fn user_bandwidth() -> String {
    "64KiB".into()
}
fn concurrent() -> u32 {
    256
}
fn manifest_poll() -> Duration {
    Duration::from_secs(5)
}
fn yes() -> bool {
    true
}

/// A size in bytes (`64KiB`); `field` names it in the message.
pub fn bytes(field: &str, s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("pre_push.{field}: `{s}` is not a size; write e.g. 64KiB or 20MiB"))
}

impl PrePushSpec {
    /// Checks every field, naming it.
    pub fn check(&self) -> Result<(), String> {
        let min = bytes("min_size", &self.min_size)?;
        let max = bytes("max_size", &self.max_size)?;
        if min == 0 || max < min {
            return Err(format!(
                "pre_push: sizes must satisfy 0 < min_size <= max_size (got {} and {})",
                self.min_size, self.max_size
            ));
        }
        if !(1..=1024).contains(&self.items) {
            return Err(format!("pre_push.items: 1 to 1024, got {}", self.items));
        }
        for (field, v) in [
            ("server_bandwidth", &self.server_bandwidth),
            ("user_bandwidth", &self.user_bandwidth),
        ] {
            if bytes(field, v)? == 0 {
                return Err(format!("pre_push.{field}: must be above 0"));
            }
        }
        if self.concurrent == 0 {
            return Err("pre_push.concurrent: at least 1".into());
        }
        for (i, u) in self.updates.iter().enumerate() {
            if u.items.is_empty() {
                return Err(format!(
                    "pre_push.updates[{i}].items: name at least one item id"
                ));
            }
        }
        for i in 0..self.faults.len() {
            self.fault_lines(i)?;
        }
        Ok(())
    }

    /// The control lines fault `i` makes: (on, off).
    fn fault_lines(&self, i: usize) -> Result<(String, String), String> {
        let f = &self.faults[i];
        let at = format!("pre_push.faults[{i}]");
        let on = match (&f.corrupt, &f.share, &f.slow, &f.bandwidth) {
            (Some(name), Some(share), None, None) => {
                let ok = share
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .is_some_and(|p| (0.0..=100.0).contains(&p));
                if !ok {
                    return Err(format!("{at}.share: `{share}` is not a share; write e.g. 30%"));
                }
                format!("resources corrupt {name} {share}")
            }
            (None, None, Some(name), Some(rate)) => {
                bytes(&format!("faults[{i}].bandwidth"), rate)?;
                format!("resources slow {name} {rate}")
            }
            _ => {
                return Err(format!(
                    "{at}: give `corrupt: NAME` with `share: 30%`, or `slow: NAME` with `bandwidth: 256KiB`"
                ))
            }
        };
        let name = f
            .corrupt
            .as_ref()
            .or(f.slow.as_ref())
            .cloned()
            .unwrap_or_default();
        let known = name
            .strip_prefix("resources-")
            .and_then(|n| n.parse::<u16>().ok())
            .is_some_and(|n| n < self.servers);
        if !known {
            return Err(format!(
                "{at}: `{name}` is not a resource server; this system runs resources-0 to resources-{}",
                self.servers.saturating_sub(1)
            ));
        }
        Ok((on, format!("resources ok {name}")))
    }

    /// The control steps of the updates and faults.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = self
            .updates
            .iter()
            .map(|u| {
                let ids: Vec<String> = u.items.iter().map(|i| i.to_string()).collect();
                Step {
                    at: u.at,
                    action: Action::Control(format!("resources update {}", ids.join(" "))),
                }
            })
            .collect();
        for (i, f) in self.faults.iter().enumerate() {
            if let Ok((on, off)) = self.fault_lines(i) {
                steps.push(Step {
                    at: f.at,
                    action: Action::Control(on),
                });
                steps.push(Step {
                    at: f.at + f.lasts,
                    action: Action::Control(off),
                });
            }
        }
        steps
    }

    /// `sut up`'s flags for the servers and the first manifest.
    pub fn sut_flags(&self) -> Vec<String> {
        [
            ("--resource-servers", self.servers.to_string()),
            ("--resource-items", self.items.to_string()),
            ("--resource-min-size", plain(&self.min_size)),
            ("--resource-max-size", plain(&self.max_size)),
            ("--resource-bandwidth", plain(&self.server_bandwidth)),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_string(), v])
        .collect()
    }
}

/// A size as plain bytes, which every command line reads.
fn plain(s: &str) -> String {
    bytes("", s)
        .map(|b| b.to_string())
        .unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PrePushSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn faults_and_updates_become_control_lines() {
        let s = spec("updates: [{ at: 20s, items: [3, 7] }]\nfaults:\n  - { corrupt: resources-1, share: 30%, at: 5s, for: 10s }\n  - { slow: resources-0, bandwidth: 256KiB, at: 6s, for: 1s }\n");
        s.check().unwrap();
        let lines: Vec<(u64, String)> = s
            .steps()
            .into_iter()
            .map(|st| (st.at.as_secs(), st.action.to_string()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (20, "resources update 3 7".to_string()),
                (5, "resources corrupt resources-1 30%".to_string()),
                (15, "resources ok resources-1".to_string()),
                (6, "resources slow resources-0 256KiB".to_string()),
                (7, "resources ok resources-0".to_string()),
            ]
        );
        assert!(s.sut_flags().contains(&"65536".to_string()));
    }

    #[test]
    fn bad_sections_name_the_field_and_the_fix() {
        let e = spec("min_size: 9KiB\nmax_size: 1KiB\n")
            .check()
            .unwrap_err();
        assert!(e.contains("min_size <= max_size"), "{e}");
        let e = spec("user_bandwidth: fast\n").check().unwrap_err();
        assert!(e.contains("pre_push.user_bandwidth: `fast`"), "{e}");
        let e = spec("faults: [{ corrupt: resources-5, share: 10%, at: 1s, for: 1s }]\n")
            .check()
            .unwrap_err();
        assert!(e.contains("resources-0 to resources-1"), "{e}");
        let e = spec("faults: [{ corrupt: resources-0, share: lots, at: 1s, for: 1s }]\n")
            .check()
            .unwrap_err();
        assert!(e.contains("faults[0].share"), "{e}");
        let e = spec("updates: [{ at: 1s, items: [] }]\n")
            .check()
            .unwrap_err();
        assert!(e.contains("updates[0].items"), "{e}");
    }
}
