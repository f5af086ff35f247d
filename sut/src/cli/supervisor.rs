//! The parts `sut up` runs, as a supervisor keeps them: each part's command line and
//! address, its process while it runs, and the commands that take a part down or bring
//! it back (what a fault-injecting load profile asks for).
//!
//! Commands arrive one per line on `sut up`'s standard input, so a person can type them
//! and a load generator can pipe them:
//!
//! - `kill NAME`: SIGKILL (a crash: no drain, no clean close); the part stays down
//! - `stop NAME`: SIGTERM and wait (a clean stop: a gateway drains its queue first)
//! - `start NAME`: start a part that is down, with its original command line
//! - `restart NAME`: `stop`, then `start`
//! - `pause NAME`: SIGSTOP (a hung part: it holds its connections and answers nothing)
//! - `resume NAME`: SIGCONT
//!
//! NAME is `payment`, `envelope` or `gateway-N`. Every change is appended to
//! `DATA/events.jsonl` (`{"unix_ms", "part", "event", "pid"}`) so that a run can prove
//! which parts went down and came back. A part that exits without being told to has
//! crashed: it is recorded (`crashed`, with its exit status) and started again, at once
//! the first time and after a growing backoff when it keeps crashing; a crash loop
//! (`sut_core::restart`) stops the whole system with the reason.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sut::metrics::{labels, Counters};
use sut_core::restart::{AfterCrash, Crashes, RestartPolicy};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// What a control line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
}

/// Parses one control line: `ACTION NAME`.
pub fn parse_command(line: &str) -> Result<(Action, String), String> {
    let mut words = line.split_whitespace();
    let (Some(action), Some(name), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "`{}`: write ACTION NAME, e.g. `kill gateway-0` (actions: kill, stop, start, restart, pause, resume)",
            line.trim()
        ));
    };
    let action = match action {
        "kill" => Action::Kill,
        "stop" => Action::Stop,
        "start" => Action::Start,
        "restart" => Action::Restart,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        other => {
            return Err(format!(
                "unknown action `{other}`; use kill, stop, start, restart, pause or resume"
            ))
        }
    };
    Ok((action, name.to_string()))
}

pub struct Part {
    pub name: String,
    args: Vec<String>,
    listen: String,
    child: Option<Child>,
    /// The pid it was last started with (an exited child no longer says).
    pid: Option<u32>,
    crashes: Crashes,
}

#[derive(Serialize)]
struct Event<'a> {
    unix_ms: i64,
    part: &'a str,
    event: &'a str,
    pid: Option<u32>,
}

pub struct Supervisor {
    exe: PathBuf,
    events: PathBuf,
    pub parts: Vec<Part>,
    pub metrics: SupervisorMetrics,
}

/// `sut up`'s own metrics: each part's crashes, restarts and whether it runs.
#[derive(Clone, Default)]
pub struct SupervisorMetrics {
    crashes: Counters,
    restarts: Counters,
    up: prometheus_client::metrics::family::Family<Vec<(&'static str, String)>, Gauge>,
}

impl SupervisorMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "sut_supervisor_crashes",
            "Times a part exited without being told to",
            self.crashes.clone(),
        );
        registry.register(
            "sut_supervisor_restarts",
            "Times a crashed part was started again by the supervisor",
            self.restarts.clone(),
        );
        registry.register(
            "sut_supervisor_part_up",
            "1 while the part runs (paused included), 0 while it is down",
            self.up.clone(),
        );
    }

    fn part(&self, name: &str) -> Vec<(&'static str, String)> {
        labels(&[("part", name)])
    }
}

impl Supervisor {
    pub fn new(exe: PathBuf, data: &Path) -> Supervisor {
        Supervisor {
            exe,
            events: data.join("events.jsonl"),
            parts: Vec::new(),
            metrics: SupervisorMetrics::default(),
        }
    }

    fn event(&self, part: &str, event: &str, pid: Option<u32>) {
        let m = &self.metrics;
        let up = match event {
            "started" => Some(1),
            "killed" | "stopped" | "crashed" => Some(0),
            _ => None,
        };
        if let Some(up) = up {
            m.up.get_or_create(&m.part(part)).set(up);
        }
        if event == "crashed" {
            m.crashes.get_or_create(&m.part(part)).inc();
        }
        let line = serde_json::to_string(&Event {
            unix_ms: shellkit::clock::unix_ms(),
            part,
            event,
            pid,
        })
        .unwrap_or_default();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.events)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!(
                "cannot record `{event}` of {part} in {}: {e}",
                self.events.display()
            );
        }
    }

    /// Starts a new part and waits until it listens on `listen`.
    pub async fn launch(&mut self, name: &str, listen: &str, args: Vec<String>) -> Result<()> {
        let m = &self.metrics;
        let _ = m.crashes.get_or_create(&m.part(name));
        let _ = m.restarts.get_or_create(&m.part(name));
        self.parts.push(Part {
            name: name.to_string(),
            args,
            listen: listen.to_string(),
            child: None,
            pid: None,
            crashes: Crashes::default(),
        });
        let i = self.parts.len() - 1;
        self.start(i).await
    }

    async fn start(&mut self, i: usize) -> Result<()> {
        let child = spawn(&self.exe, &self.parts[i].name, &self.parts[i].args)?;
        let pid = child.id();
        self.parts[i].child = Some(child);
        self.parts[i].pid = pid;
        self.wait_listening(i).await?;
        self.event(&self.parts[i].name, "started", pid);
        Ok(())
    }

    async fn wait_listening(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = self.parts[i].listen.clone();
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Ok(());
            }
            for p in self.parts.iter_mut() {
                if let Some(Ok(Some(status))) = p.child.as_mut().map(|c| c.try_wait()) {
                    bail!("{} exited ({status}) before {addr} listened", p.name);
                }
            }
            if Instant::now() > deadline {
                bail!("nothing listens on {addr} after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Carries out one control line; the answer to print.
    pub async fn command(&mut self, line: &str) -> String {
        let (action, name) = match parse_command(line) {
            Ok(c) => c,
            Err(e) => return format!("control: {e}"),
        };
        let Some(i) = self.parts.iter().position(|p| p.name == name) else {
            let names: Vec<&str> = self.parts.iter().map(|p| p.name.as_str()).collect();
            return format!("control: no part `{name}`; parts: {}", names.join(", "));
        };
        let up = self.parts[i].child.is_some();
        let result = match action {
            Action::Kill | Action::Stop | Action::Pause | Action::Resume if !up => {
                Err(anyhow::anyhow!("{name} is down"))
            }
            Action::Pause => Ok(self.signal(i, Signal::SIGSTOP, "paused")),
            Action::Resume => Ok(self.signal(i, Signal::SIGCONT, "resumed")),
            Action::Start if up => Err(anyhow::anyhow!("{name} is already running")),
            Action::Kill => {
                self.kill(i).await;
                Ok("killed")
            }
            Action::Stop => {
                let left = self.stop(i).await;
                Ok(if left {
                    "stopped (work left queued)"
                } else {
                    "stopped"
                })
            }
            Action::Start => self.start(i).await.map(|_| "started"),
            Action::Restart => {
                if up {
                    let _ = self.stop(i).await;
                }
                self.start(i).await.map(|_| "restarted")
            }
        };
        match result {
            Ok(done) => format!("control: {done} {name}"),
            Err(e) => format!("control: {line}: {e:#}"),
        }
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.parts[i].child.take() {
            let pid = child.id();
            let _ = child.kill().await;
            self.event(&self.parts[i].name, "killed", pid);
        }
    }

    /// Sends a running part `signal` and records `event`.
    fn signal(&self, i: usize, signal: Signal, event: &'static str) -> &'static str {
        let pid = self.parts[i].child.as_ref().and_then(|c| c.id());
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
        self.event(&self.parts[i].name, event, pid);
        event
    }

    /// Stops a part cleanly; whether it left work queued (its exit code says so).
    async fn stop(&mut self, i: usize) -> bool {
        let Some(mut child) = self.parts[i].child.take() else {
            return false;
        };
        let pid = child.id();
        let status = stop_child(&self.parts[i].name, &mut child).await;
        self.event(&self.parts[i].name, "stopped", pid);
        status.and_then(|s| s.code()) == Some(i32::from(super::LEFT_QUEUED))
    }

    /// The first running part that exited without being told to, recorded as crashed
    /// (it is down now): its index.
    pub async fn any_exit(&mut self) -> usize {
        loop {
            for i in 0..self.parts.len() {
                let exited = match self.parts[i].child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => status,
                    _ => continue,
                };
                self.parts[i].child = None;
                let pid = self.parts[i].pid;
                let name = self.parts[i].name.clone();
                eprintln!("{name} exited unexpectedly ({exited})");
                self.event(&name, "crashed", pid);
                return i;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A part crashed (it is down now): when to start it again, after its backoff; an
    /// error once `policy` calls it a crash loop. The caller keeps serving control
    /// lines and signals meanwhile.
    pub fn crashed(&mut self, i: usize, policy: &RestartPolicy, since: Instant) -> Result<Instant> {
        let name = self.parts[i].name.clone();
        match self.parts[i].crashes.crashed(since.elapsed(), policy) {
            AfterCrash::GiveUp { crashes } => bail!(
                "{name} crashed {crashes} times within {:?}: a crash loop (see its log); stopped everything",
                policy.window
            ),
            AfterCrash::Restart { after } => Ok(Instant::now() + after),
        }
    }

    /// Starts a crashed part again; false if it did not come back (a crash again).
    pub async fn restart(&mut self, i: usize) -> bool {
        if self.parts[i].child.is_some() {
            // Started meanwhile by a control line.
            return true;
        }
        let name = self.parts[i].name.clone();
        match self.start(i).await {
            Ok(()) => {
                let m = &self.metrics;
                m.restarts.get_or_create(&m.part(&name)).inc();
                eprintln!("{name} restarted");
                true
            }
            Err(e) => {
                eprintln!("{name} did not come back: {e:#}");
                if let Some(mut child) = self.parts[i].child.take() {
                    let _ = child.kill().await;
                }
                self.event(&name, "crashed", None);
                false
            }
        }
    }

    /// Stops gateways first (their queues drain into a backend that is still up), then
    /// the backend, then payment. The parts that stopped with work still queued.
    pub async fn stop_all(&mut self) -> Vec<String> {
        let is_gateway = |p: &Part| p.name.starts_with("gateway");
        // Every gateway starts draining at once; then each is waited for in turn.
        for p in self.parts.iter().filter(|p| is_gateway(p)) {
            if let Some(pid) = p.child.as_ref().and_then(|c| c.id()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let gateways = (0..self.parts.len()).filter(|i| is_gateway(&self.parts[*i]));
        let rest = (0..self.parts.len())
            .rev()
            .filter(|i| !is_gateway(&self.parts[*i]));
        let order: Vec<usize> = gateways.chain(rest).collect();
        let mut left = Vec::new();
        for i in order {
            if self.stop(i).await {
                left.push(self.parts[i].name.clone());
            }
        }
        left
    }
}

/// SIGTERM, then up to 40 s for the part to finish draining, then SIGKILL; how it
/// exited, if it did by itself.
async fn stop_child(name: &str, child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        // A paused part must run to stop.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            eprintln!("{name} did not stop within 40 s; killing it");
            let _ = child.kill().await;
            None
        }
    }
}

fn spawn(exe: &Path, name: &str, args: &[String]) -> Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(args).process_group(0).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child
    // if this supervisor dies, so no part outlives `sut up` even after a SIGKILL.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    cmd.spawn().with_context(|| format!("cannot start {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_or_say_what_to_write() {
        assert_eq!(
            parse_command("kill gateway-0\n").unwrap(),
            (Action::Kill, "gateway-0".to_string())
        );
        assert_eq!(parse_command("pause envelope").unwrap().0, Action::Pause);
        assert_eq!(parse_command("resume envelope").unwrap().0, Action::Resume);
        assert_eq!(
            parse_command(" restart payment ").unwrap().0,
            Action::Restart
        );
        assert!(parse_command("kill").unwrap_err().contains("ACTION NAME"));
        assert!(parse_command("nuke envelope")
            .unwrap_err()
            .contains("unknown action"));
        assert!(parse_command("kill a b")
            .unwrap_err()
            .contains("ACTION NAME"));
    }
}
