//! The coordinator's side of running agents: their reports merged exactly (as local
//! workers' are), their usage, and what becomes of each — finished, late, or lost
//! (disconnected, or silent past the bound). An agent lost is named at once; when
//! fewer agents are left than the profile's `agents.min`, every other agent is told to
//! stop, so the coordinator never waits on one that is gone.

use super::channel::{ChannelError, Receiver, Sender};
use super::messages::{Capacity, HostUsage, ToAgent, ToCoordinator};
use super::report::{AgentReport, ClusterReport};
use crate::merge::Merge;
use crate::profile::Profile;
use crate::segment::Segment;
use crate::stats::Summary;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A start this much after the common start is late: the agent's users joined
/// mid-ramp, and the run is not the one planned.
pub const LATE_AFTER_MS: i64 = 500;

enum Link {
    /// Before the start: the coordinator talks to the agent directly.
    Direct(Sender, Receiver),
    /// Running: messages out go through a writer task.
    Running(mpsc::UnboundedSender<ToAgent>),
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentState {
    Running,
    Finished,
    Lost { reason: String, at_s: f64 },
}

pub struct Agent {
    pub index: u64,
    pub segment: Segment,
    pub capacity: Capacity,
    pub peer: String,
    /// The agent's clock less the coordinator's, ms.
    pub offset_ms: i64,
    pub rtt_ms: i64,
    link: Link,
    state: AgentState,
    workers: u64,
    /// How long after the common start its workers started (coordinator's clock).
    started_after_ms: Option<i64>,
    failures: Vec<String>,
    last_heard: Instant,
    pub usage: Option<HostUsage>,
    /// Bytes received from it since the start.
    bytes: u64,
}

impl Agent {
    pub fn new(
        index: u64,
        agents: u64,
        tx: Sender,
        rx: Receiver,
        capacity: Capacity,
        peer: String,
    ) -> Agent {
        Agent {
            index,
            segment: Segment {
                index,
                count: agents,
            },
            capacity,
            peer,
            offset_ms: 0,
            rtt_ms: 0,
            link: Link::Direct(tx, rx),
            state: AgentState::Running,
            workers: 0,
            started_after_ms: None,
            failures: Vec::new(),
            last_heard: Instant::now(),
            usage: None,
            bytes: 0,
        }
    }

    /// `name (peer)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.capacity.name, self.peer)
    }

    /// Sends directly (before the start).
    pub async fn send(&mut self, message: &ToAgent) -> Result<(), ChannelError> {
        match &mut self.link {
            Link::Direct(tx, _) => tx.send(message).await,
            Link::Running(_) | Link::Closed => Err(ChannelError::Closed),
        }
    }

    /// Receives directly (before the start).
    pub async fn recv_direct(&mut self) -> Result<ToCoordinator, ChannelError> {
        match &mut self.link {
            Link::Direct(_, rx) => rx.recv().await,
            _ => Err(ChannelError::Closed),
        }
    }

    fn tell(&self, message: ToAgent) {
        if let Link::Running(out) = &self.link {
            let _ = out.send(message);
        }
    }
}

/// (agent, message, bytes read from it so far).
type Inbox = mpsc::Receiver<(u64, Result<ToCoordinator, ChannelError>, u64)>;

pub struct Agents {
    agents: Vec<Agent>,
    inbox: Inbox,
    merge: Merge,
    /// Agents that must finish for the run to count.
    min: u64,
    silence: Duration,
    start_at: i64,
    started: Instant,
    check: tokio::time::Interval,
    /// Why the run was stopped early, when it was.
    stopped_because: Option<String>,
    /// Share notices passed from one agent to another.
    relayed: u64,
    /// This process's CPU time when the agents started.
    cpu_at_start: f64,
}

impl Agents {
    /// The agents, started at `start_at` (Unix ms); one silent for `silence` is lost.
    pub fn new(
        mut agents: Vec<Agent>,
        silence: Duration,
        profile: &Profile,
        start_at: i64,
    ) -> Agents {
        let (tx, inbox) = mpsc::channel(1024);
        for a in &mut agents {
            let Link::Direct(mut out, mut rx) = std::mem::replace(&mut a.link, Link::Closed) else {
                continue;
            };
            let (queue, mut outbox) = mpsc::unbounded_channel::<ToAgent>();
            tokio::spawn(async move {
                while let Some(m) = outbox.recv().await {
                    if out.send(&m).await.is_err() {
                        return;
                    }
                }
                out.close().await;
            });
            let (tx, index) = (tx.clone(), a.index);
            tokio::spawn(async move {
                loop {
                    let m = rx.recv::<ToCoordinator>().await;
                    let end = m.is_err();
                    if tx.send((index, m, rx.bytes)).await.is_err() || end {
                        return;
                    }
                }
            });
            a.link = Link::Running(queue);
            a.last_heard = Instant::now();
        }
        let count = agents.len() as u64;
        let min = profile
            .agents
            .as_ref()
            .map(|s| s.min)
            .unwrap_or(count)
            .min(count);
        let wait = Duration::from_millis((start_at - shellkit::clock::unix_ms()).max(0) as u64);
        Agents {
            agents,
            inbox,
            merge: Merge::default(),
            min,
            silence,
            start_at,
            started: Instant::now() + wait,
            check: tokio::time::interval(Duration::from_secs(1)),
            stopped_because: None,
            relayed: 0,
            cpu_at_start: crate::resources::own_cpu_s(),
        }
    }

    /// Waits for the next report and merges it into `total`; `false` once no agent is
    /// running.
    pub async fn next_report(&mut self, total: &Mutex<Summary>) -> anyhow::Result<bool> {
        loop {
            if self.agents.iter().all(|a| a.state != AgentState::Running) {
                return Ok(false);
            }
            tokio::select! {
                Some((i, message, bytes)) = self.inbox.recv() => {
                    if let Some(a) = self.agents.get_mut(i as usize) {
                        a.bytes = bytes;
                    }
                    if let Some(true) = self.take(i, message, total)? {
                        return Ok(true);
                    }
                }
                _ = self.check.tick() => self.find_silent(total),
            }
        }
    }

    /// Handles one message; `Some(true)` when it was a report.
    fn take(
        &mut self,
        i: u64,
        message: Result<ToCoordinator, ChannelError>,
        total: &Mutex<Summary>,
    ) -> anyhow::Result<Option<bool>> {
        let Some(a) = self.agents.get_mut(i as usize) else {
            return Ok(None);
        };
        if a.state != AgentState::Running {
            return Ok(None);
        }
        a.last_heard = Instant::now();
        match message {
            Ok(ToCoordinator::Report { worker, report }) => {
                self.merge.add((i, worker), *report, total)?;
                return Ok(Some(true));
            }
            Ok(ToCoordinator::Usage(u)) => a.usage = Some(u),
            Ok(ToCoordinator::Mail(mail)) => self.route(mail),
            Ok(ToCoordinator::Started { workers, at_ms }) => {
                a.workers = workers;
                let after = at_ms - a.offset_ms - self.start_at;
                a.started_after_ms = Some(after);
                if after > LATE_AFTER_MS {
                    eprintln!(
                        "agent {} started its workers {:.1} s after the common start: its users joined mid-ramp (the run will fail)",
                        a.describe(),
                        after as f64 / 1000.0
                    );
                }
            }
            Ok(ToCoordinator::Finished { failures }) => {
                a.failures = failures;
                a.state = AgentState::Finished;
                if let Link::Running(_) = a.link {
                    a.link = Link::Closed;
                }
            }
            Ok(ToCoordinator::Failed { reason }) => self.lose(i, reason, total),
            Ok(_) => {}
            Err(ChannelError::Closed) => self.lose(i, "disconnected".into(), total),
            Err(e) => self.lose(i, format!("its connection failed: {e}"), total),
        }
        Ok(None)
    }

    /// Sends each share's notice to the agent whose segment holds the friend; mail
    /// for a lost agent's users is dropped (nobody simulates them any more).
    fn route(&mut self, mail: Vec<crate::worker::Mail>) {
        let n = self.agents.len() as u64;
        let mut by_agent: Vec<Vec<crate::worker::Mail>> = vec![Vec::new(); n as usize];
        for m in mail {
            by_agent[(m.friend % n) as usize].push(m);
            self.relayed += 1;
        }
        for (a, batch) in self.agents.iter().zip(by_agent) {
            if !batch.is_empty() && a.state == AgentState::Running {
                a.tell(ToAgent::Mail(batch));
            }
        }
    }

    fn find_silent(&mut self, total: &Mutex<Summary>) {
        let now = Instant::now();
        if now < self.started {
            return;
        }
        let silent: Vec<u64> = self
            .agents
            .iter()
            .filter(|a| a.state == AgentState::Running)
            .filter(|a| now.duration_since(a.last_heard.max(self.started)) > self.silence)
            .map(|a| a.index)
            .collect();
        for i in silent {
            let reason = format!("sent nothing for {:.0} s", self.silence.as_secs_f64());
            self.lose(i, reason, total);
        }
    }

    fn lose(&mut self, i: u64, reason: String, total: &Mutex<Summary>) {
        let at_s = self.started.elapsed().as_secs_f64();
        let (reports, requests) = self.merge.agent_totals(i);
        self.merge.lose_agent(i, total);
        let Some(a) = self.agents.get_mut(i as usize) else {
            return;
        };
        eprintln!(
            "agent {} (segment {}) lost at {at_s:.1} s: {reason}; it had sent {reports} reports ({requests} requests), which stay counted",
            a.describe(),
            a.segment
        );
        a.state = AgentState::Lost { reason, at_s };
        // Closing its queue closes the connection: if it still runs, it stops.
        a.link = Link::Closed;
        let left = self
            .agents
            .iter()
            .filter(|a| !matches!(a.state, AgentState::Lost { .. }))
            .count() as u64;
        if left < self.min && self.stopped_because.is_none() {
            let why = format!(
                "{left} agents left, fewer than the {} the run needs (`agents: {{ min: {} }}`)",
                self.min, self.min
            );
            eprintln!("{why}: stopping the others");
            self.stopped_because = Some(why);
            self.stop();
        }
    }

    /// Tells every running agent to stop its users (each still sends its last reports).
    pub fn stop(&mut self) {
        for a in &self.agents {
            if a.state == AgentState::Running {
                a.tell(ToAgent::Stop);
            }
        }
    }

    /// What the progress line adds: agents running, and who was lost.
    pub fn progress(&self) -> String {
        let running = self
            .agents
            .iter()
            .filter(|a| a.state == AgentState::Running)
            .count();
        let lost: Vec<&str> = self
            .agents
            .iter()
            .filter(|a| matches!(a.state, AgentState::Lost { .. }))
            .map(|a| a.capacity.name.as_str())
            .collect();
        let mut s = format!(" | agents {running}/{}", self.agents.len());
        if !lost.is_empty() {
            s += &format!(" (lost: {})", lost.join(", "));
        }
        s
    }

    /// Each agent: name, segment, and whether it still counts (not lost).
    pub fn states(&self) -> Vec<(String, String, bool)> {
        self.agents
            .iter()
            .map(|a| {
                let up = !matches!(a.state, AgentState::Lost { .. });
                (a.capacity.name.clone(), a.segment.to_string(), up)
            })
            .collect()
    }

    /// The agents' latest readings of their own processes, with their host names.
    pub fn usage(&self) -> Vec<(&str, HostUsage)> {
        self.agents
            .iter()
            .filter_map(|a| Some((a.capacity.hostname.as_str(), a.usage?)))
            .collect()
    }

    pub fn requests_by_worker(&self) -> Vec<u64> {
        self.merge.requests_by_worker()
    }

    /// The run's agents, for the summary; closes every connection.
    pub fn finish(mut self) -> ClusterReport {
        let mut problems: Vec<String> = self.stopped_because.take().into_iter().collect();
        let mut agents = Vec::new();
        for a in &mut self.agents {
            a.link = Link::Closed;
            let (reports, requests) = self.merge.agent_totals(a.index);
            let late = a.started_after_ms.filter(|ms| *ms > LATE_AFTER_MS);
            if let Some(ms) = late {
                problems.push(format!(
                    "agent {} started {:.1} s after the common start",
                    a.capacity.name,
                    ms as f64 / 1000.0
                ));
            }
            for f in &a.failures {
                problems.push(format!("agent {}: {f}", a.capacity.name));
            }
            let state = match &a.state {
                AgentState::Lost { reason, at_s } => format!("lost at {at_s:.1} s: {reason}"),
                AgentState::Finished => "finished".into(),
                AgentState::Running => "still running at the end".into(),
            };
            agents.push(AgentReport {
                index: a.index,
                name: a.capacity.name.clone(),
                hostname: a.capacity.hostname.clone(),
                peer: a.peer.clone(),
                segment: a.segment.to_string(),
                workers: a.workers,
                cores: a.capacity.cores,
                memory_bytes: a.capacity.memory_bytes,
                open_files: a.capacity.open_files,
                clock_offset_ms: a.offset_ms,
                round_trip_ms: a.rtt_ms,
                started_after_ms: a.started_after_ms,
                reports,
                requests,
                bytes: a.bytes,
                state,
            });
        }
        let lost = agents
            .iter()
            .filter(|a| a.state.starts_with("lost"))
            .count() as u64;
        ClusterReport {
            start_at_unix_ms: self.start_at,
            min_agents: self.min,
            lost,
            relayed_mail: self.relayed,
            coordinator_cpu_s: crate::resources::own_cpu_s() - self.cpu_at_start,
            seconds: self.started.elapsed().as_secs_f64(),
            passed: problems.is_empty(),
            problems,
            agents,
        }
    }
}
