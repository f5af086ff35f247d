//! `loadgen run`: one profile, start to verdict.
//!
//! This process is the parent: it starts the system under test when the profile asks,
//! starts the workers (each a segment of the users, see [`crate::worker`]), merges their
//! reports exactly, and alone serves `/metrics`, prints the progress line, stops the
//! system, audits it and prints the summary.

use crate::cluster::coordinator::Shipment;
use crate::fleet::Fleet;
use crate::generators::Generators;
use crate::hlog::HlogWriter;
use crate::merge::Merge;
use crate::profile::{Profile, Target};
use crate::progress::Progress;
use crate::prom::{Live, SummaryCollector};
use crate::report::{LimitReport, Origin, RunCost, RunReport};
use crate::segment::Segment;
use crate::spawn;
use crate::stats::Summary;
use crate::watch::Watch;
use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sut_core::audit::AuditReport;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: PathBuf,
    pub metrics: Option<String>,
    pub summary_json: Option<PathBuf>,
    /// Report directory [default: reports/NAME].
    pub report_dir: Option<PathBuf>,
    pub sut_bin: Option<PathBuf>,
    /// Local worker processes [default: sized from the open-file limit].
    pub workers: Option<u64>,
    /// Run only this segment of the users (the rest run elsewhere).
    pub segment: Segment,
    /// The common start, Unix ms [default: shortly after the workers are up].
    pub start_at: Option<i64>,
    /// Run as the coordinator of agents on other machines instead of with local
    /// workers (`loadgen coordinator`).
    pub cluster: Option<crate::cluster::coordinator::ClusterOptions>,
    /// Changes to the profile from the command line (see [`crate::overrides`]).
    pub overrides: crate::overrides::Overrides,
}

/// How long after each whole second of the run the parent reads the workers' reports
/// (see the tick below); the run's seconds, its series and its interval log count from
/// the start plus this.
const TICK_LAG: Duration = Duration::from_millis(500);

pub async fn run(mut opts: RunOptions) -> Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let effective = crate::overrides::apply(&opts.profile, &opts.overrides, &env)
        .map_err(anyhow::Error::msg)?;
    // Workers and agents read the effective profile: written beside the report when the
    // command line changed it.
    let given = opts.profile.clone();
    let (path, profile) = effective_profile(&opts, &effective)?;
    opts.profile = path;
    let identity = crate::identity::Identity::now(&given, effective.text.clone(), profile.seed);
    let name = profile.name.clone().unwrap_or_else(|| "run".into());
    let peak = opts.segment.len(profile.peak_users());
    let fd_limit = identity.machine.open_files;
    // Everything that can be checked is, before anything starts (`loadgen validate`
    // checks the same): files, this machine's room for the users, the metrics port.
    let local = if opts.cluster.is_some() { 0 } else { peak };
    crate::preflight::check(&profile, local, &identity.machine)
        .and_then(|_| crate::preflight::check_ports(&profile))
        .map_err(|e| anyhow::anyhow!("profile {}: {e}", given.display()))?;
    let stats = Arc::new(Mutex::new(Summary::default()));
    let live = Arc::new(Live::default());
    if let Some(addr) = &opts.metrics {
        serve_metrics(addr, &stats, &live, (&profile, &identity)).await?;
    }

    let (mut spawned, gateways, auth_key) = start_target(&opts, &profile, &name, peak).await?;
    let quic_cert = quic_certificate(&profile, &auth_key)?;
    // Loss for TCP users through nftables, where this run can (removed when the users
    // are done, or when this function returns early).
    let mut tcp_loss = crate::tcp_loss::apply(
        &profile.network,
        profile.behaviour.transport.any_tcp(),
        &gateways,
    );
    if let Some(line) = tcp_loss.line() {
        eprintln!("network: {line}");
    }

    let (mut fleet, start_at, origin) = launch(
        &opts,
        &profile,
        peak,
        fd_limit,
        (&gateways, &auth_key, quic_cert.as_deref()),
    )
    .await?;
    let sut_pid = spawned.as_ref().and_then(|s| s.pid());
    let mut watch = Watch::new(&fleet, sut_pid, live, &profile, opts.segment);
    let start = tokio::time::Instant::now()
        + Duration::from_millis((start_at - shellkit::clock::unix_ms()).max(0) as u64);
    let hostile = start_hostile(&profile, opts.segment, &gateways, &auth_key, start)?;
    let mut interrupted = false;
    // The aborting threshold that stopped the run, if one did.
    let mut aborted: Option<String> = None;
    // Faults: control lines for `sut up`, each sent at its time.
    let mut steps = match &spawned {
        Some(s) => crate::faults::plan(&profile.faults, s.manifest.gateways, profile.seed)
            .map_err(|e| anyhow::anyhow!("profile {}: {e}", opts.profile.display()))?,
        None => Vec::new(),
    };
    if spawned.is_some() {
        steps.extend(crate::live_timeline::steps(&profile.timeline_changes));
        steps.extend(profile.pre_push.iter().flat_map(|p| p.steps()));
        steps.sort_by_key(|s| s.at);
    }
    let mut steps = steps.into_iter().peekable();
    // When the show begins, for the pre-push coverage "before the show".
    let show_ms = profile
        .pre_push
        .as_ref()
        .and_then(|_| crate::pre_push::show::show_begins_ms(auth_key.parent()?));
    // Fault events the load generator records itself (the disk's).
    let mut own_events = Vec::new();
    // Workers report on each whole second of the run; ticking half a second later means
    // every tick has seen exactly the reports up to its second, so per-second figures do
    // not alias (a second with two reports and the next with none).
    let mut tick = tokio::time::interval_at(
        start + TICK_LAG + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (report_dir, mut progress) = open_report(&opts, &name, start_at)?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            more = fleet.next_report(&stats) => if !more? { break },
            _ = tick.tick() => {
                let elapsed = start.elapsed().saturating_sub(TICK_LAG);
                if let (Some(s), false) = (&spawned, profile.timeline_changes.is_empty()) {
                    // The gateways' logs are files: read off the run's loop.
                    let (data, gateways) = (s.data.clone(), s.manifest.gateways);
                    let read = move || crate::live_timeline::report(&data, gateways, start_at);
                    if let Ok(changes) = tokio::task::spawn_blocking(read).await {
                        if let Ok(mut t) = watch.live.timeline.lock() {
                            *t = changes;
                        }
                    }
                }
                if let Some(at) = show_ms {
                    crate::pre_push::show::mark_show(&stats, at, shellkit::clock::unix_ms());
                }
                let failed = watch.second(elapsed, &stats, &mut progress, &fleet, &profile.stages, hostile.as_ref());
                if let (Some(why), None) = (failed, &aborted) {
                    eprintln!("aborting: threshold {why} (abort_on_fail): stopping users");
                    fleet.stop();
                    aborted = Some(why);
                }
            }
            _ = tokio::time::sleep_until(start + steps.peek().map_or(Duration::ZERO, |s| s.at)), if steps.peek().is_some() => {
                if let (Some(step), Some(sut)) = (steps.next(), spawned.as_mut()) {
                    eprintln!("fault: {} at {:.1} s", step.action, step.at.as_secs_f64());
                    if let Some((part, event)) = sut.fault(&step.action).await? {
                        own_events.push(crate::faults::own_event(&part, event, start.elapsed()));
                    }
                }
            }
            _ = &mut ctrl_c, if !interrupted => {
                eprintln!("interrupted: stopping users and reporting what was measured");
                fleet.stop();
                interrupted = true;
            }
        }
    }
    let duration = start.elapsed().as_secs_f64();
    let requests_by_worker = fleet.requests_by_worker();
    let cluster = fleet.finish().await?;
    tcp_loss.remove();
    let hostile = match hostile {
        Some(h) => Some(h.stop().await),
        None => None,
    };
    let summary = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // What arrived after the last progress line (the workers' final reports) becomes
    // the series' and the interval log's last interval, so both add up to the summary.
    let elapsed = start.elapsed().saturating_sub(TICK_LAG);
    let _ = progress.line(&summary, elapsed, 0);

    let timeline = spawned.as_ref().map_or_else(Vec::new, |s| {
        crate::live_timeline::report(&s.data, s.manifest.gateways, start_at)
    });
    // The resource servers' own counts, while they still run.
    let servers = match (&spawned, &profile.pre_push) {
        (Some(s), Some(_)) => crate::pre_push::servers::at_end(&s.manifest.metrics).await,
        _ => None,
    };
    let (audit, fault_events) = stop_system(spawned, &profile, start_at, own_events).await?;
    let (audit, promises, limits) = judge_promises(&profile, audit, &summary);
    let hlog_path = match progress.hlog.take() {
        Some(h) => Some(h.finish()?),
        None => None,
    };
    let cost = RunCost {
        limits,
        promises,
        hostile,
        faults: fault_events,
        series: progress.series,
        requests_by_worker,
        resources: watch.tracker.report(),
    };
    let mut report = RunReport::build(
        &name,
        &summary,
        duration,
        peak,
        &profile.thresholds,
        audit,
        cost,
    );
    report.network = crate::network::describe(
        &profile.network,
        &profile.behaviour.transport,
        tcp_loss.line(),
    );
    report.timeline = timeline;
    if let Some(p) = report.pre_push.as_mut() {
        p.servers = servers;
    }
    report.set_origin(origin, cluster);
    report.overrides = effective.notes;
    report.identity = Some(identity);
    report.conclude(aborted, interrupted);
    crate::exit::stamp(&mut report);
    print!("{}", report.table());
    write_outputs(&report, &opts, &report_dir, hlog_path)?;
    Ok(ExitCode::from(report.exit_code))
}

/// The report directory (`--report-dir`, else `reports/NAME`), made if missing.
fn create_report_dir(opts: &RunOptions, name: &str) -> Result<PathBuf> {
    let dir = opts
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(name));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    Ok(dir)
}

/// The effective profile, and where it is: the file itself, or (changed by the command
/// line) `profile.yaml` in the report directory.
fn effective_profile(
    opts: &RunOptions,
    effective: &crate::overrides::Effective,
) -> Result<(PathBuf, Profile)> {
    let profile = effective
        .profile(&opts.profile)
        .map_err(anyhow::Error::msg)?;
    if !effective.changed {
        return Ok((opts.profile.clone(), profile));
    }
    let name = profile.name.clone().unwrap_or_else(|| "run".into());
    let path = create_report_dir(opts, &name)?.join("profile.yaml");
    std::fs::write(&path, &effective.text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, profile))
}

/// Starts the system under test when the profile asks (`target.spawn`); returns it
/// with the gateways' addresses and the account key file.
async fn start_target(
    opts: &RunOptions,
    profile: &Profile,
    name: &str,
    peak: u64,
) -> Result<(Option<spawn::Spawned>, Vec<String>, PathBuf)> {
    Ok(match &profile.target {
        Target::Spawn(t) => {
            if opts.segment != Segment::ALL {
                bail!("--segment {} splits users over machines that share one system; give the profile `target: addresses:` instead of `spawn:`", opts.segment);
            }
            let data = t
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("data").join(name));
            let sut = spawn::sut_binary(opts.sut_bin.clone());
            let hb = (profile.behaviour.heartbeat_interval * 3).max(Duration::from_secs(30));
            eprintln!(
                "starting the system under test ({} gateways, data in {})",
                t.gateways
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| format!("enough for {peak} connections:")),
                data.display()
            );
            let extra = profile
                .pre_push
                .as_ref()
                .map(|p| p.sut_flags())
                .unwrap_or_default();
            let s = spawn::start(t, &data, &sut, (peak, hb), &extra).await?;
            let gateways = s.manifest.gateway_addrs.clone();
            (Some(s), gateways, data.join("auth.key"))
        }
        Target::Addresses(a) => (None, a.gateways.clone(), a.auth_key_file.clone()),
    })
}

/// Serves the run's `/metrics` at `addr` for as long as the process lives.
async fn serve_metrics(
    addr: &str,
    stats: &Arc<Mutex<Summary>>,
    live: &Arc<Live>,
    (profile, identity): (&Profile, &crate::identity::Identity),
) -> Result<()> {
    // Every series carries the run's id: a dashboard filters runs by it.
    let run_label = (
        std::borrow::Cow::Borrowed("run_id"),
        std::borrow::Cow::Owned(identity.run_id.clone()),
    );
    let mut registry = Registry::with_labels(std::iter::once(run_label));
    registry.register_collector(Box::new(SummaryCollector {
        stats: stats.clone(),
        thresholds: profile.thresholds.clone(),
        live: live.clone(),
        run_info: vec![
            ("profile", profile.name.clone().unwrap_or_default()),
            ("version", identity.version.clone()),
            ("commit", identity.commit.clone()),
        ],
    }));
    let bound = shellkit::metrics_http::serve(addr, Arc::new(registry))
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    eprintln!("metrics on http://{bound}/metrics");
    Ok(())
}

/// The hostile users of `segment`, attacking from this process, when the profile has any.
fn start_hostile(
    profile: &Profile,
    segment: Segment,
    gateways: &[String],
    auth_key: &Path,
    start: tokio::time::Instant,
) -> Result<Option<crate::hostile::attacker::Hostile>> {
    if profile.behaviour.hostile.share <= 0.0 {
        return Ok(None);
    }
    let bytes = std::fs::read(auth_key)
        .with_context(|| format!("cannot read the auth key file {}", auth_key.display()))?;
    let key =
        sut_wire::signing::SigningKey::from_file_bytes(&bytes, &auth_key.display().to_string())?;
    Ok(Some(crate::hostile::attacker::Hostile::start(
        profile, segment, gateways, &key, start,
    )))
}

/// The report directory, and the progress line writing its interval log.
fn open_report(opts: &RunOptions, name: &str, start_at: i64) -> Result<(PathBuf, Progress)> {
    let report_dir = create_report_dir(opts, name)?;
    // Interval start times count from the moment the run's seconds count from.
    let run_epoch =
        std::time::UNIX_EPOCH + Duration::from_millis(start_at.max(0) as u64) + TICK_LAG;
    let hlog = HlogWriter::create(
        &report_dir.join("latency.hlog"),
        run_epoch,
        &format!("loadgen run {name}: one interval per operation per second, tagged by operation"),
    )?;
    Ok((report_dir, Progress::new(hlog)))
}

/// Stops a spawned system (queues drain first) and audits it; returns the audit and
/// the faults' events, in order.
async fn stop_system(
    spawned: Option<spawn::Spawned>,
    profile: &Profile,
    start_at: i64,
    own_events: Vec<crate::faults::FaultEvent>,
) -> Result<(
    Option<(AuditReport, BTreeMap<u64, u64>)>,
    Vec<crate::faults::FaultEvent>,
)> {
    let mut fault_events = Vec::new();
    let audit = match spawned {
        Some(s) => {
            if let Target::Spawn(t) = &profile.target {
                tokio::time::sleep(t.settle).await;
            }
            let data = s.data.clone();
            eprintln!("stopping the system under test (queues drain first)");
            // The faults' events, read before the final stop adds its own.
            if !profile.faults.is_empty() {
                let text = std::fs::read_to_string(data.join("events.jsonl")).unwrap_or_default();
                fault_events = crate::faults::events(&text, start_at);
                fault_events.extend(own_events);
                fault_events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
            }
            Some(s.stop_and_audit().await?)
        }
        None => None,
    };
    Ok((audit, fault_events))
}

/// Writes the summary JSON, the HTML report, and says what failed.
fn write_outputs(
    report: &RunReport,
    opts: &RunOptions,
    report_dir: &Path,
    hlog_path: Option<PathBuf>,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(&report)?;
    for path in opts
        .summary_json
        .iter()
        .chain([&report_dir.join("summary.json")])
    {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let html = report_dir.join("report.html");
    std::fs::write(&html, crate::html_report::render(report))
        .with_context(|| format!("cannot write {}", html.display()))?;
    eprintln!(
        "report: {}{}",
        html.display(),
        hlog_path
            .map(|p| format!(", interval log {}", p.display()))
            .unwrap_or_default()
    );
    let breached = report.breached();
    for t in &breached {
        eprintln!(
            "threshold breached: {} (observed {})",
            t.threshold, t.observed
        );
    }
    if !crate::report::audit_passed(report.audit.as_ref(), report.limits.as_ref()) {
        eprintln!(
            "audit failed: the system under test broke an invariant (see its violations above)"
        );
    }
    Ok(())
}

/// What each user was told against what payment credited (with an audit), and how the
/// limits held, by the servers' records and by what the clients received (with an
/// audit, or adversarial or hostile users).
fn judge_promises(
    profile: &Profile,
    audit: Option<(AuditReport, BTreeMap<u64, u64>)>,
    summary: &Summary,
) -> (
    Option<AuditReport>,
    Option<crate::promises::PromiseReport>,
    Option<LimitReport>,
) {
    let promises = audit.as_ref().map(|(_, credits)| {
        crate::promises::check(
            &summary.promises,
            credits,
            summary.repeats_kept,
            summary.repeats_broken,
        )
    });
    let audit = audit.map(|(report, _)| report);
    let limits = (profile.behaviour.adversarial > 0.0
        || profile.behaviour.hostile.share > 0.0
        || audit.is_some())
    .then(|| {
        LimitReport::new(
            profile.seed,
            profile.behaviour.adversarial,
            profile.users,
            audit
                .as_ref()
                .map(|a| a.over_limit.as_slice())
                .unwrap_or(&[]),
            &summary.received_over_limit,
            summary.hops,
            &profile.behaviour.hostile,
        )
    });
    (audit, promises, limits)
}

/// Starts the users: local workers, or (coordinating) the agents once all joined.
/// Returns them with the common start (Unix ms) and where the figures come from.
async fn launch(
    opts: &RunOptions,
    profile: &Profile,
    peak: u64,
    fd_limit: u64,
    (gateways, auth_key, quic_cert): (&[String], &Path, Option<&Path>),
) -> Result<(Generators, i64, Origin)> {
    let name = profile.name.as_deref().unwrap_or("run");
    let duration = profile.duration().as_secs_f64();
    if let Some(c) = &opts.cluster {
        eprintln!(
            "running {name}: {peak} users over {} gateways on {} agents for {duration:.0} s",
            gateways.len(),
            c.agents
        );
        let shipment = Shipment {
            profile_path: &opts.profile,
            profile,
            gateways,
            auth_key,
            quic_cert,
        };
        let (agents, start_at) = crate::cluster::coordinator::gather(c, shipment).await?;
        let origin = Origin {
            segment: Segment::ALL.to_string(),
            start_at_unix_ms: start_at,
            started_after_ms: None,
        };
        return Ok((Generators::Agents(agents), start_at, origin));
    }
    let workers = opts
        .workers
        .unwrap_or_else(|| profile.behaviour.transport.workers_for(peak, fd_limit));
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let start_at = opts
        .start_at
        .unwrap_or_else(|| shellkit::clock::unix_ms() + 500 + 30 * workers as i64);
    // A machine given the common start that reaches it late has users joining
    // mid-ramp: named here and in the summary, which then fails.
    let started_after_ms = opts.start_at.map(|at| shellkit::clock::unix_ms() - at);
    if let Some(ms) = started_after_ms.filter(|ms| *ms > Origin::LATE_AFTER_MS) {
        eprintln!(
            "segment {} starts {:.1} s after --start-at {start_at}: its users join mid-ramp; the run will fail",
            opts.segment,
            ms as f64 / 1000.0
        );
    }
    eprintln!(
        "running {name}: {peak} users (segment {}) over {} gateways in {workers} workers for {duration:.0} s",
        opts.segment,
        gateways.len(),
    );
    let fleet = Fleet::start(
        &opts.profile,
        (opts.segment, opts.segment),
        workers,
        start_at,
        gateways,
        (auth_key, quic_cert),
    )?;
    let origin = Origin {
        segment: opts.segment.to_string(),
        start_at_unix_ms: start_at,
        started_after_ms,
    };
    Ok((
        Generators::Local {
            fleet,
            merge: Merge::default(),
        },
        start_at,
        origin,
    ))
}

/// The certificate QUIC users trust: `target.addresses.quic_cert`, or the one beside the
/// auth key in a spawned system's data directory. `None` when no user goes over QUIC.
fn quic_certificate(profile: &Profile, auth_key: &Path) -> Result<Option<PathBuf>> {
    if !profile.behaviour.transport.any_quic() {
        return Ok(None);
    }
    let cert = match &profile.target {
        Target::Addresses(a) => a.quic_cert.clone().with_context(|| {
            format!(
                "behaviour.transport sends users over QUIC: give target.addresses.quic_cert, the gateways' {} from the system's data directory",
                shellkit::quic::CERT_FILE
            )
        })?,
        Target::Spawn(_) => auth_key.with_file_name(shellkit::quic::CERT_FILE),
    };
    // Checked here, so that a wrong file stops the run before any worker starts.
    shellkit::quic::client_config(&cert, Duration::from_secs(30))
        .with_context(|| format!("QUIC users cannot trust {}", cert.display()))?;
    Ok(Some(cert))
}
