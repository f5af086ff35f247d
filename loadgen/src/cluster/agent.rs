//! `loadgen agent`: one machine's (or pod's) share of a distributed run.
//!
//! The agent joins the coordinator, says what it can hold, receives its segment, the
//! profile and the keys, answers clock probes, and at the common start runs its users
//! in local worker processes exactly as `loadgen run` would. It forwards every worker
//! report untouched (the coordinator merges them) and its own CPU and memory each
//! second. When the coordinator goes away the agent stops its users and exits: it
//! never runs on headless.

use super::batch::Batch;
use super::channel::{self, ChannelError, Receiver, Sender, Token};
use super::messages::{Assignment, Capacity, HostUsage, ToAgent, ToCoordinator};
use crate::fleet::{Event, Fleet};
use crate::profile::Profile;
use crate::resources::Sampler;
use crate::segment::Segment;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub coordinator: String,
    pub token: Token,
    /// How this agent is named in figures [default: the host name].
    pub name: Option<String>,
    /// Local worker processes [default: sized from the open-file limit].
    pub workers: Option<u64>,
    /// How long to keep trying to reach the coordinator.
    pub join_timeout: Duration,
}

/// The files an assignment brings, in a directory of their own removed at the end.
struct WorkDir {
    dir: PathBuf,
    profile: PathBuf,
    auth_key: PathBuf,
    quic_cert: Option<PathBuf>,
}

impl WorkDir {
    fn write(a: &Assignment) -> Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("loadgen-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // Owner-only: the account key signs every user's token.
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(bytes))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        let profile = write(
            &format!("{}.yaml", safe_name(&a.profile_name)),
            a.profile.as_bytes(),
        )?;
        let auth_key = write("auth.key", &a.auth_key)?;
        let quic_cert = a
            .quic_cert
            .as_ref()
            .map(|c| write(shellkit::quic::CERT_FILE, c))
            .transpose()?;
        Ok(WorkDir {
            dir,
            profile,
            auth_key,
            quic_cert,
        })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A profile name as a file name: letters, digits, `-` and `_` only.
fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        "profile".into()
    } else {
        s
    }
}

pub async fn run(opts: AgentOptions) -> Result<ExitCode> {
    let machine = crate::identity::Machine::this();
    let open_files = machine.open_files;
    let stream = reach(&opts.coordinator, opts.join_timeout).await?;
    let (mut tx, rx) = channel::connect(stream, &opts.token)
        .await
        .with_context(|| format!("cannot join the coordinator at {}", opts.coordinator))?;
    let capacity = capacity(opts.name.clone(), machine);
    eprintln!(
        "agent {}: joined the coordinator at {} ({} cores, {:.1} GiB, {} open files)",
        capacity.name,
        opts.coordinator,
        capacity.cores,
        capacity.memory_bytes as f64 / (1u64 << 30) as f64,
        capacity.open_files
    );
    tx.send(&ToCoordinator::Register(capacity)).await?;
    let mut inbox = listen(rx);
    let Some((assignment, files, start_at)) = prepare(&mut tx, &mut inbox).await? else {
        return Ok(ExitCode::FAILURE);
    };
    let (mut fleet, workers) = match start_workers(&opts, &assignment, &files, start_at, open_files)
    {
        Ok(started) => started,
        Err(e) => {
            let _ = tx
                .send(&ToCoordinator::Failed {
                    reason: format!("cannot start its workers: {e:#}"),
                })
                .await;
            return Err(e);
        }
    };
    tx.send(&ToCoordinator::Started {
        workers,
        at_ms: shellkit::clock::unix_ms(),
    })
    .await?;
    let gone = relay(&mut fleet, &mut tx, &mut inbox, workers).await;
    let failures = fleet.wait_failures().await?;
    for f in &failures {
        eprintln!("agent: {f}");
    }
    if let Some(reason) = gone {
        eprintln!("agent: the coordinator is gone ({reason}): stopped the users; exiting");
        return Ok(ExitCode::FAILURE);
    }
    let ok = failures.is_empty();
    tx.send(&ToCoordinator::Finished { failures }).await?;
    // The coordinator closes once it has everyone's last word; not waiting forever.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while inbox.recv().await.is_some_and(|m| m.is_ok()) {}
    })
    .await;
    tx.close().await;
    drop(files);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Starts the local workers on this agent's segment at `start_at` (its own clock).
fn start_workers(
    opts: &AgentOptions,
    assignment: &Assignment,
    files: &WorkDir,
    start_at: i64,
    open_files: u64,
) -> Result<(Fleet, u64)> {
    let profile = Profile::load(&files.profile)?;
    let segment = Segment {
        index: assignment.index,
        count: assignment.agents,
    };
    let peak = segment.len(profile.peak_users());
    // This agent's --workers, else the coordinator's --workers-per-agent, else enough
    // for its share at this machine's open-file limit (TCP users) and per worker (QUIC).
    let workers = opts
        .workers
        .or(assignment.workers)
        .unwrap_or_else(|| profile.behaviour.transport.workers_for(peak, open_files))
        .max(1);
    let late = shellkit::clock::unix_ms() - start_at;
    if late > 0 {
        eprintln!("agent: starting {late} ms after the common start (the coordinator names this)");
    }
    eprintln!(
        "agent: segment {segment}, {peak} users in {workers} workers, start at {start_at} (Unix ms)"
    );
    // Friends anywhere in the run: mail for users elsewhere goes by the coordinator.
    let fleet = Fleet::start(
        &files.profile,
        (segment, Segment::ALL),
        workers,
        start_at,
        &assignment.gateways,
        (&files.auth_key, files.quic_cert.as_deref()),
    )?;
    Ok((fleet, workers))
}

/// Connects to the coordinator, trying again until `timeout` (it may start later).
async fn reach(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("cannot reach the coordinator at {addr} within {timeout:?}: {e}; is `loadgen coordinator` running and listening there?")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The coordinator's messages, read by a task of their own (reading is not safe to
/// cancel halfway, and the relay waits on several things at once).
fn listen(mut rx: Receiver) -> mpsc::Receiver<Result<ToAgent, ChannelError>> {
    let (tx, inbox) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let message = rx.recv::<ToAgent>().await;
            let end = message.is_err();
            if tx.send(message).await.is_err() || end {
                return;
            }
        }
    });
    inbox
}

/// Before the start: the assignment, clock probes, then the start time. `None` when
/// the coordinator called the run off.
async fn prepare(
    tx: &mut Sender,
    inbox: &mut mpsc::Receiver<Result<ToAgent, ChannelError>>,
) -> Result<Option<(Assignment, WorkDir, i64)>> {
    let mut assigned: Option<(Assignment, WorkDir)> = None;
    loop {
        let message = inbox
            .recv()
            .await
            .unwrap_or(Err(ChannelError::Closed))
            .context("the coordinator went away before the start")?;
        match message {
            ToAgent::Assign(a) => match WorkDir::write(&a) {
                Ok(files) => {
                    tx.send(&ToCoordinator::Prepared).await?;
                    assigned = Some((a, files));
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    tx.send(&ToCoordinator::Failed {
                        reason: reason.clone(),
                    })
                    .await?;
                    bail!("cannot take the assignment: {reason}");
                }
            },
            ToAgent::Ping { coordinator_ms } => {
                tx.send(&ToCoordinator::Pong {
                    coordinator_ms,
                    agent_ms: shellkit::clock::unix_ms(),
                })
                .await?
            }
            ToAgent::Start { at_ms } => {
                let (a, files) =
                    assigned.context("the coordinator sent a start before an assignment")?;
                return Ok(Some((a, files, at_ms)));
            }
            ToAgent::Abort { reason } => {
                eprintln!("agent: the coordinator called the run off: {reason}");
                return Ok(None);
            }
            // No share exists before the start.
            ToAgent::Mail(_) => {}
            ToAgent::Stop => {
                eprintln!("agent: the coordinator stopped the run before it started");
                return Ok(None);
            }
        }
    }
}

/// Forwards the workers' reports (merged into one per second, see [`Batch`]) and the
/// agent's usage until the workers are done; stops them when the coordinator says so
/// or goes away (then returns why).
async fn relay(
    fleet: &mut Fleet,
    tx: &mut Sender,
    inbox: &mut mpsc::Receiver<Result<ToAgent, ChannelError>>,
    workers: u64,
) -> Option<String> {
    let mut sampler = Sampler::new(fleet.pids(), None);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut batch = Batch::new(workers);
    let mut gone: Option<String> = None;
    let mut listening = true;
    loop {
        let linger = batch.due();
        let sent = tokio::select! {
            event = fleet.next() => match event {
                Event::Done => {
                    if gone.is_none() {
                        let _ = send_batch(tx, &mut batch, true).await;
                    }
                    return gone;
                }
                event => on_event(event, fleet, tx, &mut batch, gone.is_some()).await,
            },
            _ = tokio::time::sleep_until(linger.unwrap_or_else(tokio::time::Instant::now)), if linger.is_some() && gone.is_none() => {
                send_batch(tx, &mut batch, false).await
            }
            _ = tick.tick(), if gone.is_none() => {
                let s = sampler.sample(Duration::ZERO, 0);
                tx.send(&ToCoordinator::Usage(HostUsage { loadgen: s.loadgen, slab_bytes: s.slab_bytes })).await
            }
            message = inbox.recv(), if listening => on_message(message, fleet, tx).await,
        };
        if let Err(e) = sent {
            listening = false;
            if gone.is_none() {
                fleet.stop();
                gone = Some(e.to_string());
            }
        }
    }
}

/// A worker's report joins the batch (which goes once complete); its mail goes to the
/// worker of each friend here, or to the coordinator for friends elsewhere.
async fn on_event(
    event: Event,
    fleet: &mut Fleet,
    tx: &mut Sender,
    batch: &mut Batch,
    gone: bool,
) -> Result<(), ChannelError> {
    match event {
        Event::Report(_, _) if gone => Ok(()),
        Event::Report(worker, report) => match batch.add(worker, *report) {
            Ok(true) => send_batch(tx, batch, false).await,
            Ok(false) => Ok(()),
            Err(e) => Err(ChannelError::Decode(format!("{e:#}"))),
        },
        Event::Mail(mail) => {
            let elsewhere = fleet.deliver(mail);
            if elsewhere.is_empty() || gone {
                Ok(())
            } else {
                tx.send(&ToCoordinator::Mail(elsewhere)).await
            }
        }
        Event::Done => Ok(()),
    }
}

async fn send_batch(tx: &mut Sender, batch: &mut Batch, last: bool) -> Result<(), ChannelError> {
    let report = batch
        .take(last)
        .map_err(|e| ChannelError::Decode(e.to_string()))?;
    tx.send(&ToCoordinator::Report {
        worker: 0,
        report: Box::new(report),
    })
    .await
}

/// What the coordinator says while the users run.
async fn on_message(
    message: Option<Result<ToAgent, ChannelError>>,
    fleet: &mut Fleet,
    tx: &mut Sender,
) -> Result<(), ChannelError> {
    match message {
        Some(Ok(ToAgent::Stop)) => {
            eprintln!("agent: the coordinator stopped the run");
            fleet.stop();
            Ok(())
        }
        Some(Ok(ToAgent::Ping { coordinator_ms })) => {
            tx.send(&ToCoordinator::Pong {
                coordinator_ms,
                agent_ms: shellkit::clock::unix_ms(),
            })
            .await
        }
        Some(Ok(ToAgent::Mail(mail))) => {
            // The coordinator routes by segment: all of it is for users here.
            drop(fleet.deliver(mail));
            Ok(())
        }
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err(ChannelError::Closed),
    }
}

/// What this machine can hold.
fn capacity(name: Option<String>, machine: crate::identity::Machine) -> Capacity {
    Capacity {
        name: name.unwrap_or_else(|| machine.hostname.clone()),
        hostname: machine.hostname,
        cores: machine.cores,
        memory_bytes: machine.memory_bytes,
        open_files: machine.open_files,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
