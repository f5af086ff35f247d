//! `sut up`: the whole system under test as separate processes on one machine.
//!
//! Starts payment, then the envelope backend, then the gateways, waits until each
//! listens, writes the run manifest and a Prometheus file_sd targets file, and on
//! Ctrl-C/SIGTERM stops them front to back (gateways first, so their queues drain into
//! a backend that is still up, then the backend, then payment).

use super::supervisor::Supervisor;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use sut_wire::manifest::Manifest;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// How many gateway processes [default: 2, or what --connections needs].
    #[arg(long, conflicts_with = "connections")]
    gateways: Option<u16>,
    /// Size the gateway fleet to hold this many client connections: each gateway is
    /// filled to 90 % of what its open-file limit allows.
    #[arg(long)]
    connections: Option<u64>,
    /// Data directory for every part's durable state.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Timeline of rounds.
    #[arg(long, default_value = "profiles/timeline.yaml")]
    timeline: PathBuf,
    /// Seed for envelope generation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First port: payment BASE, envelope BASE+1, gateway i BASE+10+i; metrics at +1000.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Time from start-up to the show's start (round offsets count from there).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    countdown: Duration,
    /// Wipe the data directory first.
    #[arg(long)]
    fresh: bool,
    #[command(flatten)]
    gateway: super::GatewayTuning,
    #[command(flatten)]
    payment: super::PaymentFaultArgs,
    #[command(flatten)]
    split: super::SplitArgs,
}

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    let gateways = match (args.gateways, args.connections) {
        (Some(0), _) => bail!("--gateways must be at least 1"),
        (Some(n), _) => n,
        (None, Some(c)) => {
            let limit = shellkit::open_files::raise_to_hard_limit();
            let n = shellkit::open_files::processes_for(c, limit, 0.9);
            u16::try_from(n).ok().filter(|n| *n <= 5000).with_context(|| {
                format!("--connections {c} needs {n} gateways at {limit} open files each; that is more than 5000")
            })?
        }
        (None, None) => 2,
    };
    run_fleet(args, gateways).await
}

/// Runs the system with its fleet size decided.
async fn run_fleet(args: UpArgs, gateways: u16) -> Result<ExitCode> {
    if args.base_port as u32 + 1010 + gateways as u32 > u16::MAX as u32 {
        bail!("--base-port {} leaves no room for {} gateways and their metrics ports; choose a lower base", args.base_port, gateways);
    }
    let data = &args.data;
    if args.fresh && data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("cannot wipe {}", data.display()))?;
    }
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let timeline = sut::files::load_timeline(&args.timeline)?;
    let previous = sut::files::load_manifest(data).ok();
    if let Some(p) = &previous {
        if p.gateways != gateways || p.timeline != timeline || p.seed != args.seed {
            bail!(
                "{} holds a run with {} gateways and another timeline or seed; use --fresh to wipe it or --data for another directory",
                data.display(),
                p.gateways
            );
        }
    }
    super::keys(data)?;
    std::fs::write(data.join("timeline.yaml"), timeline.to_yaml())
        .context("cannot write the timeline copy")?;
    let seeds = data.join("seeds");
    if previous.is_none() {
        let n = sut::seeds::write_all(&timeline, gateways, args.seed, &seeds)?;
        println!("seeded {n} shards in {}", seeds.display());
    }
    // A restarted system keeps its show clock: rounds do not start over.
    let show_start_ms = previous
        .as_ref()
        .map(|p| p.show_start_ms)
        .unwrap_or_else(|| shellkit::clock::unix_ms() + args.countdown.as_millis() as i64);

    let host = &args.host;
    let addr = |port: u16| format!("{host}:{port}");
    let base = args.base_port;
    let payment_addr = addr(base);
    let envelope_addr = addr(base + 1);
    let gateway_addrs: Vec<String> = (0..gateways).map(|i| addr(base + 10 + i)).collect();
    let mut metrics = vec![
        ("payment".to_string(), addr(base + 1000)),
        ("envelope".to_string(), addr(base + 1001)),
    ];
    for i in 0..gateways {
        metrics.push((format!("gateway-{i}"), addr(base + 1010 + i)));
    }

    // Every address must be free: a part that cannot bind would exit while a stranger
    // on its port answered in its place, and the run would drive another system.
    let mut taken = Vec::new();
    for a in [&payment_addr, &envelope_addr]
        .into_iter()
        .chain(&gateway_addrs)
        .chain(metrics.iter().map(|(_, m)| m))
    {
        if std::net::TcpListener::bind(a.as_str()).is_err() {
            taken.push(a.clone());
        }
    }
    if !taken.is_empty() {
        bail!(
            "{} already in use (another system under test?); stop it or choose another --base-port",
            taken.join(", ")
        );
    }
    let exe = std::env::current_exe().context("cannot find the sut executable")?;
    let data_arg = data.display().to_string();
    let mut sup = Supervisor::new(exe, data);
    let no_fsync = !sut::store::fsync();
    let owned = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if no_fsync {
            v.push("--no-fsync".into());
        }
        v
    };
    let started = async {
        let show = show_start_ms.to_string();
        let mut payment_args = owned(&[
            "payment",
            "--listen",
            &payment_addr,
            "--metrics",
            &metrics[0].1,
            "--data",
            &data_arg,
            "--show-start-ms",
            &show,
        ]);
        payment_args.extend(args.payment.to_flags());
        sup.launch("payment", &payment_addr, payment_args).await?;
        let mut envelope_args = owned(&[
            "envelope",
            "--listen",
            &envelope_addr,
            "--metrics",
            &metrics[1].1,
            "--data",
            &data_arg,
            "--payment",
            &payment_addr,
            "--show-start-ms",
            &show,
        ]);
        envelope_args.extend(args.split.to_flags());
        sup.launch("envelope", &envelope_addr, envelope_args)
            .await?;
        let gateway_count = gateways.to_string();
        let tuning = args.gateway.to_flags();
        for i in 0..gateways {
            let id = i.to_string();
            let mut gateway_args = owned(&[
                "gateway",
                "--id",
                &id,
                "--gateways",
                &gateway_count,
                "--listen",
                &gateway_addrs[i as usize],
                "--metrics",
                &metrics[2 + i as usize].1,
                "--data",
                &data_arg,
                "--show-start-ms",
                &show,
                "--envelope",
                &envelope_addr,
            ]);
            gateway_args.extend(tuning.iter().cloned());
            sup.launch(
                &format!("gateway-{i}"),
                &gateway_addrs[i as usize],
                gateway_args,
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = started {
        sup.stop_all().await;
        return Err(e);
    }

    let manifest = Manifest {
        gateways,
        seed: args.seed,
        show_start_ms,
        timeline,
        gateway_addrs: gateway_addrs.clone(),
        envelope_addr: envelope_addr.clone(),
        payment_addr: payment_addr.clone(),
        metrics: metrics.clone(),
    };
    write_targets(data, &metrics)?;
    sut::files::save_manifest(&manifest, data)?;
    println!("system under test is up (data in {})", data.display());
    println!("  {:<12} {:<22} metrics", "part", "listens on");
    println!("  {:<12} {:<22} {}", "payment", payment_addr, metrics[0].1);
    println!(
        "  {:<12} {:<22} {}",
        "envelope", envelope_addr, metrics[1].1
    );
    for (i, a) in gateway_addrs.iter().enumerate() {
        println!(
            "  {:<12} {:<22} {}",
            format!("gateway-{i}"),
            a,
            metrics[2 + i].1
        );
    }
    println!(
        "  prometheus file_sd targets: {}",
        data.join("prometheus-targets.json").display()
    );
    let until_show = show_start_ms - shellkit::clock::unix_ms();
    println!(
        "  show starts in {:.1} s; Ctrl-C stops everything cleanly",
        until_show as f64 / 1000.0
    );

    println!("  control: type `kill|stop|start|restart PART` (e.g. `kill gateway-0`) to take a part down or bring it back");

    let mut shutdown = super::shutdown_signal()?;
    let mut control = control_lines();
    let failed = loop {
        tokio::select! {
            _ = shutdown.changed() => break None,
            name = sup.any_exit() => break Some(name),
            Some(line) = control.recv() => println!("{}", sup.command(&line).await),
        }
    };
    sup.stop_all().await;
    match failed {
        None => {
            println!("system under test stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Some(name) => bail!("{name} exited unexpectedly; stopped the rest"),
    }
}

/// Control lines from standard input (none when it is closed or empty). Read on a
/// plain thread of its own: a runtime's blocking pool would keep `sut up` from exiting
/// while the reader still waits on an open pipe.
fn control_lines() -> tokio::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let _ = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if !line.trim().is_empty() && tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    rx
}

fn write_targets(data: &Path, metrics: &[(String, String)]) -> Result<()> {
    let groups: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, addr)| {
            let component = name.split('-').next().unwrap_or(name);
            serde_json::json!({
                "targets": [addr],
                "labels": { "job": "sut", "component": component, "instance_name": name }
            })
        })
        .collect();
    sut::files::write_atomic(
        &data.join("prometheus-targets.json"),
        &serde_json::to_vec_pretty(&groups)?,
    )?;
    Ok(())
}
