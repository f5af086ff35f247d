//! Command-line shells around the library's parts.

mod supervisor;
mod up;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use sut::signing::SigningKey;
use sut::timeline::Timeline;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "sut",
    version,
    about = "The shake red-envelope system under test"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Commit without waiting for the disk (no fsync): only to measure what durability
    /// costs; a crash may then lose what was acknowledged. `sut up` passes it on.
    #[arg(long, global = true)]
    no_fsync: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// This gateway's id, 0-based; selects its seed shard and database.
    #[arg(long)]
    id: u16,
    /// How many gateways share the rounds (each takes 1/N of the rate).
    #[arg(long)]
    gateways: u16,
    #[arg(long, default_value = "127.0.0.1:7110")]
    listen: String,
    /// Serve Prometheus metrics here.
    #[arg(long)]
    metrics: Option<String>,
    /// Data directory (database, keys, seeds, timeline).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Timeline file [default: DATA/timeline.yaml].
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Unix time in ms when the show starts [default: from DATA/manifest.json, else now].
    #[arg(long)]
    show_start_ms: Option<i64>,
    /// Envelope backend address.
    #[arg(long, default_value = "127.0.0.1:7101")]
    envelope: String,
    /// On shutdown, keep forwarding queued opens for at most this long.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    #[command(flatten)]
    tuning: GatewayTuning,
}

/// Gateway settings that `sut up` passes on to each of its gateways.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayTuning {
    /// Close clients silent for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Duration,
    /// Hold at most this many client connections per gateway [default: the open-file
    /// limit less what the gateway keeps for itself].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Keep the throttle tier at 0 whatever the load (to measure what tiers save).
    #[arg(long)]
    no_tiers: bool,
    /// CPU time each shake decision burns on top of its real work, e.g. 1ms: gives a
    /// gateway a small, known capacity for tests and benchmarks.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    shake_cost: Duration,
    /// Benchmark: at start-up, put this many synthetic opens through the gateway's open
    /// path (durable pass-through queue, forwarder, backend, payment) as fast as it
    /// takes them, as if that many users had just opened (see bench/opens.py).
    #[arg(long, default_value_t = 0)]
    bench_opens: u64,
    /// How often the agent syncs the shared limit view (the third limit layer: what
    /// every gateway issued) with the envelope backend.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    sync_interval: Duration,
}

impl GatewayTuning {
    /// The same settings as `sut gateway` flags.
    pub(crate) fn to_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--heartbeat-timeout".to_string(),
            humantime::format_duration(self.heartbeat_timeout).to_string(),
            "--shake-cost".to_string(),
            humantime::format_duration(self.shake_cost).to_string(),
            "--sync-interval".to_string(),
            humantime::format_duration(self.sync_interval).to_string(),
        ];
        if let Some(max) = self.max_connections {
            flags.extend(["--max-connections".to_string(), max.to_string()]);
        }
        if self.no_tiers {
            flags.push("--no-tiers".to_string());
        }
        if self.bench_opens > 0 {
            flags.extend(["--bench-opens".to_string(), self.bench_opens.to_string()]);
        }
        flags
    }
}

#[derive(Debug, clap::Args)]
struct EnvelopeArgs {
    #[arg(long, default_value = "127.0.0.1:7101")]
    listen: String,
    #[arg(long)]
    metrics: Option<String>,
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Payment address.
    #[arg(long, default_value = "127.0.0.1:7100")]
    payment: String,
    /// Record requests in flight before new ones are refused as busy.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Unix ms of the show's start, for split pots' lifetimes [default: from DATA/manifest.json, else now].
    #[arg(long)]
    show_start_ms: Option<i64>,
    #[command(flatten)]
    split: SplitArgs,
}

/// Split envelope settings; `sut up` passes them on to the envelope backend.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SplitArgs {
    /// How long after its open a split pot may be shared and grabbed; then what is
    /// left goes back to the sponsor (the seed: 24 hours).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    split_ttl: Duration,
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
fn show_start(flag: Option<i64>, data: &std::path::Path) -> i64 {
    flag.or_else(|| {
        sut::manifest::Manifest::load(data)
            .ok()
            .map(|m| m.show_start_ms)
    })
    .unwrap_or_else(sut::gateway::unix_ms)
}

#[derive(Debug, clap::Args)]
struct PaymentArgs {
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: String,
    #[arg(long)]
    metrics: Option<String>,
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Credit batches in flight before new ones are refused as busy.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Unix ms of the show's start, for outage windows [default: from DATA/manifest.json, else now].
    #[arg(long)]
    show_start_ms: Option<i64>,
    #[command(flatten)]
    faults: PaymentFaultArgs,
}

/// Faults the payment stand-in can be told to have; `sut up` passes them on.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct PaymentFaultArgs {
    /// Latency added to every credit batch payment applies (it holds its in-flight slot
    /// meanwhile, so a slow payment pushes back on the backend).
    #[arg(long = "payment-latency", default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Share of credit batches refused with a failure (0..1); the backend retries them.
    #[arg(long = "payment-failure-rate", default_value_t = 0.0, value_parser = failure_rate)]
    failure_rate: f64,
    /// A window of show time in which payment refuses everything, START+LENGTH (e.g.
    /// 20s+5s); repeat for several.
    #[arg(long = "payment-outage")]
    outages: Vec<sut::payment_faults::Outage>,
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
    pub(crate) fn to_faults(&self) -> sut::payment_faults::PaymentFaults {
        sut::payment_faults::PaymentFaults {
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
struct SeedArgs {
    #[arg(long)]
    timeline: PathBuf,
    #[arg(long)]
    gateways: u16,
    /// Seed of the generator: the same seed gives the same envelopes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory; shards go to OUT/round-R/gateway-G.shard.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    sut::open_files::raise_to_hard_limit();
    sut::store::set_fsync(!cli.no_fsync);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match cli.command {
        Command::Up(args) => rt.block_on(up::run(args)),
        Command::Gateway(args) => rt.block_on(gateway(args)),
        Command::Envelope(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            let config = sut::envelope::EnvelopeConfig {
                show_start_ms: show_start(args.show_start_ms, &args.data),
                listen: args.listen,
                metrics: args.metrics,
                data: args.data,
                payment_addr: args.payment,
                max_in_flight: args.max_in_flight,
                drain_timeout: args.drain_timeout,
                split_ttl: args.split.split_ttl,
            };
            sut::envelope::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Payment(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            let config = sut::payment::PaymentConfig {
                show_start_ms: show_start(args.show_start_ms, &args.data),
                listen: args.listen,
                metrics: args.metrics,
                data: args.data,
                max_in_flight: args.max_in_flight,
                faults: args.faults.to_faults(),
            };
            sut::payment::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Seed(args) => {
            let timeline = Timeline::load(&args.timeline)?;
            let n = sut::seed_shard::write_all(&timeline, args.gateways, args.seed, &args.out)?;
            println!("wrote {n} shards under {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            let report = sut::audit::run(&args.data)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A watch that turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        // Keep the sender alive: receivers then see "shut down", not "sender gone".
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

pub(crate) fn keys(data: &Path) -> Result<(SigningKey, SigningKey)> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    Ok((
        SigningKey::load_or_create(&data.join("secret.key"))?,
        SigningKey::load_or_create(&data.join("auth.key"))?,
    ))
}

async fn gateway(args: GatewayArgs) -> Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    let timeline_path = args
        .timeline
        .clone()
        .unwrap_or_else(|| args.data.join("timeline.yaml"));
    let timeline = Timeline::load(&timeline_path)?;
    let show_start_ms = match args.show_start_ms {
        Some(ms) => ms,
        None => sut::manifest::Manifest::load(&args.data)
            .map(|m| m.show_start_ms)
            .unwrap_or_else(|_| sut::gateway::unix_ms()),
    };
    let (key, auth) = keys(&args.data)?;
    let config = sut::gateway::GatewayConfig {
        id: args.id,
        gateways: args.gateways,
        listen: args.listen,
        metrics: args.metrics,
        seeds: args.data.join("seeds"),
        data: args.data,
        timeline,
        key,
        auth,
        show_start_ms,
        envelope_addr: args.envelope,
        heartbeat_timeout: args.tuning.heartbeat_timeout,
        drain_timeout: args.drain_timeout,
        max_connections: args.tuning.max_connections.unwrap_or_else(|| {
            sut::open_files::connection_capacity(sut::open_files::raise_to_hard_limit()) as usize
        }),
        tiers: !args.tuning.no_tiers,
        shake_cost: args.tuning.shake_cost,
        bench_opens: args.tuning.bench_opens,
        sync_interval: args.tuning.sync_interval,
    };
    if config.id >= config.gateways {
        anyhow::bail!(
            "--id {} is out of range for --gateways {}: ids run from 0 to {}",
            config.id,
            config.gateways,
            config.gateways.saturating_sub(1)
        );
    }
    sut::gateway::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
