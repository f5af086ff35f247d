//! `loadgen run`: one profile, start to verdict.

use crate::profile::{Profile, Target};
use crate::prom::SummaryCollector;
use crate::report::RunReport;
use crate::session::{run_user, RunContext};
use crate::spawn;
use crate::stages::target_at;
use crate::stats::{Op, Summary};
use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sut::signing::SigningKey;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: PathBuf,
    pub metrics: Option<String>,
    pub summary_json: Option<PathBuf>,
    pub sut_bin: Option<PathBuf>,
}

pub async fn run(opts: RunOptions) -> Result<ExitCode> {
    let profile = Profile::load(&opts.profile)?;
    let name = profile.name.clone().unwrap_or_else(|| "run".into());

    let (spawned, gateways, auth) = match &profile.target {
        Target::Spawn(t) => {
            let data = t
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("data").join(&name));
            let sut = spawn::sut_binary(opts.sut_bin.clone());
            eprintln!(
                "starting the system under test ({} gateways, data in {})",
                t.gateways,
                data.display()
            );
            let s = spawn::start(t, &data, &sut).await?;
            let auth = SigningKey::load(&data.join("auth.key"))?;
            let gateways = s.manifest.gateway_addrs.clone();
            (Some(s), gateways, auth)
        }
        Target::Addresses(a) => (
            None,
            a.gateways.clone(),
            SigningKey::load(&a.auth_key_file)?,
        ),
    };
    eprintln!(
        "running {name}: {} users over {} gateways for {:.0} s",
        profile.users,
        gateways.len(),
        profile.duration().as_secs_f64()
    );

    let stats = Arc::new(Mutex::new(Summary::default()));
    if let Some(addr) = &opts.metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SummaryCollector {
            stats: stats.clone(),
        }));
        let bound = sut::metrics::serve(addr, Arc::new(registry))
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("metrics on http://{bound}/metrics");
    }

    let ctx = Arc::new(RunContext {
        profile: profile.clone(),
        gateways,
        auth,
        start: Instant::now(),
        stats: stats.clone(),
    });
    let mut users = JoinSet::new();
    for user in 0..profile.users {
        users.spawn(run_user(ctx.clone(), user));
    }
    let mut interrupted = false;
    let mut tick =
        tokio::time::interval_at(ctx.start + Duration::from_secs(1), Duration::from_secs(1));
    let mut progress = Progress::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            joined = users.join_next() => if joined.is_none() { break },
            _ = tick.tick() => {
                let elapsed = ctx.start.elapsed();
                let snapshot = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
                eprintln!("{}", progress.line(&snapshot, elapsed, target_at(&profile.stages, elapsed)));
            }
            _ = &mut ctrl_c => {
                eprintln!("interrupted: stopping users and reporting what was measured");
                users.abort_all();
                interrupted = true;
            }
        }
    }
    let duration = ctx.start.elapsed().as_secs_f64();
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
    let report = RunReport::build(
        &name,
        &summary,
        duration,
        profile.users,
        &profile.thresholds,
        audit,
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

/// The live progress line: rates are per second since the previous line.
#[derive(Default)]
struct Progress {
    last_shakes: u64,
    last_opens: u64,
    last_shake_hist: Option<hdrhistogram::Histogram<u64>>,
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
        let p99 = if window.is_empty() {
            0.0
        } else {
            window.value_at_quantile(0.99) as f64 / 1000.0
        };
        let line = format!(
            "[{:>4.0}s] users {}/{} | shakes {}/s (envelope {} greeting {} nothing {}) | shake p99 {:.2}ms | opens {}/s | errors {} | drops {} | tiers {:?}",
            elapsed.as_secs_f64(),
            s.connected,
            target,
            shakes - self.last_shakes,
            s.outcomes.get("envelope").copied().unwrap_or(0),
            s.outcomes.get("greeting").copied().unwrap_or(0),
            s.outcomes.get("nothing").copied().unwrap_or(0),
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
