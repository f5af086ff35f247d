//! A distributed run's agents in the summary: who ran which segment, how their clocks
//! stood, what each sent, and what became of it.

use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub index: u64,
    pub name: String,
    pub hostname: String,
    /// Where it connected from.
    pub peer: String,
    pub segment: String,
    pub workers: u64,
    pub cores: u32,
    pub memory_bytes: u64,
    pub open_files: u64,
    /// The agent's clock less the coordinator's (corrected for in its start), ms.
    pub clock_offset_ms: i64,
    pub round_trip_ms: i64,
    /// How long after the common start its workers started (negative: before).
    pub started_after_ms: Option<i64>,
    /// Worker reports and requests it sent, all merged.
    pub reports: u64,
    pub requests: u64,
    /// Bytes it sent the coordinator (reports, usage, mail), encrypted and framed.
    pub bytes: u64,
    /// `finished`, or `lost at T s: why`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The common start, Unix ms (the coordinator's clock).
    pub start_at_unix_ms: i64,
    /// Agents that must finish (`agents: { min: N }`; default: all).
    pub min_agents: u64,
    pub lost: u64,
    /// Share notices relayed from an agent to the agent simulating the friend.
    pub relayed_mail: u64,
    /// The coordinator's CPU from the start to the end: merging, the progress line,
    /// /metrics, the interval log (an upper bound on what merging costs).
    pub coordinator_cpu_s: f64,
    /// From the common start to the end.
    pub seconds: f64,
    pub agents: Vec<AgentReport>,
    /// What makes the run fail: lost agents past the allowance, late starts, workers
    /// that failed on an agent.
    pub problems: Vec<String>,
    pub passed: bool,
}

impl ClusterReport {
    pub fn lines(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "agents: {} ({} lost, at least {} needed), common start {} (Unix ms), {} shares relayed to friends on other agents",
            self.agents.len(),
            self.lost,
            self.min_agents,
            self.start_at_unix_ms,
            self.relayed_mail
        );
        for a in &self.agents {
            let _ = writeln!(
                out,
                "  {:<12} segment {:<5} {:>3} workers  clock {:+} ms (rtt {} ms)  started {}  {} reports, {} requests  {}",
                a.name,
                a.segment,
                a.workers,
                a.clock_offset_ms,
                a.round_trip_ms,
                a.started_after_ms
                    .map(|ms| format!("{:+.2} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "never".into()),
                a.reports,
                a.requests,
                a.state
            );
        }
        let reports: u64 = self.agents.iter().map(|a| a.reports).sum();
        let bytes: u64 = self.agents.iter().map(|a| a.bytes).sum();
        let agent_seconds = self.seconds.max(1e-9) * self.agents.len().max(1) as f64;
        let _ = writeln!(
            out,
            "  coordinator: {reports} reports, {:.1} KiB/s per agent; {:.2} CPU-s in all = {:.1} ms of CPU per agent per second ({:.0} µs per report)",
            bytes as f64 / 1024.0 / agent_seconds,
            self.coordinator_cpu_s,
            self.coordinator_cpu_s * 1000.0 / agent_seconds,
            self.coordinator_cpu_s * 1e6 / reports.max(1) as f64
        );
        for p in &self.problems {
            let _ = writeln!(out, "  FAIL: {p}");
        }
    }
}
