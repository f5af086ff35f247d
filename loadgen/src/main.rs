//! `loadgen`: run load profiles against the shake system.

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::segment::Segment;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the shake red-envelope system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a run's results go, and the system it may start: the same for `run` and
/// `coordinator`.
#[derive(Debug, clap::Args)]
struct Outputs {
    /// Serve Prometheus metrics here during the run, e.g. 127.0.0.1:9464.
    #[arg(long)]
    metrics: Option<String>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Where the HTML report (report.html), the HdrHistogram interval log
    /// (latency.hlog) and the summary (summary.json) go [default: reports/PROFILE-NAME].
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// The `sut` binary for spawned targets [default: beside loadgen, then PATH].
    #[arg(long)]
    sut_bin: Option<PathBuf>,
}

/// Changes to the profile for this run (shown in the summary as used).
#[derive(Debug, Clone, clap::Args)]
struct ProfileOverrides {
    /// Users instead of the profile's (every stage's target scaled alike).
    #[arg(long)]
    users: Option<u64>,
    /// The run's length instead of the profile's (every stage scaled alike), e.g. 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Stages instead of the profile's, repeatable: DURATION:TARGET, e.g. 30s:1000.
    #[arg(long = "stage", value_name = "DURATION:TARGET")]
    stages: Vec<String>,
    /// The seed instead of the profile's.
    #[arg(long)]
    seed: Option<u64>,
    /// A variable for ${KEY} (or ${KEY:-default}) in the profile, before the
    /// environment's; repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = loadgen::overrides::parse_var)]
    vars: Vec<(String, String)>,
}

impl ProfileOverrides {
    fn into_overrides(self) -> loadgen::overrides::Overrides {
        loadgen::overrides::Overrides {
            users: self.users,
            duration: self.duration,
            stages: self.stages,
            seed: self.seed,
            vars: self.vars,
        }
    }
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a profile and print its summary; exits non-zero on a breached threshold or a
    /// failed audit.
    #[command(after_help = loadgen::exit::HELP)]
    Run {
        /// The profile (YAML).
        profile: PathBuf,
        #[command(flatten)]
        outputs: Outputs,
        #[command(flatten)]
        overrides: ProfileOverrides,
        /// Local worker processes [default: enough for the peak users, ~19,000 TCP
        /// connections each (the open-file limit) and at most 100,000 QUIC ones].
        #[arg(long)]
        workers: Option<u64>,
        /// Run only segment i of n of the users (user u is in segment u mod n), e.g. to
        /// spread one run over n machines; needs `target: addresses:`.
        #[arg(long, default_value = "0/1")]
        segment: Segment,
        /// The common start as Unix time in ms, so that segments on several machines
        /// ramp together [default: shortly after the workers are up].
        #[arg(long)]
        start_at: Option<i64>,
        /// Internal: run as one worker of a parent `loadgen run`.
        #[arg(long, hide = true)]
        worker: bool,
        /// Internal (workers): the users a share's notice can reach.
        #[arg(long, hide = true, default_value = "0/1")]
        reach: Segment,
        /// Internal (workers): the gateway addresses, comma-separated.
        #[arg(long, hide = true, value_delimiter = ',')]
        gateways: Vec<String>,
        /// Internal (workers): the account key file.
        #[arg(long, hide = true)]
        auth_key_file: Option<PathBuf>,
        /// Internal (workers): the gateways' QUIC certificate, for QUIC users.
        #[arg(long, hide = true)]
        quic_cert: Option<PathBuf>,
    },
    /// Run a profile over agents on several machines: wait for `--agents` of them to
    /// join, give each a segment of the users, start all at one moment, and merge their
    /// figures into one summary, JSON, HTML report, interval log and /metrics, as
    /// `loadgen run` does with its local workers.
    #[command(after_help = loadgen::exit::HELP)]
    Coordinator {
        /// The profile (YAML); the agents are sent it.
        profile: PathBuf,
        /// How many agents to wait for; agent i runs segment i/N.
        #[arg(long)]
        agents: u64,
        /// Where agents join.
        #[arg(long, default_value = "0.0.0.0:7700")]
        listen: String,
        /// The shared secret agents must hold [default: $LOADGEN_TOKEN].
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// How long to wait for every agent to join.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        join_timeout: std::time::Duration,
        /// An agent silent this long is lost.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        agent_silence: std::time::Duration,
        /// Worker processes per agent [default: each agent sizes its own from its
        /// open-file limit].
        #[arg(long)]
        workers_per_agent: Option<u64>,
        #[command(flatten)]
        outputs: Outputs,
        #[command(flatten)]
        overrides: ProfileOverrides,
    },
    /// Join a coordinator and run the share of the users it assigns (one per machine
    /// or pod); stops its users and exits if the coordinator goes away.
    Agent {
        /// The coordinator's address, HOST:PORT.
        #[arg(long)]
        coordinator: String,
        /// The shared secret [default: $LOADGEN_TOKEN].
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// This agent's name in figures and failures [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Local worker processes [default: the coordinator's --workers-per-agent,
        /// else sized from the open-file limit].
        #[arg(long)]
        workers: Option<u64>,
        /// How long to keep trying to reach the coordinator.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        join_timeout: std::time::Duration,
    },
    /// Compare two runs' summaries (summary.json): a table of what moved; with
    /// tolerances, exits 1 when a figure moved past its tolerance (2 on bad input).
    Compare {
        /// The reference run's summary.json.
        baseline: PathBuf,
        /// The run to judge.
        current: PathBuf,
        /// `[OP.]STAT=LIMIT`, repeatable: `p99=10%` (latency may grow 10 %),
        /// `shake.p50=5%`, `rate=5%` (throughput may fall 5 %), `errors=0.1%` (the error
        /// rate may rise 0.1 points). Stats: p50, p90, p99, p99.9, max, rate, errors.
        #[arg(long = "max-regression", value_name = "TOLERANCE")]
        max_regression: Vec<loadgen::compare::Tolerance>,
    },
    /// Check a profile (YAML) or a Grafana dashboard (JSON) without running anything:
    /// errors name the line and column, the field and what it allows; a dashboard query
    /// naming a metric or operation that does not exist is an error.
    Validate {
        profile: PathBuf,
        #[command(flatten)]
        overrides: ProfileOverrides,
    },
    /// Print the JSON Schema of the profile format (for editor completion).
    Schema,
}

fn validate(
    path: &std::path::Path,
    overrides: &loadgen::overrides::Overrides,
) -> anyhow::Result<ExitCode> {
    if path.extension().is_some_and(|e| e == "json") {
        let d = loadgen::dashboard::Dashboard::load(path)?;
        println!(
            "{}: ok (dashboard `{}`, {} queries)",
            path.display(),
            d.title,
            d.queries.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let env = |k: &str| std::env::var(k).ok();
    let effective = loadgen::overrides::apply(path, overrides, &env).map_err(anyhow::Error::msg)?;
    let p = effective.profile(path).map_err(anyhow::Error::msg)?;
    for note in &effective.notes {
        println!("override: {note}");
    }
    loadgen::preflight::check(&p, p.peak_users(), &loadgen::identity::Machine::this())
        .and_then(|_| loadgen::preflight::check_ports(&p))
        .map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()))?;
    println!(
        "{}: ok ({} users, {:.0} s, {} thresholds)",
        path.display(),
        p.users,
        p.duration().as_secs_f64(),
        p.thresholds.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<ExitCode> {
        match cli.command {
            Command::Validate { profile, overrides } => {
                validate(&profile, &overrides.into_overrides())
            }
            Command::Compare {
                baseline,
                current,
                max_regression,
            } => compare(&baseline, &current, &max_regression),
            Command::Schema => {
                print!("{}", loadgen::profile::Profile::json_schema());
                Ok(ExitCode::SUCCESS)
            }
            Command::Coordinator {
                profile,
                agents,
                listen,
                token_file,
                join_timeout,
                agent_silence,
                workers_per_agent,
                outputs,
                overrides,
            } => {
                if agents == 0 {
                    anyhow::bail!("--agents must be at least 1");
                }
                let cluster = loadgen::cluster::coordinator::ClusterOptions {
                    listen,
                    agents,
                    token: loadgen::cluster::coordinator::read_token(token_file.as_ref())?,
                    join_timeout,
                    silence: agent_silence,
                    workers_per_agent,
                };
                runtime()?.block_on(loadgen::run::run(loadgen::run::RunOptions {
                    profile,
                    metrics: outputs.metrics,
                    summary_json: outputs.summary_json,
                    report_dir: outputs.report_dir,
                    sut_bin: outputs.sut_bin,
                    workers: None,
                    segment: Segment::ALL,
                    start_at: None,
                    cluster: Some(cluster),
                    overrides: overrides.into_overrides(),
                }))
            }
            Command::Agent {
                coordinator,
                token_file,
                name,
                workers,
                join_timeout,
            } => {
                let token = loadgen::cluster::coordinator::read_token(token_file.as_ref())?;
                runtime()?.block_on(loadgen::cluster::agent::run(
                    loadgen::cluster::agent::AgentOptions {
                        coordinator,
                        token,
                        name,
                        workers,
                        join_timeout,
                    },
                ))
            }
            Command::Run {
                profile,
                worker: true,
                segment,
                reach,
                start_at,
                gateways,
                auth_key_file,
                quic_cert,
                ..
            } => run_worker(
                profile,
                (segment, reach),
                start_at,
                (gateways, auth_key_file),
                quic_cert,
            ),
            Command::Run {
                profile,
                outputs,
                overrides,
                workers,
                segment,
                start_at,
                ..
            } => runtime()?.block_on(loadgen::run::run(loadgen::run::RunOptions {
                profile,
                metrics: outputs.metrics,
                summary_json: outputs.summary_json,
                report_dir: outputs.report_dir,
                sut_bin: outputs.sut_bin,
                workers,
                segment,
                start_at,
                cluster: None,
                overrides: overrides.into_overrides(),
            })),
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(loadgen::exit::Exit::Configuration as u8)
        }
    }
}

fn compare(
    baseline: &std::path::Path,
    current: &std::path::Path,
    tolerances: &[loadgen::compare::Tolerance],
) -> anyhow::Result<ExitCode> {
    let read = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON: give a run's summary.json", p.display()))
    };
    let (b, c) = (read(baseline)?, read(current)?);
    let result = loadgen::compare::compare(
        (&baseline.display().to_string(), &b),
        (&current.display().to_string(), &c),
        tolerances,
    )?;
    print!("{}", result.table());
    Ok(if result.regressed().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(loadgen::exit::Exit::ThresholdBreached as u8)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// One worker: its segment of the users, reports on stdout, stop when stdin closes.
fn run_worker(
    profile: PathBuf,
    (segment, reach): (Segment, Segment),
    start_at: Option<i64>,
    (gateways, auth_key_file): (Vec<String>, Option<PathBuf>),
    quic_cert: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    shellkit::open_files::raise_to_hard_limit();
    let profile = loadgen::profile::Profile::load(&profile)?;
    let gateways =
        loadgen::addresses::resolve(&gateways, "gateway address").map_err(anyhow::Error::msg)?;
    if gateways.is_empty() {
        anyhow::bail!("a worker needs --gateways");
    }
    let key = auth_key_file.context("a worker needs --auth-key-file")?;
    let quic = match (&quic_cert, profile.behaviour.transport.any_quic()) {
        (Some(cert), true) => Some(shellkit::quic::client_config(
            cert,
            loadgen::worker::quic_idle(&profile),
        )?),
        (None, true) => anyhow::bail!("a worker with QUIC users needs --quic-cert"),
        (_, false) => None,
    };
    // The system's data directory holds the auth key beside its run manifest and the
    // operator's public key: where the phones find the resource servers.
    let pre_push = match &profile.pre_push {
        Some(spec) => Some(loadgen::pre_push::Target::from_data(
            spec,
            key.parent().unwrap_or(std::path::Path::new(".")),
        )?),
        None => None,
    };
    let config = loadgen::worker::WorkerConfig {
        pre_push,
        quic,
        profile,
        segment,
        reach,
        gateways,
        auth: {
            let bytes = std::fs::read(&key)
                .with_context(|| format!("cannot read the auth key file {}", key.display()))?;
            sut_wire::signing::SigningKey::from_file_bytes(&bytes, &key.display().to_string())?
        },
        start_unix_ms: start_at.context("a worker needs --start-at")?,
        report_every: std::time::Duration::from_secs(1),
    };
    let stdin = std::io::stdin();
    let stop = std::os::fd::AsFd::as_fd(&stdin);
    let mut out = std::io::stdout().lock();
    loadgen::worker::run(config, Some(&stop), |message| {
        loadgen::worker::write_message(&mut out, message)
    })?;
    Ok(ExitCode::SUCCESS)
}
