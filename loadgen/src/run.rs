//! `loadgen run`: one profile, start to verdict.
//!
//! This process is the parent: it starts the system under test when the profile asks,
//! starts the workers (each a segment of the users, see [`crate::worker`]), merges their
//! reports exactly, and alone serves `/metrics`, prints the progress line, stops the
//! system, audits it and prints the summary.

use crate::fleet::Fleet;
use crate::profile::{Profile, Target};
use crate::prom::{Live, SummaryCollector};
use crate::report::{RunCost, RunReport, Second};
use crate::resources::{Sampler, Tracker};
use crate::segment::Segment;
use crate::spawn;
use crate::stages::target_at;
use crate::stats::{Op, Summary};
use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: PathBuf,
    pub metrics: Option<String>,
    pub summary_json: Option<PathBuf>,
    pub sut_bin: Option<PathBuf>,
    /// Local worker processes [default: sized from the open-file limit].
    pub workers: Option<u64>,
    /// Run only this segment of the users (the rest run elsewhere).
    pub segment: Segment,
    /// The common start, Unix ms [default: shortly after the workers are up].
    pub start_at: Option<i64>,
}

pub async fn run(opts: RunOptions) -> Result<ExitCode> {
    let profile = Profile::load(&opts.profile)?;
    let name = profile.name.clone().unwrap_or_else(|| "run".into());
    let peak = opts.segment.len(profile.peak_users());
    let fd_limit = sut::open_files::raise_to_hard_limit();

    let (spawned, gateways, auth_key) = match &profile.target {
        Target::Spawn(t) => {
            if opts.segment != Segment::ALL {
                bail!("--segment {} splits users over machines that share one system; give the profile `target: addresses:` instead of `spawn:`", opts.segment);
            }
            let data = t
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("data").join(&name));
            let sut = spawn::sut_binary(opts.sut_bin.clone());
            let hb = (profile.behaviour.heartbeat_interval * 3).max(Duration::from_secs(30));
            eprintln!(
                "starting the system under test ({} gateways, data in {})",
                t.gateways
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| format!("enough for {peak} connections:")),
                data.display()
            );
            let s = spawn::start(t, &data, &sut, peak, hb).await?;
            let gateways = s.manifest.gateway_addrs.clone();
            (Some(s), gateways, data.join("auth.key"))
        }
        Target::Addresses(a) => (None, a.gateways.clone(), a.auth_key_file.clone()),
    };
    let workers = opts
        .workers
        .unwrap_or_else(|| sut::open_files::processes_for(peak, fd_limit, 0.95));
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let start_at = opts
        .start_at
        .unwrap_or_else(|| sut::gateway::unix_ms() + 500 + 30 * workers as i64);
    eprintln!(
        "running {name}: {peak} users (segment {}) over {} gateways in {workers} workers for {:.0} s",
        opts.segment,
        gateways.len(),
        profile.duration().as_secs_f64()
    );

    let stats = Arc::new(Mutex::new(Summary::default()));
    let live = Arc::new(Live::default());
    if let Some(addr) = &opts.metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SummaryCollector {
            stats: stats.clone(),
            thresholds: profile.thresholds.clone(),
            live: live.clone(),
        }));
        let bound = sut::metrics::serve(addr, Arc::new(registry))
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("metrics on http://{bound}/metrics");
    }

    let mut fleet = Fleet::start(
        &opts.profile,
        opts.segment,
        workers,
        start_at,
        &gateways,
        &auth_key,
    )?;
    let mut sampler = Sampler::new(fleet.pids(), spawned.as_ref().and_then(|s| s.pid()));
    let mut tracker = Tracker::default();
    tracker.before(sampler.sample(Duration::ZERO, 0));
    let peak_target = opts.segment.len(profile.peak_users());
    let start = tokio::time::Instant::now()
        + Duration::from_millis((start_at - sut::gateway::unix_ms()).max(0) as u64);
    let mut interrupted = false;
    // Workers report on each whole second of the run; ticking half a second later means
    // every tick has seen exactly the reports up to its second, so per-second figures do
    // not alias (a second with two reports and the next with none).
    let mut tick =
        tokio::time::interval_at(start + Duration::from_millis(1500), Duration::from_secs(1));
    let mut progress = Progress::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            more = fleet.next_report(&stats) => if !more? { break },
            _ = tick.tick() => {
                let elapsed = start.elapsed().saturating_sub(Duration::from_millis(500));
                let snapshot = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let target = opts.segment.len(target_at(&profile.stages, elapsed));
                eprintln!("{}", progress.line(&snapshot, elapsed, target));
                tracker.add(sampler.sample(elapsed, snapshot.connected), target, peak_target);
                live.target_users.store(target, std::sync::atomic::Ordering::Relaxed);
                *live.resources.lock().unwrap_or_else(|p| p.into_inner()) = tracker.report();
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
    fleet.wait().await?;
    let summary = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();

    let audit = match spawned {
        Some(s) => {
            if let Target::Spawn(t) = &profile.target {
                tokio::time::sleep(t.settle).await;
            }
            let data = s.data.clone();
            eprintln!("stopping the system under test (queues drain first)");
            s.stop().await?;
            Some(sut::audit::run(&data).context("the audit could not read the run's records")?)
        }
        None => None,
    };
    let cost = RunCost {
        series: progress.series,
        requests_by_worker,
        resources: tracker.report(),
    };
    let report = RunReport::build(
        &name,
        &summary,
        duration,
        peak,
        &profile.thresholds,
        audit,
        cost,
    );
    print!("{}", report.table());
    if let Some(path) = &opts.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let breached = report.breached();
    for t in &breached {
        eprintln!(
            "threshold breached: {} (observed {})",
            t.threshold, t.observed
        );
    }
    if report.audit.as_ref().is_some_and(|a| !a.passed()) {
        eprintln!("audit failed: the system under test lost or duplicated something");
    }
    Ok(if report.passed && !interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The live progress line, and the same figures kept second by second for the report:
/// rates are per second since the previous line.
#[derive(Default)]
struct Progress {
    last_shakes: u64,
    last_opens: u64,
    last_errors: u64,
    last_outcomes: BTreeMap<String, u64>,
    last_tiers: BTreeMap<u8, u64>,
    last_shake_hist: Option<hdrhistogram::Histogram<u64>>,
    series: Vec<Second>,
}

impl Progress {
    fn line(&mut self, s: &Summary, elapsed: Duration, target: u64) -> String {
        let shakes = s.count(Op::Shake);
        let opens = s.count(Op::Open);
        let hist = &s.ops[Op::Shake as usize].latency;
        let mut window = hist.clone();
        if let Some(prev) = &self.last_shake_hist {
            let _ = window.subtract(prev);
        }
        let q = |p: f64| {
            if window.is_empty() {
                0.0
            } else {
                window.value_at_quantile(p) as f64 / 1000.0
            }
        };
        let p99 = q(0.99);
        let delta = |now: &BTreeMap<u8, u64>, before: &BTreeMap<u8, u64>| -> BTreeMap<u8, u64> {
            now.iter()
                .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        let outcome_delta = |k: &str| {
            s.outcomes.get(k).copied().unwrap_or(0)
                - self.last_outcomes.get(k).copied().unwrap_or(0)
        };
        self.series.push(Second {
            t_s: elapsed.as_secs_f64(),
            connected: s.connected,
            target,
            shakes: shakes - self.last_shakes,
            come_back_later: outcome_delta("come_back_later"),
            shake_p50_ms: q(0.5),
            shake_p99_ms: p99,
            shake_p999_ms: q(0.999),
            opens: opens - self.last_opens,
            errors: s.errors() - self.last_errors,
            replies_by_tier: delta(&s.tiers, &self.last_tiers),
            clients_by_tier: s.clients_by_tier.clone(),
        });
        self.last_errors = s.errors();
        self.last_outcomes = s.outcomes.clone();
        self.last_tiers = s.tiers.clone();
        let outcome = |k: &str| s.outcomes.get(k).copied().unwrap_or(0);
        let line = format!(
            "[{:>4.0}s] users {}/{} | shakes {}/s (envelope {} greeting {} nothing {}) | shake p99 {:.2}ms | opens {}/s | errors {} | drops {} | tiers {:?}",
            elapsed.as_secs_f64(),
            s.connected,
            target,
            shakes - self.last_shakes,
            outcome("envelope"),
            outcome("greeting"),
            outcome("nothing"),
            p99,
            opens - self.last_opens,
            s.errors(),
            s.drops,
            s.tiers,
        );
        self.last_shakes = shakes;
        self.last_opens = opens;
        self.last_shake_hist = Some(hist.clone());
        line
    }
}
