//! Command-line shells around the library's parts.

mod args;
mod live;
mod resources;
mod sizes;
mod supervisor;
mod up;

pub use args::Cli;
pub(crate) use args::{GatewayTuning, PaymentFaultArgs, SplitArgs};

use anyhow::{Context, Result};
use args::{Command, GatewayArgs};
use std::path::Path;
use std::process::ExitCode;
use sut_wire::signing::SigningKey;
use tokio::sync::watch;

pub fn run(cli: Cli) -> Result<ExitCode> {
    shellkit::open_files::raise_to_hard_limit();
    sut::store::set_fsync(!cli.no_fsync);
    // The loop looks at its timers and sockets after every 16 tasks rather than 61: a
    // gateway whose sessions each take long (a costly decision) still runs its load
    // probe on time, so its admission acts within milliseconds of a surge.
    // Tasks woken from other threads (a gateway's wins and opens answered by its durable
    // lane) are taken every 4th task rather than every 31st: a surge of sessions with
    // frames ready does not hold an answered win back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(16)
        .global_queue_interval(4)
        .build()
        .context("cannot start the runtime")?;
    match cli.command {
        Command::Up(args) => rt.block_on(up::run(args)),
        Command::Gateway(args) => rt.block_on(gateway(args)),
        Command::Envelope(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            let config = sut::envelope::EnvelopeConfig {
                rpc_key: keys(&args.data)?.rpc,
                show_start_ms: show_start(args.show_start_ms, &args.data),
                listen: args.listen,
                metrics: args.metrics,
                data: args.data,
                payment_addr: args.payment,
                max_in_flight: args.max_in_flight,
                drain_timeout: args.drain_timeout,
                deliver_every: args.deliver_every,
                split_ttl: args.split.split_ttl,
            };
            let left = sut::envelope::run(config, shutdown).await?;
            Ok(left_queued(left, "credits", "the backend's outbox"))
        }),
        Command::Payment(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            let config = sut::payment::PaymentConfig {
                rpc_key: keys(&args.data)?.rpc,
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
            let timeline = sut::files::load_timeline(&args.timeline)?;
            let n = sut::seeds::write_all(&timeline, args.gateways, args.seed, &args.out)?;
            println!("wrote {n} shards under {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            keys(&args.data)?;
            let config = sut::config_service::ConfigServiceConfig {
                dir: args.data.join(&args.name),
                public: sut::schedule_files::operator_public(&args.data)?,
                rpc_key: keys(&args.data)?.rpc,
                name: args.name,
                listen: args.listen,
                metrics: args.metrics,
            };
            sut::config_service::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Timeline(args) => rt.block_on(timeline(args)),
        Command::ResourceServer(args) => rt.block_on(async {
            let shutdown = shutdown_signal()?;
            let config = sut::pre_push::server::ResourceServerConfig {
                public: sut::schedule_files::operator_public(&args.data)?,
                rpc_key: keys(&args.data)?.rpc,
                name: args.name,
                listen: args.listen,
                control: args.control,
                metrics: args.metrics,
                data: args.data,
                bandwidth: args.bandwidth,
            };
            sut::pre_push::server::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Resources(args) => {
            let words: Vec<&str> = args.change.iter().map(String::as_str).collect();
            println!("{}", resources::operate(&args.data, &words)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(args) => {
            keys(&args.data)?;
            println!(
                "keys in {}: secret.key, auth.key, rpc.key",
                args.data.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            let records = sut::audit::read(&args.data)?;
            let report = sut::audit::check(&records);
            if let Some(path) = &args.credits_by_user {
                sut::audit::write_credits_by_user(&records, path)?;
            }
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

/// The deployment's keys in its data directory, made on first use.
pub(crate) struct Keys {
    /// Signs envelope tokens and cookies (the gateways').
    pub signing: SigningKey,
    /// The account system's stand-in: users' login tokens.
    pub auth: SigningKey,
    /// Proved on every internal RPC connection.
    pub rpc: SigningKey,
}

pub(crate) fn keys(data: &Path) -> Result<Keys> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    Ok(Keys {
        signing: sut::keys::load_or_create(&data.join("secret.key"))?,
        auth: sut::keys::load_or_create(&data.join("auth.key"))?,
        rpc: sut::keys::load_or_create(&data.join("rpc.key"))?,
    })
}

async fn gateway(args: GatewayArgs) -> Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    let timeline_path = args
        .timeline
        .clone()
        .unwrap_or_else(|| args.data.join("timeline.yaml"));
    let timeline = sut::files::load_timeline(&timeline_path)?;
    let show_start_ms = match args.show_start_ms {
        Some(ms) => ms,
        None => sut::files::load_manifest(&args.data)
            .map(|m| m.show_start_ms)
            .unwrap_or_else(|_| shellkit::clock::unix_ms()),
    };
    let keys = keys(&args.data)?;
    let operator = sut::schedule_files::operator_public(&args.data)?;
    let channels = sut::gateway::ChannelConfig {
        config_addrs: args.config.clone(),
        data: args.data.clone(),
        gossip: args.gossip.clone(),
        rpc_key: keys.rpc.clone(),
    };
    let host = args
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']));
    let hosts: Vec<String> = host.into_iter().map(String::from).collect();
    let config = sut::gateway::GatewayConfig {
        id: args.id,
        gateways: args.gateways,
        quic_identity: sut::certs::ensure(&args.data, &hosts)?,
        listen: args.listen,
        metrics: args.metrics,
        seeds: args.data.join("seeds"),
        data: args.data,
        timeline,
        key: keys.signing,
        auth: keys.auth,
        rpc_key: keys.rpc.clone(),
        show_start_ms,
        envelope_addr: args.envelope,
        heartbeat_timeout: args.tuning.heartbeat_timeout,
        drain_timeout: args.drain_timeout,
        deliver_every: args.deliver_every,
        max_connections: args.tuning.max_connections.unwrap_or_else(|| {
            shellkit::open_files::connection_capacity(shellkit::open_files::raise_to_hard_limit())
                as usize
        }),
        tiers: !args.tuning.no_tiers,
        shake_cost: args.tuning.shake_cost,
        bench_opens: args.tuning.bench_opens,
        sync_interval: args.tuning.sync_interval,
        backend_deadline: args.tuning.backend_deadline,
        limits: args.tuning.limits(),
        strict_limits: !args.tuning.no_strict_limits,
        operator,
        channels,
    };
    if config.id >= config.gateways {
        anyhow::bail!(
            "--id {} is out of range for --gateways {}: ids run from 0 to {}",
            config.id,
            config.gateways,
            config.gateways.saturating_sub(1)
        );
    }
    let left = sut::gateway::run(config, shutdown).await?;
    Ok(left_queued(left, "opens", "the gateway's durable queue"))
}

/// `sut timeline CHANGE...`: shows the schedule, or makes and sends its next version.
async fn timeline(args: args::TimelineArgs) -> Result<ExitCode> {
    let words: Vec<&str> = args.change.iter().map(String::as_str).collect();
    println!("{}", operate(&args.data, &words).await?);
    Ok(ExitCode::SUCCESS)
}

/// Carries out one operator command on the system whose data directory is `data`:
/// `show`, or a change (see `sut_core::programme_change`); what to print.
pub(crate) async fn operate(data: &Path, words: &[&str]) -> Result<String> {
    let manifest = sut::files::load_manifest(data).with_context(|| {
        format!(
            "is a system running on {}? (`sut up --data {}`)",
            data.display(),
            data.display()
        )
    })?;
    let change = match words {
        ["show"] => {
            let now = sut::operator::current(data, &manifest)?;
            return Ok(format!(
                "timeline version {} ({}), clock correction {} ms\n{}",
                now.version,
                now.change,
                now.clock_offset_ms,
                now.timeline.to_yaml()
            ));
        }
        ["replace", file] => {
            sut_core::programme_change::Change::Replace(sut::files::load_timeline(Path::new(file))?)
        }
        words => sut_core::programme_change::Change::parse(words).map_err(anyhow::Error::msg)?,
    };
    Ok(sut::operator::publish(data, &change).await?.to_string())
}

/// A part's exit code when it stopped with work still queued: kept durably and sent on
/// at its next start, yet not done, so the stop is not a clean one.
pub(crate) const LEFT_QUEUED: u8 = 3;

/// The exit code of a clean stop that left `left` items in `place`.
fn left_queued(left: usize, what: &str, place: &str) -> ExitCode {
    if left == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "stopped with {left} {what} still in {place}: kept durably and sent on at the next start, but not done (exit code {LEFT_QUEUED})"
    );
    ExitCode::from(LEFT_QUEUED)
}

fn show_start(flag: Option<i64>, data: &std::path::Path) -> i64 {
    flag.or_else(|| {
        sut::files::load_manifest(data)
            .ok()
            .map(|m| m.show_start_ms)
    })
    .unwrap_or_else(shellkit::clock::unix_ms)
}
