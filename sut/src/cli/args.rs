//! The `sut` command line: every subcommand's arguments, with the checks that turn bad
//! input into a message naming the flag and the fix.

use super::sizes::parse_bytes;
use super::up;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "sut",
    version,
    about = "The shake red-envelope system under test"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Commit without waiting for the disk (no fsync): only to measure what durability
    /// costs; a crash may then lose what was acknowledged. `sut up` passes it on.
    #[arg(long, global = true)]
    pub(crate) no_fsync: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start payment, the envelope backend and N gateways as separate processes.
    Up(up::UpArgs),
    /// Run one gateway (access server).
    Gateway(GatewayArgs),
    /// Run the envelope backend.
    Envelope(EnvelopeArgs),
    /// Run the payment stand-in.
    Payment(PaymentArgs),
    /// Generate every round's envelopes as one seed shard per gateway.
    Seed(SeedArgs),
    /// Check a finished run's durable records against the invariants.
    Audit(AuditArgs),
    /// Run a config service: the live timeline's push source (`sut up` runs two).
    Config(ConfigArgs),
    /// Change the show's programme live: sign a new timeline version and send it over
    /// the three channels (`sut timeline move 2 +30s --data DIR`).
    Timeline(TimelineArgs),
    /// Run a resource server: one node of the CDN handing pre-push items to clients
    /// (`sut up --resource-servers N` runs N).
    ResourceServer(ResourceServerArgs),
    /// The pre-push resources: `show` the newest manifest, or `update ID...` to give
    /// items new bytes and sign the next manifest version (`sut resources update 3 7`).
    Resources(ResourcesArgs),
    /// Make the keys every part shares (secret.key, auth.key, rpc.key) in a directory,
    /// keeping any already there: for parts started one by one (deploy/k8s).
    Keys(KeysArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Instance name (its state lives in DATA/NAME/).
    #[arg(long, default_value = "config-0")]
    pub(crate) name: String,
    #[arg(long, default_value = "127.0.0.1:7102")]
    pub(crate) listen: String,
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Accepted for the supervisor's uniform command line; unused.
    #[arg(long, hide = true)]
    pub(crate) show_start_ms: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResourceServerArgs {
    #[arg(long, default_value = "resources-0")]
    pub(crate) name: String,
    #[arg(long, default_value = "127.0.0.1:7140")]
    pub(crate) listen: String,
    /// The internal RPC port that takes injected faults.
    #[arg(long, default_value = "127.0.0.1:7141")]
    pub(crate) control: String,
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Bytes per second this server sends at most, over all clients (`20MiB`).
    #[arg(long, default_value = "20MiB", value_parser = parse_bytes)]
    pub(crate) bandwidth: u64,
    /// Accepted for the supervisor's uniform command line; unused.
    #[arg(long, hide = true)]
    pub(crate) show_start_ms: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResourcesArgs {
    /// The system's data directory (its operator key and manifests).
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// `show`, or `update ID...`.
    #[arg(required = true, num_args = 1..)]
    pub(crate) change: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TimelineArgs {
    /// The running system's data directory (its manifest, operator key, versions).
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// The change: `show`, `move ROUND +30s|-10s|now|45s`, `budget ROUND N`,
    /// `rate ROUND PER_SECOND`, `cancel ROUND`, `clock OFFSET`, `replace FILE`.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub(crate) change: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// This gateway's id, 0-based; selects its seed shard and database.
    #[arg(long)]
    pub(crate) id: u16,
    /// How many gateways share the rounds (each takes 1/N of the rate).
    #[arg(long)]
    pub(crate) gateways: u16,
    #[arg(long, default_value = "127.0.0.1:7110")]
    pub(crate) listen: String,
    /// Serve Prometheus metrics here.
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    /// Data directory (database, keys, seeds, timeline).
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Timeline file [default: DATA/timeline.yaml].
    #[arg(long)]
    pub(crate) timeline: Option<PathBuf>,
    /// Unix time in ms when the show starts [default: from DATA/manifest.json, else now].
    #[arg(long)]
    pub(crate) show_start_ms: Option<i64>,
    /// Envelope backend address.
    #[arg(long, default_value = "127.0.0.1:7101")]
    pub(crate) envelope: String,
    /// On shutdown, keep forwarding queued opens for at most this long.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Duration,
    /// Start at most one delivery of queued opens to the envelope backend per this long
    /// (0s: unpaced), unless a batch is full. What arrives meanwhile joins the next one,
    /// so the backend's durable writes per second are bounded by this pace rather than by
    /// the open rate; an open is credited at most this much later (its user's reply does
    /// not wait).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub(crate) deliver_every: Duration,
    /// A config service to watch for timeline versions (the push channel); repeat for
    /// each instance.
    #[arg(long = "config")]
    pub(crate) config: Vec<String>,
    /// Peer address for the gossip channel (and injected channel faults).
    #[arg(long)]
    pub(crate) gossip: Option<String>,
    #[command(flatten)]
    pub(crate) tuning: GatewayTuning,
}

/// Gateway settings that `sut up` passes on to each of its gateways.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayTuning {
    /// Close clients silent for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) heartbeat_timeout: Duration,
    /// Hold at most this many client connections per gateway [default: the open-file
    /// limit less what the gateway keeps for itself].
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Keep the throttle tier at 0 whatever the load (to measure what tiers save).
    #[arg(long)]
    pub(crate) no_tiers: bool,
    /// CPU time each shake decision burns on top of its real work, e.g. 1ms: gives a
    /// gateway a small, known capacity for tests and benchmarks.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) shake_cost: Duration,
    /// Benchmark: at start-up, put this many synthetic opens through the gateway's open
    /// path (durable pass-through queue, forwarder, backend, payment) as fast as it
    /// takes them, as if that many users had just opened (see bench/opens.py).
    #[arg(long, default_value_t = 0)]
    pub(crate) bench_opens: u64,
    /// How often the agent syncs the shared limit view (the third limit layer: what
    /// every gateway issued) with the envelope backend.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) sync_interval: Duration,
    /// Answer a share or grab `unavailable` (a retry is worth it) when the envelope
    /// backend has not answered it within this long: a hung backend costs users a
    /// retry, not a timeout.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) backend_deadline: Duration,
    /// Close a connection that has not sent a valid Hello this long after connecting.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) hello_timeout: Duration,
    /// Close a connection that began a frame and did not finish it within this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) frame_timeout: Duration,
    /// Close a connection that does not read its replies within this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) write_timeout: Duration,
    /// Frames a second each user may have handled (over all their connections); past
    /// it (and a burst of twice as many), their connections are read no faster.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) frames_per_second: u32,
    /// Bytes of unfinished frames all connections together may hold, e.g. 64MiB; a
    /// connection that grows past it is closed with `overloaded`.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub(crate) partial_budget: u64,
    /// Issue wins without reserving them at the user's owner first: the cookie, table
    /// and shared-view layers alone (a user racing several gateways can pass the
    /// limits). For measuring what strict limits cost.
    #[arg(long)]
    pub(crate) no_strict_limits: bool,
    /// Kernel send buffer per connection, e.g. 64KiB (0: the kernel's own sizing).
    #[arg(long, default_value = "64KiB", value_parser = parse_bytes)]
    pub(crate) send_buffer: u64,
}

impl GatewayTuning {
    /// What one connection may cost, from these flags.
    pub(crate) fn limits(&self) -> sut::gateway::SessionLimits {
        sut::gateway::SessionLimits {
            hello_timeout: self.hello_timeout,
            frame_timeout: self.frame_timeout,
            write_timeout: self.write_timeout,
            frames_per_second: self.frames_per_second,
            frame_burst: self.frames_per_second.saturating_mul(2),
            partial_budget: usize::try_from(self.partial_budget).unwrap_or(usize::MAX),
            send_buffer: usize::try_from(self.send_buffer).unwrap_or(usize::MAX),
        }
    }

    /// The same settings as `sut gateway` flags.
    pub(crate) fn to_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--heartbeat-timeout".to_string(),
            humantime::format_duration(self.heartbeat_timeout).to_string(),
            "--shake-cost".to_string(),
            humantime::format_duration(self.shake_cost).to_string(),
            "--sync-interval".to_string(),
            humantime::format_duration(self.sync_interval).to_string(),
            "--backend-deadline".to_string(),
            humantime::format_duration(self.backend_deadline).to_string(),
            "--hello-timeout".to_string(),
            humantime::format_duration(self.hello_timeout).to_string(),
            "--frame-timeout".to_string(),
            humantime::format_duration(self.frame_timeout).to_string(),
            "--write-timeout".to_string(),
            humantime::format_duration(self.write_timeout).to_string(),
            "--frames-per-second".to_string(),
            self.frames_per_second.to_string(),
            "--partial-budget".to_string(),
            self.partial_budget.to_string(),
            "--send-buffer".to_string(),
            self.send_buffer.to_string(),
        ];
        if let Some(max) = self.max_connections {
            flags.extend(["--max-connections".to_string(), max.to_string()]);
        }
        if self.no_tiers {
            flags.push("--no-tiers".to_string());
        }
        if self.no_strict_limits {
            flags.push("--no-strict-limits".to_string());
        }
        if self.bench_opens > 0 {
            flags.extend(["--bench-opens".to_string(), self.bench_opens.to_string()]);
        }
        flags
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct EnvelopeArgs {
    #[arg(long, default_value = "127.0.0.1:7101")]
    pub(crate) listen: String,
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Payment address.
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub(crate) payment: String,
    /// Record requests in flight before new ones are refused as busy.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_in_flight: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Duration,
    /// Start at most one delivery of credits to payment per this long (0s: unpaced),
    /// unless a batch is full. What arrives meanwhile joins the next one, so payment's
    /// durable writes per second are bounded by this pace rather than by the open rate; a
    /// credit is applied at most this much later (the user's open reply does not wait).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub(crate) deliver_every: Duration,
    /// Unix ms of the show's start, for split pots' lifetimes [default: from DATA/manifest.json, else now].
    #[arg(long)]
    pub(crate) show_start_ms: Option<i64>,
    #[command(flatten)]
    pub(crate) split: SplitArgs,
}

/// Split envelope settings; `sut up` passes them on to the envelope backend.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SplitArgs {
    /// How long after its open a split pot may be shared and grabbed; then what is
    /// left goes back to the sponsor (the seed: 24 hours).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub(crate) split_ttl: Duration,
}

impl SplitArgs {
    pub(crate) fn to_flags(&self) -> Vec<String> {
        vec![
            "--split-ttl".to_string(),
            humantime::format_duration(self.split_ttl).to_string(),
        ]
    }
}

/// The show's start: the flag, else the data directory's manifest, else now.

#[derive(Debug, clap::Args)]
pub(crate) struct PaymentArgs {
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub(crate) listen: String,
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Credit batches in flight before new ones are refused as busy.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_in_flight: usize,
    /// Unix ms of the show's start, for outage windows [default: from DATA/manifest.json, else now].
    #[arg(long)]
    pub(crate) show_start_ms: Option<i64>,
    #[command(flatten)]
    pub(crate) faults: PaymentFaultArgs,
}

/// Faults the payment stand-in can be told to have; `sut up` passes them on.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct PaymentFaultArgs {
    /// Latency added to every credit batch payment applies (it holds its in-flight slot
    /// meanwhile, so a slow payment pushes back on the backend).
    #[arg(long = "payment-latency", default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) latency: Duration,
    /// Share of credit batches refused with a failure (0..1); the backend retries them.
    #[arg(long = "payment-failure-rate", default_value_t = 0.0, value_parser = failure_rate)]
    pub(crate) failure_rate: f64,
    /// A window of show time in which payment refuses everything, START+LENGTH (e.g.
    /// 20s+5s); repeat for several.
    #[arg(long = "payment-outage")]
    pub(crate) outages: Vec<sut_core::payment_faults::Outage>,
}

fn failure_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a share between 0 and 1, e.g. 0.05"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not between 0 and 1"))
    }
}

impl PaymentFaultArgs {
    pub(crate) fn to_faults(&self) -> sut_core::payment_faults::PaymentFaults {
        sut_core::payment_faults::PaymentFaults {
            latency: self.latency,
            failure_rate: self.failure_rate,
            outages: self.outages.clone(),
        }
    }

    /// The same settings as command-line flags, for `sut up` to pass on.
    pub(crate) fn to_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--payment-latency".to_string(),
            humantime::format_duration(self.latency).to_string(),
            "--payment-failure-rate".to_string(),
            self.failure_rate.to_string(),
        ];
        for o in &self.outages {
            flags.push("--payment-outage".into());
            flags.push(format!(
                "{}+{}",
                humantime::format_duration(o.start),
                humantime::format_duration(o.length)
            ));
        }
        flags
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SeedArgs {
    #[arg(long)]
    pub(crate) timeline: PathBuf,
    #[arg(long)]
    pub(crate) gateways: u16,
    /// Seed of the generator: the same seed gives the same envelopes.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Output directory; shards go to OUT/round-R/gateway-G.shard.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write what payment credited to each user (opens and grabs), one
    /// `user,cents` line each, to this file: a load generator compares it with what
    /// its users were told.
    #[arg(long, value_name = "FILE")]
    pub(crate) credits_by_user: Option<PathBuf>,
}
