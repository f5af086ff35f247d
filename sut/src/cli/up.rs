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
use sut_core::restart::RestartPolicy;
use sut_wire::manifest::Manifest;
use sut_wire::timeline::Timeline;

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
    /// A part that exits without being told to is started again, unless it crashed
    /// this many times within --crash-window (a crash loop stops everything).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_crashes: u32,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    crash_window: Duration,
    /// On a stop, gateways and the backend keep forwarding what they queued for at
    /// most this long; what is left stays durable, and `sut up` exits with code 3.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Gateways and the backend start at most one delivery of queued opens (credits) per
    /// this long (0s: unpaced); see `sut gateway --help`.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    deliver_every: Duration,
    #[command(flatten)]
    resources: ResourceArgs,
    #[command(flatten)]
    gateway: super::GatewayTuning,
    #[command(flatten)]
    payment: super::PaymentFaultArgs,
    #[command(flatten)]
    split: super::SplitArgs,
}

/// The pre-push resource servers and the first manifest's items.
#[derive(Debug, clap::Args)]
struct ResourceArgs {
    /// Resource servers (the CDN that pre-pushes sponsors' images); 0: none.
    #[arg(long, default_value_t = 0)]
    resource_servers: u16,
    /// Items in the first resource manifest (the seed's 65); the timeline's greeting
    /// images come first.
    #[arg(long, default_value_t = 65, value_parser = clap::value_parser!(u32).range(1..=1024))]
    resource_items: u32,
    /// Smallest item, in bytes (`8KiB`): sizes spread from here to --resource-max-size.
    #[arg(long, default_value = "8KiB", value_parser = super::sizes::parse_bytes)]
    resource_min_size: u64,
    #[arg(long, default_value = "64KiB", value_parser = super::sizes::parse_bytes)]
    resource_max_size: u64,
    /// Each resource server's bandwidth budget, bytes per second.
    #[arg(long, default_value = "20MiB", value_parser = super::sizes::parse_bytes)]
    resource_bandwidth: u64,
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
    let servers = u32::from(args.resources.resource_servers);
    if gossip_base(args.base_port, gateways) as u32 + gateways as u32 + 3 * servers
        > u16::MAX as u32
    {
        bail!("--base-port {} leaves no room for {} gateways and their metrics ports; choose a lower base", args.base_port, gateways);
    }
    let data = &args.data;
    let (timeline, show_start_ms) = prepare_data(&args, gateways)?;
    let plan = Plan::new(&args, gateways);
    plan.check_free()?;
    let exe = std::env::current_exe().context("cannot find the sut executable")?;
    // Watched from here on: a stop asked for while the parts start is a clean stop too.
    let mut shutdown = super::shutdown_signal()?;
    let mut sup = Supervisor::new(exe, data);
    let mut registry = prometheus_client::registry::Registry::default();
    sup.metrics.register(&mut registry);
    let supervisor_metrics = plan.metrics.last().map(|(_, a)| a.as_str());
    sut::listen::serve_metrics(supervisor_metrics, registry).await?;
    if let Err(e) = launch(&mut sup, &plan, &args, show_start_ms).await {
        sup.stop_all().await;
        return Err(e);
    }
    let manifest = Manifest {
        gateways,
        seed: args.seed,
        show_start_ms,
        timeline,
        gateway_addrs: plan.gateways.clone(),
        envelope_addr: plan.envelope.clone(),
        payment_addr: plan.payment.clone(),
        config_addrs: plan.configs.clone(),
        gossip_addrs: plan.gossip.clone(),
        metrics: plan.metrics.clone(),
        resource_addrs: plan.resources.clone(),
    };
    write_targets(data, &plan.metrics)?;
    sut::files::save_manifest(&manifest, data)?;
    plan.announce(data, show_start_ms);

    let mut control = control_lines();
    let policy = RestartPolicy {
        max_crashes: args.max_crashes,
        window: args.crash_window,
        ..RestartPolicy::default()
    };
    let since = tokio::time::Instant::now();
    // Crashed parts waiting for their backoff: (when to start, part).
    let mut due: Vec<(tokio::time::Instant, usize)> = Vec::new();
    let failed = loop {
        let next = due
            .iter()
            .enumerate()
            .min_by_key(|(_, (at, _))| *at)
            .map(|(k, (at, _))| (k, *at));
        tokio::select! {
            _ = shutdown.changed() => break None,
            i = sup.any_exit() => match sup.crashed(i, &policy, since) {
                Ok(at) => due.push((at, i)),
                Err(e) => break Some(e),
            },
            _ = tokio::time::sleep_until(next.map_or_else(tokio::time::Instant::now, |n| n.1)), if next.is_some() => {
                let Some((k, _)) = next else { continue };
                let (_, i) = due.swap_remove(k);
                if !sup.restart(i).await {
                    match sup.crashed(i, &policy, since) {
                        Ok(at) => due.push((at, i)),
                        Err(e) => break Some(e),
                    }
                }
            }
            Some(line) = control.recv() => match (super::live::parse(&line), super::resources::parse(&line)) {
                (Some(live), _) => {
                    tokio::spawn(super::live::carry_out(live, data.clone(), plan.gossip.clone()));
                }
                (None, Some(r)) => {
                    tokio::spawn(super::resources::carry_out(r, data.clone(), plan.resource_controls.clone()));
                }
                (None, None) => println!("{}", sup.command(&line).await),
            },
        }
    };
    let left = sup.stop_all().await;
    match failed {
        None if left.is_empty() => {
            println!("system under test stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!(
                "system under test stopped with work still queued in {}: kept durably and sent on at the next `sut up` on this data directory, but not done (exit code {})",
                left.join(", "),
                super::LEFT_QUEUED
            );
            Ok(ExitCode::from(super::LEFT_QUEUED))
        }
        Some(e) => Err(e),
    }
}

/// Makes the data directory ready: wiped if asked, keys, a copy of the timeline, seed
/// shards on a first start. A restarted system must be the same run (gateways,
/// timeline, seed) and keeps its show clock, so rounds do not start over. Returns the
/// timeline and the show's start (Unix ms).
fn prepare_data(args: &UpArgs, gateways: u16) -> Result<(Timeline, i64)> {
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
    sut::schedule_files::operator_key(data)?;
    sut::certs::ensure(data, std::slice::from_ref(&args.host))?;
    std::fs::write(data.join("timeline.yaml"), timeline.to_yaml())
        .context("cannot write the timeline copy")?;
    if args.resources.resource_servers > 0 {
        let r = &args.resources;
        let catalogue = sut::pre_push::files::Catalogue {
            items: r.resource_items as usize,
            min_bytes: r.resource_min_size,
            max_bytes: r.resource_max_size.max(r.resource_min_size),
        };
        let key = sut::schedule_files::operator_key(data)?;
        let m = sut::pre_push::files::publish_first(data, &key, &timeline, catalogue)?;
        println!(
            "resource manifest version {}: {} items, {} bytes",
            m.version,
            m.items.len(),
            m.total_bytes()
        );
    }
    let seeds = data.join("seeds");
    if previous.is_none() {
        let n = sut::seeds::write_all(&timeline, gateways, args.seed, &seeds)?;
        println!("seeded {n} shards in {}", seeds.display());
    }
    let show_start_ms = previous
        .as_ref()
        .map(|p| p.show_start_ms)
        .unwrap_or_else(|| shellkit::clock::unix_ms() + args.countdown.as_millis() as i64);
    Ok((timeline, show_start_ms))
}

/// The first gateway's peer (gossip) port: after every metrics port.
fn gossip_base(base: u16, gateways: u16) -> u16 {
    base.saturating_add(1020).saturating_add(gateways)
}

/// What listens where: payment BASE, envelope BASE+1, config services BASE+2 and
/// BASE+3, gateway i BASE+10+i; each part's `/metrics` 1000 above; gateway i's peer
/// port (gossip) after all of those.
struct Plan {
    payment: String,
    envelope: String,
    configs: Vec<String>,
    gateways: Vec<String>,
    gossip: Vec<String>,
    /// Resource servers' HTTP addresses, and their control (RPC) ports by name.
    resources: Vec<String>,
    resource_controls: Vec<(String, String)>,
    /// `/metrics` address of every part, by name: payment, envelope, the gateways, then
    /// `sut up` itself (`supervisor`).
    metrics: Vec<(String, String)>,
}

impl Plan {
    fn new(args: &UpArgs, gateways: u16) -> Plan {
        let host = &args.host;
        let addr = |port: u16| format!("{host}:{port}");
        let base = args.base_port;
        let mut metrics = vec![
            ("payment".to_string(), addr(base + 1000)),
            ("envelope".to_string(), addr(base + 1001)),
        ];
        for i in 0..gateways {
            metrics.push((format!("gateway-{i}"), addr(base + 1010 + i)));
        }
        for i in 0..CONFIG_SERVICES {
            metrics.push((format!("config-{i}"), addr(base + 1003 + i)));
        }
        let gossip = gossip_base(base, gateways);
        // Resource servers after the gossip ports: HTTP, then control, then metrics.
        let servers = args.resources.resource_servers;
        let first = gossip + gateways;
        for i in 0..servers {
            metrics.push((format!("resources-{i}"), addr(first + 2 * servers + i)));
        }
        // `sut up` itself, last: the supervisor's crashes and restarts.
        metrics.push(("supervisor".to_string(), addr(base + 1002)));
        Plan {
            payment: addr(base),
            envelope: addr(base + 1),
            configs: (0..CONFIG_SERVICES).map(|i| addr(base + 2 + i)).collect(),
            gateways: (0..gateways).map(|i| addr(base + 10 + i)).collect(),
            gossip: (0..gateways).map(|i| addr(gossip + i)).collect(),
            resources: (0..servers).map(|i| addr(first + i)).collect(),
            resource_controls: (0..servers)
                .map(|i| (format!("resources-{i}"), addr(first + servers + i)))
                .collect(),
            metrics,
        }
    }

    /// Every address must be free: a part that cannot bind would exit while a stranger
    /// on its port answered in its place, and the run would drive another system.
    fn check_free(&self) -> Result<()> {
        let taken: Vec<&String> = [&self.payment, &self.envelope]
            .into_iter()
            .chain(&self.configs)
            .chain(&self.gateways)
            .chain(&self.gossip)
            .chain(&self.resources)
            .chain(self.resource_controls.iter().map(|(_, a)| a))
            .chain(self.metrics.iter().map(|(_, m)| m))
            .filter(|a| std::net::TcpListener::bind(a.as_str()).is_err())
            .collect();
        if !taken.is_empty() {
            let list: Vec<&str> = taken.iter().map(|a| a.as_str()).collect();
            bail!(
                "{} already in use (another system under test?); stop it or choose another --base-port",
                list.join(", ")
            );
        }
        Ok(())
    }

    fn announce(&self, data: &Path, show_start_ms: i64) {
        println!("system under test is up (data in {})", data.display());
        println!("  {:<12} {:<22} metrics", "part", "listens on");
        let listens = [&self.payment, &self.envelope]
            .into_iter()
            .chain(&self.gateways)
            .chain(&self.configs)
            .chain(&self.resources);
        for ((name, metrics), addr) in self.metrics.iter().zip(listens) {
            println!("  {name:<12} {addr:<22} {metrics}");
        }
        println!(
            "  gateways take QUIC on the same port numbers (UDP); clients trust {}",
            data.join(shellkit::quic::CERT_FILE).display()
        );
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
        if !self.resources.is_empty() {
            println!("  pre-push: type `resources update ID...` (new bytes, next manifest), `resources corrupt|slow|ok NAME ...`");
        }
        println!("  live timeline: type `timeline move 2 +30s` (or budget, rate, cancel, clock, replace, show); `channel push|pull|gossip down|up` cuts or restores a channel at every gateway");
    }
}

/// Config services `sut up` runs: two, so that one down leaves the push channel up.
const CONFIG_SERVICES: u16 = 2;

/// Starts payment, the envelope backend, the config services, then every gateway,
/// each once it listens.
async fn launch(
    sup: &mut Supervisor,
    plan: &Plan,
    args: &UpArgs,
    show_start_ms: i64,
) -> Result<()> {
    let data = args.data.display().to_string();
    let show = show_start_ms.to_string();
    let no_fsync = !sut::store::fsync();
    let part = |name: &str, listen: &str, metrics: &str, more: &[&str]| {
        let mut v: Vec<String> = [name, "--listen", listen, "--metrics", metrics]
            .into_iter()
            .chain(["--data", &data, "--show-start-ms", &show])
            .chain(more.iter().copied())
            .map(String::from)
            .collect();
        if no_fsync {
            v.push("--no-fsync".into());
        }
        v
    };
    let mut payment = part("payment", &plan.payment, &plan.metrics[0].1, &[]);
    payment.extend(args.payment.to_flags());
    sup.launch("payment", &plan.payment, payment).await?;
    let more = ["--payment", plan.payment.as_str()];
    let drain = humantime::format_duration(args.drain_timeout).to_string();
    let pace = humantime::format_duration(args.deliver_every).to_string();
    let mut envelope = part("envelope", &plan.envelope, &plan.metrics[1].1, &more);
    envelope.extend(args.split.to_flags());
    envelope.extend(["--drain-timeout".to_string(), drain.clone()]);
    envelope.extend(["--deliver-every".to_string(), pace.clone()]);
    sup.launch("envelope", &plan.envelope, envelope).await?;
    for (i, listen) in plan.configs.iter().enumerate() {
        let name = format!("config-{i}");
        let metrics = &plan.metrics[2 + plan.gateways.len() + i].1;
        let config = part("config", listen, metrics, &["--name", &name]);
        sup.launch(&name, listen, config).await?;
    }
    let bandwidth = args.resources.resource_bandwidth.to_string();
    for (i, listen) in plan.resources.iter().enumerate() {
        let (name, control) = &plan.resource_controls[i];
        let metrics = &plan.metrics[2 + plan.gateways.len() + plan.configs.len() + i].1;
        let more = [
            "--name",
            name,
            "--control",
            control,
            "--bandwidth",
            &bandwidth,
        ];
        sup.launch(
            name,
            listen,
            part("resource-server", listen, metrics, &more),
        )
        .await?;
    }
    let count = plan.gateways.len().to_string();
    let tuning = args.gateway.to_flags();
    for (i, listen) in plan.gateways.iter().enumerate() {
        let id = i.to_string();
        let more = [
            "--id",
            &id,
            "--gateways",
            &count,
            "--envelope",
            &plan.envelope,
        ];
        let mut gateway = part("gateway", listen, &plan.metrics[2 + i].1, &more);
        gateway.extend(["--gossip".to_string(), plan.gossip[i].clone()]);
        for c in &plan.configs {
            gateway.extend(["--config".to_string(), c.clone()]);
        }
        gateway.extend(tuning.iter().cloned());
        gateway.extend(["--drain-timeout".to_string(), drain.clone()]);
        gateway.extend(["--deliver-every".to_string(), pace.clone()]);
        sup.launch(&format!("gateway-{i}"), listen, gateway).await?;
    }
    Ok(())
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
