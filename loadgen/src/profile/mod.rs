//! Load profiles: what to run, against what, and what counts as passing.
//!
//! Parsing is strict: unknown fields, negative or out-of-range values and thresholds on
//! unknown operations fail with the field and its line before anything starts.

use crate::threshold::Threshold;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

mod target;
pub use target::{AddressTarget, PaymentSpec, SpawnTarget, Target, TargetSpec};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A name for reports [default: the file name].
    #[serde(default)]
    pub name: Option<String>,
    /// What the run drives: `spawn:` a system for this run, or `addresses:` of a running one.
    #[schemars(with = "TargetSpec")]
    pub target: Target,
    /// Simulated users (each one long connection).
    pub users: u64,
    /// Connected users over time: each stage moves linearly to its target.
    pub stages: Vec<Stage>,
    /// What every simulated user does while connected.
    pub behaviour: Behaviour,
    /// Pass/fail rules, `SUBJECT: STAT CMP VALUE`: `shake: p99 < 100ms` (operations
    /// connect, hello, shake, open, heartbeat, share, grab; stats pNN, pNN.N, max, mean),
    /// `errors: rate < 0.1%`, `errors: count == 0`, `memory: growth < 64MiB`,
    /// `shake: rate > 1000/s`, `connect: count >= 3000`; or `{ threshold: RULE,
    /// abort_on_fail: true, grace: 10s }` to stop the run the first second it fails.
    #[serde(default)]
    #[schemars(with = "Vec<crate::threshold::ThresholdSpec>")]
    pub thresholds: Vec<Threshold>,
    /// Parts of the spawned system to crash or restart during the run (see
    /// `loadgen/src/faults.rs`): `- { kill: gateway-0, at: 15s, down_for: 3s }`.
    #[serde(default)]
    pub faults: Vec<crate::faults::Fault>,
    /// Live programme changes, as an operator makes them during the show (see
    /// `loadgen/src/live_timeline.rs`): `- { at: 20s, change: "move 2 -10s" }`.
    #[serde(default)]
    pub timeline_changes: Vec<crate::live_timeline::TimelineChange>,
    /// Resource pre-push (see `loadgen/src/pre_push/profile.rs`): every user's phone
    /// downloads the sponsors' images ahead of the show from the system's resource
    /// servers; the run reports coverage, bytes, tampered copies and greetings' hits.
    #[serde(default)]
    pub pre_push: Option<crate::pre_push::PrePushSpec>,
    /// Weak networks for shares of users (see `loadgen/src/network.rs`): loss, added
    /// delay and jitter, a bandwidth cap, reordering and a network change mid-session,
    /// e.g. `- { name: weak, share: 0.5, loss_percent: 2, delay: 100ms }`. Applied to
    /// QUIC users' datagrams in the load generator; for TCP users only the loss, through
    /// nftables, when the run can (the summary says what was applied), and a network
    /// change makes a TCP user reconnect.
    #[serde(default)]
    pub network: Vec<crate::network::Condition>,
    /// Seed for every random choice of the run (phases, opens): same seed, same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// For a distributed run (`loadgen coordinator`): how many agents must finish for
    /// the run to count, e.g. `{ min: 3 }` [default: every agent].
    #[serde(default)]
    pub agents: Option<AgentsSpec>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsSpec {
    /// Agents that must finish; losing more fails the run (and stops it at once).
    pub min: u64,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// How long the stage lasts, e.g. `30s`, `2m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub duration: Duration,
    /// Connected users at the end of the stage.
    pub target: u64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Shakes a user *wants* per second (0: none). The client coalesces them into at
    /// most one request per interval its gateway's throttle tier asks for, as a real
    /// client does; the summary counts both.
    #[serde(deserialize_with = "shake_rate")]
    pub shake_rate: f64,
    /// Chance that a user opens an envelope it won.
    #[serde(deserialize_with = "probability")]
    pub open_probability: f64,
    /// A heartbeat after this long without a request; a connection's first beat comes
    /// at a random point of the interval.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat_interval: Duration,
    /// A request without a reply for this long counts as an error and drops the connection.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// Share of users (0..1, seeded) who cheat: they drop their cookie (even ids) or
    /// replay the first one they got (odd ids), hop to another gateway after each
    /// envelope, and grab their own shares and friends' shares twice. The summary
    /// reports how many of them got past the limits; honest users must never.
    #[serde(default, deserialize_with = "adversarial")]
    pub adversarial: f64,
    /// Split envelopes: whether openers share their pots, and how friends grab.
    #[serde(default)]
    pub split: SplitBehaviour,
    /// Share of users (seeded) that attack the gateways instead of playing, and the
    /// attacks they make (see `loadgen::hostile`). Their figures are kept apart from
    /// the honest users', whose latency and errors the thresholds judge.
    #[serde(default)]
    pub hostile: crate::hostile::HostileBehaviour,
    /// What users connect over: `tcp` (the default), `quic`, or shares of users such as
    /// `{ tcp: 0.7, quic: 0.3 }` (seeded). QUIC users reach each gateway on the UDP
    /// port of its TCP port's number and trust the gateways' certificate
    /// (`quic-cert.pem` in the system's data directory; `target.addresses.quic_cert`
    /// for a running system).
    #[serde(default)]
    pub transport: crate::transport::TransportMix,
}

/// What users do with split envelopes. Each user has a seeded friend list: `friends`
/// users of its friend circle (the system's relation chain, `sut_core::friends`) that the
/// same load generator worker simulates, so the chat message carrying a share reaches
/// them in-process; their grabs go over their own connections, to any gateway.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBehaviour {
    /// Chance that a user shares the pot of an envelope it opened (0: splits unused).
    #[serde(default, deserialize_with = "share_probability")]
    pub share_probability: f64,
    /// Friends each share names (1 to 32); a pot has 2 to 5 parts, so with more friends
    /// than parts the slowest are told none are left.
    #[serde(default = "default_friends", deserialize_with = "friend_count")]
    pub friends: u8,
    /// A friend's reaction time: each grabs at a seeded time within twice this after
    /// the share. Longer than the pot's lifetime (`spawn.split_ttl`) means late grabs.
    #[serde(default = "default_grab_delay", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub grab_delay: Duration,
}

impl Default for SplitBehaviour {
    fn default() -> Self {
        SplitBehaviour {
            share_probability: 0.0,
            friends: default_friends(),
            grab_delay: default_grab_delay(),
        }
    }
}

fn default_friends() -> u8 {
    3
}

fn default_grab_delay() -> Duration {
    Duration::from_secs(2)
}

fn share_probability<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "share_probability: a probability must lie in [0, 1], got {p}"
        )));
    }
    Ok(p)
}

fn friend_count<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = u64::deserialize(d)?;
    if !(1..=sut_wire::protocol::MAX_SHARE_FRIENDS as u64).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "friends: a share names 1 to {} friends, got {n}",
            sut_wire::protocol::MAX_SHARE_FRIENDS
        )));
    }
    Ok(n as u8)
}

/// Whether `user` is one of the profile's adversarial users (a seeded draw, so the
/// load generator and its report agree on who they are).
pub fn is_adversarial(user: u64, seed: u64, share: f64) -> bool {
    share > 0.0
        && (sut_core::spread::spread(user ^ seed.rotate_left(17)) % 1_000_000)
            < (share * 1_000_000.0) as u64
}

fn adversarial<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "adversarial: the share of cheating users lies in [0, 1], got {p}"
        )));
    }
    Ok(p)
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(20)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn probability<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "open_probability: a probability must lie in [0, 1], got {p}"
        )));
    }
    Ok(p)
}

fn shake_rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !(r.is_finite() && r >= 0.0) {
        return Err(serde::de::Error::custom(format!(
            "shake_rate: shakes a user wants per second, 0 or more (e.g. 0.5, or 5 for a frantic shaker), got {r}"
        )));
    }
    Ok(r)
}

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("profile {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The YAML library's words for a wrong value, in the profile's: "a whole number"
/// for `u64`, "add a unit" for a duration written without one.
fn in_profile_words(message: &str) -> String {
    let mut m = message.to_string();
    for (rust, ours) in [
        ("expected u64", "expected a whole number of at least 0"),
        ("expected u32", "expected a whole number of at least 0"),
        ("expected u16", "expected a whole number of at least 0"),
        ("expected u8", "expected a whole number of at least 0"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, ours);
    }
    // A duration without a unit: `invalid value: string "48", expected a duration`, or
    // a bare number (`invalid type: integer `48``).
    if m.contains("expected a duration") {
        let value = m
            .split(['"', '`'])
            .nth(1)
            .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
        if let Some(v) = value {
            m = m.replace(
                "expected a duration",
                &format!("expected a duration: add a unit, e.g. {v}s or {v}ms"),
            );
        }
    }
    m
}

/// A bad threshold's error at its own list item's line and column: the YAML parser
/// reports where the list begins.
fn at_item_line(text: &str, message: String) -> String {
    let Some(source) = message
        .strip_prefix("thresholds: threshold `")
        .and_then(|m| m.split('`').next())
    else {
        return message;
    };
    let unquote = |v: &str| v.trim().trim_matches(['"', '\'']).to_string();
    let found = text.lines().enumerate().find_map(|(i, line)| {
        let item = line.trim_start().strip_prefix("- ")?;
        let value = match item.split_once("threshold:") {
            Some((_, rest)) => unquote(rest.split(',').next().unwrap_or(rest)),
            None => unquote(item),
        };
        (value == source).then(|| (i + 1, line.len() - line.trim_start().len() + 1))
    });
    let Some((line, column)) = found else {
        return message;
    };
    let place = format!("at line {line} column {column}");
    match message.rfind(" at line ") {
        Some(at) => format!("{} {place}", &message[..at]),
        None => format!("{message} {place}"),
    }
}

impl Profile {
    /// Reads, parses and checks a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut profile = Self::parse(&text).map_err(|message| ProfileError::Invalid {
            path: path.display().to_string(),
            message,
        })?;
        if profile.name.is_none() {
            profile.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        if let Target::Spawn(spawn) = &mut profile.target {
            let base = path.parent().unwrap_or(Path::new("."));
            spawn.timeline = base.join(&spawn.timeline);
        }
        Ok(profile)
    }

    /// Parses and checks profile YAML; the error names the field and, where the YAML
    /// parser knows it, the line and column.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let profile: Profile = serde_yaml::from_str(text)
            .map_err(|e| at_item_line(text, in_profile_words(&e.to_string())))?;
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), String> {
        if self.users == 0 {
            return Err("users: must be at least 1".into());
        }
        if self.stages.is_empty() {
            return Err(
                "stages: list at least one stage, e.g. `- { duration: 30s, target: 100 }`".into(),
            );
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.target > self.users {
                return Err(format!(
                    "stages[{i}].target: {} is more than users ({}); raise users or lower the target",
                    s.target, self.users
                ));
            }
        }
        if self.duration().is_zero() {
            return Err("stages: the stages last zero seconds in all".into());
        }
        match &self.target {
            Target::Spawn(s) => {
                if s.gateways == Some(0) {
                    return Err("target.spawn.gateways: must be at least 1".into());
                }
                if !(0.0..=1.0).contains(&s.payment.failure_rate) {
                    return Err(format!(
                        "target.spawn.payment.failure_rate: a share between 0 and 1, got {}",
                        s.payment.failure_rate
                    ));
                }
                for o in &s.payment.outages {
                    o.parse::<sut_core::payment_faults::Outage>()
                        .map_err(|e| format!("target.spawn.payment.outages: {e}"))?;
                }
            }
            Target::Addresses(a) => {
                if a.gateways.is_empty() {
                    return Err(
                        "target.addresses.gateways: list at least one gateway address".into(),
                    );
                }
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            crate::faults::check(i, f)?;
            let sized = matches!(&self.target, Target::Spawn(s) if s.data_size.is_some());
            if f.disk_full && !sized {
                return Err(format!(
                    "faults[{i}]: disk_full needs a size-limited data directory: add `data_size: 64MiB` to target.spawn"
                ));
            }
        }
        if let Target::Spawn(s) = &self.target {
            s.data_bytes()?;
        }
        for (i, c) in self.timeline_changes.iter().enumerate() {
            crate::live_timeline::check(i, c)?;
        }
        if let Some(p) = &self.pre_push {
            p.check()?;
            let changes = !p.updates.is_empty() || !p.faults.is_empty();
            if changes && matches!(self.target, Target::Addresses(_)) {
                return Err("pre_push: updates and faults need a system the run started; use `target: spawn:` (or `sut resources update` by hand)".into());
            }
        }
        let pre_push_rule = self
            .thresholds
            .iter()
            .find(|t| matches!(t.subject, crate::threshold::Subject::PrePush(_)));
        if let (Some(t), None) = (pre_push_rule, &self.pre_push) {
            return Err(format!(
                "threshold `{}`: needs a `pre_push:` section (phones that pre-download)",
                t.source
            ));
        }
        if !self.timeline_changes.is_empty() && matches!(self.target, Target::Addresses(_)) {
            return Err("timeline_changes: a run can only change the timeline of a system it started; use `target: spawn:` (or `sut timeline` by hand)".into());
        }
        if !self.faults.is_empty() {
            match &self.target {
                Target::Spawn(s) => {
                    if let Some(n) = s.gateways {
                        crate::faults::plan(&self.faults, n, self.seed)?;
                    }
                }
                Target::Addresses(_) => {
                    return Err(
                        "faults: a run can only fault a system it started; use `target: spawn:`"
                            .into(),
                    )
                }
            }
        }
        if self.agents.as_ref().is_some_and(|a| a.min == 0) {
            return Err("agents.min: at least 1 agent must finish for a run to count".into());
        }
        if self.behaviour.request_timeout.is_zero() {
            return Err("behaviour.request_timeout: must be longer than zero".into());
        }
        if self.behaviour.heartbeat_interval.is_zero() {
            return Err("behaviour.heartbeat_interval: must be longer than zero".into());
        }
        Ok(())
    }

    /// The JSON Schema of the profile format, generated from these types (editors use it
    /// for completion and checks; `profiles/profile.schema.json` is this, committed).
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Profile);
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The whole run: the sum of the stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    pub fn peak_users(&self) -> u64 {
        self.stages.iter().map(|s| s.target).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
