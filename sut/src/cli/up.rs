//! `sut up`: the whole system under test as separate processes on one machine.
//!
//! Starts payment, then the envelope backend, then the gateways, waits until each
//! listens, writes the run manifest and a Prometheus file_sd targets file, and on
//! Ctrl-C/SIGTERM stops them front to back (gateways first, so their queues drain into
//! a backend that is still up, then the backend, then payment).

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use sut::manifest::{self, Manifest};
use sut::timeline::Timeline;
use tokio::process::{Child, Command};
use tokio::time::Instant;

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
}

struct Part {
    name: String,
    child: Child,
}

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    let gateways = match (args.gateways, args.connections) {
        (Some(0), _) => bail!("--gateways must be at least 1"),
        (Some(n), _) => n,
        (None, Some(c)) => {
            let limit = sut::open_files::raise_to_hard_limit();
            let n = sut::open_files::processes_for(c, limit, 0.9);
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
    let timeline = Timeline::load(&args.timeline)?;
    let previous = Manifest::load(data).ok();
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
    std::fs::write(
        data.join("timeline.yaml"),
        serde_yaml::to_string(&timeline).context("cannot write the timeline copy")?,
    )?;
    let seeds = data.join("seeds");
    if previous.is_none() {
        let n = sut::seed_shard::write_all(&timeline, gateways, args.seed, &seeds)?;
        println!("seeded {n} shards in {}", seeds.display());
    }
    // A restarted system keeps its show clock: rounds do not start over.
    let show_start_ms = previous
        .as_ref()
        .map(|p| p.show_start_ms)
        .unwrap_or_else(|| sut::gateway::unix_ms() + args.countdown.as_millis() as i64);

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

    let exe = std::env::current_exe().context("cannot find the sut executable")?;
    let data_arg = data.display().to_string();
    let mut parts: Vec<Part> = Vec::new();
    let started = async {
        let part = spawn(
            &exe,
            "payment",
            &[
                "payment",
                "--listen",
                &payment_addr,
                "--metrics",
                &metrics[0].1,
                "--data",
                &data_arg,
            ],
        )?;
        parts.push(part);
        wait_listening(&payment_addr, &mut parts).await?;
        let part = spawn(
            &exe,
            "envelope",
            &[
                "envelope",
                "--listen",
                &envelope_addr,
                "--metrics",
                &metrics[1].1,
                "--data",
                &data_arg,
                "--payment",
                &payment_addr,
            ],
        )?;
        parts.push(part);
        wait_listening(&envelope_addr, &mut parts).await?;
        let gateway_count = gateways.to_string();
        let tuning = args.gateway.to_flags();
        let show = show_start_ms.to_string();
        for i in 0..gateways {
            let id = i.to_string();
            let mut gateway_args = vec![
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
            ];
            gateway_args.extend(tuning.iter().map(String::as_str));
            let part = spawn(&exe, &format!("gateway-{i}"), &gateway_args)?;
            parts.push(part);
        }
        for a in &gateway_addrs {
            wait_listening(a, &mut parts).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = started {
        stop_all(&mut parts).await;
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
    manifest.save(data)?;
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
    let until_show = show_start_ms - sut::gateway::unix_ms();
    println!(
        "  show starts in {:.1} s; Ctrl-C stops everything cleanly",
        until_show as f64 / 1000.0
    );

    let mut shutdown = super::shutdown_signal()?;
    let failed = tokio::select! {
        _ = shutdown.changed() => None,
        name = any_exit(&mut parts) => Some(name),
    };
    stop_all(&mut parts).await;
    match failed {
        None => {
            println!("system under test stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Some(name) => bail!("{name} exited unexpectedly; stopped the rest"),
    }
}

fn spawn(exe: &Path, name: &str, args: &[&str]) -> Result<Part> {
    let mut cmd = Command::new(exe);
    cmd.args(args).process_group(0).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child
    // if this supervisor dies, so no part outlives `sut up` even after a SIGKILL.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Part {
        name: name.to_string(),
        child,
    })
}

async fn wait_listening(addr: &str, parts: &mut [Part]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        for p in parts.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("{} exited ({status}) before listening on {addr}", p.name);
            }
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn any_exit(parts: &mut [Part]) -> String {
    loop {
        for p in parts.iter_mut() {
            if let Ok(Some(_)) = p.child.try_wait() {
                return p.name.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops gateways first, then the backend, then payment, each with SIGTERM and a grace.
async fn stop_all(parts: &mut Vec<Part>) {
    let mut gateways: Vec<Part> = Vec::new();
    let mut rest: Vec<Part> = Vec::new();
    for p in parts.drain(..) {
        if p.name.starts_with("gateway") {
            gateways.push(p);
        } else {
            rest.push(p);
        }
    }
    stop_group(&mut gateways).await;
    // rest holds payment then envelope: stop in reverse start order.
    while let Some(p) = rest.pop() {
        stop_group(&mut [p]).await;
    }
}

async fn stop_group(group: &mut [Part]) {
    for p in group.iter() {
        if let Some(pid) = p.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for p in group.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(40), p.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{} did not stop within 40 s; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
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
    manifest::write_atomic(
        &data.join("prometheus-targets.json"),
        &serde_json::to_vec_pretty(&groups)?,
    )?;
    Ok(())
}
