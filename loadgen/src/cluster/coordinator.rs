//! `loadgen coordinator`: gathers the agents before the start.
//!
//! It listens, lets each agent in after the version line and the token's handshake,
//! waits until the profile's agents have all joined (or fails, naming who is missing,
//! after the join timeout), hands each its segment with the profile and keys, probes
//! each agent's clock, and starts every agent at one common moment, given to each in
//! its own clock. From then on [`super::agents::Agents`] runs the agents.

use super::agents::{Agent, Agents};
use super::channel::{self, ChannelError, Receiver, Sender, Token};
use super::messages::{Assignment, Capacity, ToAgent, ToCoordinator};
use crate::profile::Profile;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where agents join, e.g. 0.0.0.0:7700.
    pub listen: String,
    pub agents: u64,
    pub token: Token,
    /// How long to wait for every agent to join.
    pub join_timeout: Duration,
    /// An agent silent this long after the start is lost.
    pub silence: Duration,
    /// Worker processes per agent [default: each agent sizes its own].
    pub workers_per_agent: Option<u64>,
}

/// An agent that has joined and said what it holds.
struct Joined {
    tx: Sender,
    rx: Receiver,
    capacity: Capacity,
    peer: String,
}

/// What the agents are sent besides their segment.
pub struct Shipment<'a> {
    pub profile_path: &'a Path,
    pub profile: &'a Profile,
    pub gateways: &'a [String],
    pub auth_key: &'a Path,
    pub quic_cert: Option<&'a Path>,
}

/// Clock probes per agent; the one with the shortest round trip is kept.
const PROBES: usize = 5;

/// Gathers the agents, assigns their segments and starts them; returns the running
/// agents and the common start (Unix ms, the coordinator's clock).
pub async fn gather(c: &ClusterOptions, ship: Shipment<'_>) -> Result<(Agents, i64)> {
    let listener = TcpListener::bind(&c.listen)
        .await
        .with_context(|| format!("cannot listen for agents on {}", c.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "waiting up to {:.0} s for {} agents on {addr} (`loadgen agent --coordinator {addr} --token-file …`)",
        c.join_timeout.as_secs_f64(),
        c.agents
    );
    let mut joined = join(&listener, c).await?;
    // Later connections are refused from here on (the listener closes).
    drop(listener);
    joined.sort_by(|a, b| a.capacity.name.cmp(&b.capacity.name));
    let mut agents = Vec::new();
    for (i, j) in joined.into_iter().enumerate() {
        agents.push(assign(i as u64, j, c, &ship).await?);
    }
    let mut agents = probe_clocks(agents).await?;
    // Long enough for every start message to arrive and every agent to start its
    // workers (about 30 ms each) before the users' first second.
    let slowest = agents.iter().map(|a| a.rtt_ms).max().unwrap_or(0);
    let workers = c.workers_per_agent.unwrap_or(4) as i64;
    let start_at = shellkit::clock::unix_ms() + 1_500 + 2 * slowest + 40 * workers;
    for a in &mut agents {
        let at_ms = start_at + a.offset_ms;
        a.send(&ToAgent::Start { at_ms })
            .await
            .with_context(|| format!("cannot start agent {}", a.describe()))?;
    }
    for a in &agents {
        eprintln!(
            "agent {}: segment {}, clock offset {:+} ms (round trip {} ms){}",
            a.describe(),
            a.segment,
            a.offset_ms,
            a.rtt_ms,
            if a.offset_ms.abs() > 1_000 {
                " — its clock is off by more than a second; corrected for the start"
            } else {
                ""
            }
        );
    }
    Ok((
        Agents::new(agents, c.silence, ship.profile, start_at),
        start_at,
    ))
}

/// Accepts connections until `c.agents` have joined; each handshake runs on its own, so
/// a slow or hostile connection holds up no one.
async fn join(listener: &TcpListener, c: &ClusterOptions) -> Result<Vec<Joined>> {
    let deadline = tokio::time::Instant::now() + c.join_timeout;
    let (done_tx, mut done) = mpsc::channel::<Result<Joined, (String, ChannelError)>>(16);
    let mut joined: Vec<Joined> = Vec::new();
    while (joined.len() as u64) < c.agents {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (token, done_tx) = (c.token.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let result = handshake(stream, &token).await;
                    let _ = done_tx.send(result.map_err(|e| (peer.to_string(), e)).map(|(tx, rx, capacity)| Joined { tx, rx, capacity, peer: peer.to_string() })).await;
                });
            }
            Some(result) = done.recv() => match result {
                Ok(j) => {
                    if j.capacity.version != env!("CARGO_PKG_VERSION") {
                        eprintln!("agent {} from {} runs loadgen {}, this coordinator {}: refused", j.capacity.name, j.peer, j.capacity.version, env!("CARGO_PKG_VERSION"));
                        continue;
                    }
                    eprintln!(
                        "agent {} joined from {}: {} cores, {:.1} GiB, {} open files per process ({} of {})",
                        j.capacity.name, j.peer, j.capacity.cores,
                        j.capacity.memory_bytes as f64 / (1u64 << 30) as f64,
                        j.capacity.open_files, joined.len() + 1, c.agents
                    );
                    joined.push(j);
                }
                Err((peer, e)) => eprintln!("a connection from {peer} was refused: {e}"),
            },
            _ = tokio::time::sleep_until(deadline) => {
                let names: Vec<String> = joined.iter().map(|j| format!("{} ({})", j.capacity.name, j.peer)).collect();
                for j in &mut joined {
                    let _ = j.tx.send(&ToAgent::Abort { reason: format!("only {} of {} agents joined", names.len(), c.agents) }).await;
                }
                bail!(
                    "only {} of {} agents joined within {:.0} s{}: start the others with `loadgen agent --coordinator ADDRESS --token-file …` (same token), give --agents {}, or a longer --join-timeout",
                    names.len(), c.agents, c.join_timeout.as_secs_f64(),
                    if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) },
                    names.len().max(1)
                );
            }
        }
    }
    Ok(joined)
}

async fn handshake(
    stream: tokio::net::TcpStream,
    token: &Token,
) -> Result<(Sender, Receiver, Capacity), ChannelError> {
    let (tx, mut rx) = channel::accept(stream, token).await?;
    let first = tokio::time::timeout(channel::HANDSHAKE_TIMEOUT, rx.recv::<ToCoordinator>())
        .await
        .map_err(|_| ChannelError::Timeout(channel::HANDSHAKE_TIMEOUT, "its registration"))??;
    match first {
        ToCoordinator::Register(capacity) => Ok((tx, rx, capacity)),
        _ => Err(ChannelError::Decode(
            "the first message was not a registration".into(),
        )),
    }
}

/// Sends agent `index` its segment, the profile and the keys; waits until its files
/// are written.
async fn assign(
    index: u64,
    mut j: Joined,
    c: &ClusterOptions,
    ship: &Shipment<'_>,
) -> Result<Agent> {
    let read = |p: &Path| -> Result<Vec<u8>> {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let assignment = Assignment {
        index,
        agents: c.agents,
        profile_name: ship.profile.name.clone().unwrap_or_else(|| "run".into()),
        profile: std::fs::read_to_string(ship.profile_path)
            .with_context(|| format!("cannot read {}", ship.profile_path.display()))?,
        gateways: ship.gateways.to_vec(),
        auth_key: read(ship.auth_key)?,
        quic_cert: ship.quic_cert.map(read).transpose()?,
        workers: c.workers_per_agent,
    };
    let name = j.capacity.name.clone();
    warn_if_short(index, c.agents, ship.profile, &j.capacity);
    j.tx.send(&ToAgent::Assign(assignment))
        .await
        .with_context(|| format!("cannot send agent {name} its assignment"))?;
    let reply = tokio::time::timeout(Duration::from_secs(30), j.rx.recv::<ToCoordinator>())
        .await
        .with_context(|| format!("agent {name} did not take its assignment within 30 s"))?
        .with_context(|| format!("agent {name} went away before the start"))?;
    match reply {
        ToCoordinator::Prepared => Ok(Agent::new(index, c.agents, j.tx, j.rx, j.capacity, j.peer)),
        ToCoordinator::Failed { reason } => bail!("agent {name} cannot take part: {reason}"),
        other => bail!("agent {name} answered its assignment with {other:?}"),
    }
}

/// Says so when an agent's share of the users looks like more than its memory holds.
fn warn_if_short(index: u64, agents: u64, profile: &Profile, capacity: &Capacity) {
    let segment = crate::segment::Segment {
        index,
        count: agents,
    };
    let users = segment.len(profile.peak_users());
    let per = crate::preflight::loadgen_bytes_per_user(profile);
    let need = users * per;
    if capacity.memory_bytes > 0 && need > capacity.memory_bytes * 9 / 10 {
        eprintln!(
            "agent {}: its {users} users need about {:.1} GiB at {per} B each (docs/scale.md), and it has {:.1} GiB: expect it to run out; add agents",
            capacity.name,
            need as f64 / (1u64 << 30) as f64,
            capacity.memory_bytes as f64 / (1u64 << 30) as f64
        );
    }
}

/// Measures each agent's clock against this one's: offset = agent − coordinator, from
/// the probe with the shortest round trip.
async fn probe_clocks(mut agents: Vec<Agent>) -> Result<Vec<Agent>> {
    for a in &mut agents {
        let mut best: Option<(i64, i64)> = None;
        for _ in 0..PROBES {
            let sent = shellkit::clock::unix_ms();
            a.send(&ToAgent::Ping {
                coordinator_ms: sent,
            })
            .await?;
            let reply = tokio::time::timeout(Duration::from_secs(10), a.recv_direct())
                .await
                .with_context(|| {
                    format!(
                        "agent {} did not answer a clock probe within 10 s",
                        a.describe()
                    )
                })??;
            let back = shellkit::clock::unix_ms();
            if let ToCoordinator::Pong {
                coordinator_ms,
                agent_ms,
            } = reply
            {
                if coordinator_ms == sent {
                    let rtt = back - sent;
                    let offset = agent_ms - (sent + back) / 2;
                    if best.is_none_or(|(r, _)| rtt < r) {
                        best = Some((rtt, offset));
                    }
                }
            }
        }
        let (rtt, offset) =
            best.with_context(|| format!("agent {} answered no clock probe", a.describe()))?;
        a.rtt_ms = rtt;
        a.offset_ms = offset;
    }
    Ok(agents)
}

/// The coordinator's token: from a file, or the environment.
pub fn read_token(file: Option<&PathBuf>) -> Result<Token> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?,
        None => std::env::var("LOADGEN_TOKEN").map_err(|_| {
            anyhow::anyhow!("give the shared token: --token-file FILE or LOADGEN_TOKEN (make one with `head -c 32 /dev/urandom | base64 > token`)")
        })?,
    };
    Ok(Token::new(&text)?)
}
