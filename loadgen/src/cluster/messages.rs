//! What the coordinator and its agents say to each other (see [`super::channel`]).

use crate::resources::Usage;
use crate::worker::{Mail, WorkerReport};
use serde::{Deserialize, Serialize};

/// What an agent can hold, sent when it joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capacity {
    /// The agent's name (`--name`, else its host name), for figures and failures.
    pub name: String,
    /// The machine's host name: agents on one machine share its kernel figures.
    pub hostname: String,
    pub cores: u32,
    pub memory_bytes: u64,
    /// Open files one process may hold (connections per worker).
    pub open_files: u64,
    /// The agent's `loadgen` version.
    pub version: String,
}

/// The agent's part of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    /// The agent's index among the run's agents: it runs segment `index/agents`.
    pub index: u64,
    pub agents: u64,
    /// The profile's name and text; the agent writes it where its workers read it.
    pub profile_name: String,
    pub profile: String,
    pub gateways: Vec<String>,
    /// The account system's key (users sign their tokens with it).
    pub auth_key: Vec<u8>,
    /// The gateways' QUIC certificate, when users go over QUIC.
    pub quic_cert: Option<Vec<u8>>,
    /// Local worker processes [`None`: sized from the agent's open-file limit].
    pub workers: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToAgent {
    Assign(Assignment),
    /// Clock probe: the coordinator's Unix ms when sent.
    Ping {
        coordinator_ms: i64,
    },
    /// Start the users at this Unix ms of the agent's own clock.
    Start {
        at_ms: i64,
    },
    /// Stop the users now; each worker still sends its last report.
    Stop,
    /// Shares for friends among this agent's users.
    Mail(Vec<Mail>),
    /// The run is off before it started (another agent failed to join, say).
    Abort {
        reason: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToCoordinator {
    Register(Capacity),
    /// The assignment's files are written; the agent waits for its start.
    Prepared,
    Pong {
        coordinator_ms: i64,
        agent_ms: i64,
    },
    /// The workers are running; `at_ms` is when they were started (agent clock).
    Started {
        workers: u64,
        at_ms: i64,
    },
    /// One worker's report, as the worker sent it.
    Report {
        worker: u64,
        report: Box<WorkerReport>,
    },
    /// Shares for friends on other agents, for the coordinator to route.
    Mail(Vec<Mail>),
    /// The agent's own processes, each second.
    Usage(HostUsage),
    /// Every worker has exited; what went wrong, if anything.
    Finished {
        failures: Vec<String>,
    },
    /// The agent cannot take part (its files, its workers).
    Failed {
        reason: String,
    },
}

/// One agent's reading of its own host.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct HostUsage {
    /// The agent and its workers.
    pub loadgen: Usage,
    /// The host kernel's slab (socket memory lives there).
    pub slab_bytes: u64,
}
