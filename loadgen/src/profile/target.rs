//! What a profile's run drives: a system it starts (`spawn:`) or one already running
//! (`addresses:`), and the spawned system's settings.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// What the run drives: exactly one of `spawn` or `addresses`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Start `sut up` for this run and stop it at the end.
    #[serde(default)]
    pub spawn: Option<SpawnTarget>,
    /// Drive a system that is already running.
    #[serde(default)]
    pub addresses: Option<AddressTarget>,
}

#[derive(Debug, Clone)]
pub enum Target {
    Spawn(Box<SpawnTarget>),
    Addresses(AddressTarget),
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = TargetSpec::deserialize(d)?;
        match (spec.spawn, spec.addresses) {
            (Some(s), None) => Ok(Target::Spawn(Box::new(s))),
            (None, Some(a)) => Ok(Target::Addresses(a)),
            _ => Err(serde::de::Error::custom(
                "give exactly one of `spawn:` (start the system under test) or `addresses:` (drive a running one)",
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnTarget {
    /// Gateway processes [default: as many as the peak of connected users needs, each
    /// filled to 90 % of what its open-file limit allows].
    #[serde(default)]
    pub gateways: Option<u16>,
    /// Timeline file, relative to the profile.
    pub timeline: PathBuf,
    /// Data directory, relative to the working directory; wiped before the run.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// First port: payment here, the envelope backend +1, gateway i +10+i, each
    /// part's /metrics 1000 above its port.
    #[serde(default = "default_base_port")]
    pub base_port: u16,
    /// Time from start-up to the show's start.
    #[serde(default = "default_countdown", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub countdown: Duration,
    /// How long after the last stage to wait for the system to drain before stopping it.
    #[serde(default = "default_countdown", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub settle: Duration,
    /// Whether gateways raise their throttle tier under load (false: always tier 0, to
    /// see what the tiers save).
    #[serde(default = "yes")]
    pub tiers: bool,
    /// Whether gateways reserve each win at the user's owner before issuing it (strict
    /// per-user limits across gateways; false: the three layers alone, to measure what
    /// strictness costs).
    #[serde(default = "yes")]
    pub strict_limits: bool,
    /// CPU each shake decision burns on top of its real work (`sut up --shake-cost`):
    /// gives the gateways a small, known capacity so that this machine can offer them
    /// several times what they can take.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shake_cost: Duration,
    /// How often gateways sync the shared limit view (the third limit layer) with the
    /// envelope backend.
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sync_interval: Duration,
    /// Make payment (the transfer system) slow, flaky or down, to watch the backend's
    /// outbox hold and retry while users are never told anything failed.
    #[serde(default)]
    pub payment: PaymentSpec,
    /// How long a split pot may be shared and grabbed after its open; then the rest
    /// goes back to the sponsor (`sut up --split-ttl`; the seed: 24 hours).
    #[serde(default = "default_split_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub split_ttl: Duration,
    /// The gateways' connection deadlines (`sut up --hello-timeout`, `--frame-timeout`,
    /// `--write-timeout`): how long a connection may go without a Hello, with a frame
    /// begun and unfinished, and without reading its replies.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub hello_timeout: Duration,
    #[serde(default = "default_deadline", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub frame_timeout: Duration,
    #[serde(default = "default_deadline", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write_timeout: Duration,
    /// Make the data directory a tmpfs of this size (`64MiB`; mounting needs root), so
    /// that a `disk_full` fault can fill it. It stays mounted after the run, like any
    /// data directory, for inspection; the next run unmounts it first.
    #[serde(default)]
    pub data_size: Option<String>,
}

impl SpawnTarget {
    /// `data_size` in bytes, if given.
    pub fn data_bytes(&self) -> Result<Option<u64>, String> {
        self.data_size
            .as_deref()
            .map(|s| {
                s.parse::<bytesize::ByteSize>()
                    .map(|b| b.as_u64())
                    .map_err(|e| {
                        format!("target.spawn.data_size: `{s}` is not a size like 64MiB: {e}")
                    })
            })
            .transpose()
    }
}

fn default_split_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_deadline() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentSpec {
    /// Latency added to every credit batch payment applies.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub latency: Duration,
    /// Share of credit batches refused with a failure, 0..1.
    #[serde(default)]
    pub failure_rate: f64,
    /// Windows of show time in which payment refuses everything, `START+LENGTH`,
    /// e.g. `20s+5s`.
    #[serde(default)]
    pub outages: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_sync_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_base_port() -> u16 {
    7100
}
fn default_countdown() -> Duration {
    Duration::from_secs(3)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressTarget {
    /// Gateway addresses; users hash onto them.
    pub gateways: Vec<String>,
    /// The account system's key file (`auth.key` in the system's data directory).
    pub auth_key_file: PathBuf,
    /// The gateways' QUIC certificate (`quic-cert.pem` in the system's data
    /// directory), needed when any user goes over QUIC.
    #[serde(default)]
    pub quic_cert: Option<PathBuf>,
}
