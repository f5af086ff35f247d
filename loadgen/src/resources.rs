//! What a run costs the machine, read from /proc: resident memory and CPU time of the
//! load generator's processes and of the system under test's, and the kernel's slab
//! (where socket memory lives). Sampled once a second; the report divides by the
//! connections held to give bytes per connection.

use serde::Serialize;
use std::time::Duration;

/// Linux's USER_HZ: /proc reports CPU time in these ticks on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Memory and CPU of a group of processes at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Usage {
    pub processes: u32,
    /// Proportional set size (see [`read_stat`]), read every few samples.
    pub rss_bytes: u64,
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
}

impl Usage {
    /// Adds another group's figures (an agent's processes, say).
    pub fn add(&mut self, other: &Usage) {
        self.processes += other.processes;
        self.rss_bytes += other.rss_bytes;
        self.cpu_s += other.cpu_s;
    }

    fn add_process(&mut self, pid: u32, with_pss: bool) {
        let read = if with_pss {
            read_stat(pid)
        } else {
            read_proc_stat(pid)
        };
        if let Some((rss, cpu)) = read {
            self.processes += 1;
            self.rss_bytes += rss;
            self.cpu_s += cpu;
        }
    }
}

/// One reading of everything.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Seconds since the run's start.
    pub at_s: f64,
    pub connected: u64,
    pub loadgen: Usage,
    pub gateways: Usage,
    /// The envelope backend and payment.
    pub backend: Usage,
    /// The slab of every host whose figures this sample has (see [`ResourceReport::hosts`]).
    pub slab_bytes: u64,
    /// Whether the system under test's processes were read (it runs here, started by
    /// this run); when not, its figures are unknown, not zero.
    pub system_seen: bool,
}

/// Memory (bytes) and CPU (seconds) of one process. Memory is the proportional set
/// size: pages shared between processes (the executable's code, shared by every worker)
/// are split among them rather than counted once per process, so the sum over a group
/// is what the group really holds.
fn read_stat(pid: u32) -> Option<(u64, f64)> {
    let (rss, cpu) = read_proc_stat(pid)?;
    Some((read_pss(pid).unwrap_or(rss), cpu))
}

fn read_pss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// RSS (bytes) and CPU (seconds) of one process, from /proc/PID/stat.
fn read_proc_stat(pid: u32) -> Option<(u64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers from proc(5), counted from 1 with `state` as field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu = (field(14)? + field(15)?) as f64 / TICKS_PER_SECOND;
    let rss = field(24)? * page_size();
    Some((rss, cpu))
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(4096)
}

fn slab_bytes() -> u64 {
    meminfo_bytes("Slab")
}

/// A field of /proc/meminfo (e.g. `MemTotal`, `Slab`), in bytes; 0 when unreadable.
pub fn meminfo_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The children of `parent` with their command lines.
fn children(parent: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            (pid, cmd)
        })
        .collect()
}

/// CPU time (user + system, seconds) this process has used so far.
pub fn own_cpu_s() -> f64 {
    read_proc_stat(std::process::id()).map_or(0.0, |(_, cpu)| cpu)
}

/// This machine's host name.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// Which processes to read.
pub struct Sampler {
    workers: Vec<u32>,
    /// `sut up`, whose children are the gateways, the backend and payment.
    sut: Option<u32>,
    /// Reading PSS walks a process's page tables, which with a hundred processes costs
    /// a few percent of a core; memory is read every this many samples, CPU every time.
    pss_every: u64,
    samples: u64,
    last_memory: [u64; 3],
}

impl Sampler {
    pub fn new(workers: Vec<u32>, sut: Option<u32>) -> Sampler {
        Sampler {
            workers,
            sut,
            pss_every: 5,
            samples: 0,
            last_memory: [0; 3],
        }
    }

    pub fn sample(&mut self, at: Duration, connected: u64) -> Sample {
        let with_pss = self.samples.is_multiple_of(self.pss_every);
        self.samples += 1;
        let mut s = Sample {
            at_s: at.as_secs_f64(),
            connected,
            slab_bytes: slab_bytes(),
            system_seen: self.sut.is_some(),
            ..Sample::default()
        };
        s.loadgen.add_process(std::process::id(), with_pss);
        for pid in &self.workers {
            s.loadgen.add_process(*pid, with_pss);
        }
        if let Some(up) = self.sut {
            s.backend.add_process(up, with_pss);
            for (pid, cmd) in children(up) {
                if cmd.contains(" gateway ") {
                    s.gateways.add_process(pid, with_pss);
                } else {
                    s.backend.add_process(pid, with_pss);
                }
            }
        }
        if with_pss {
            self.last_memory = [
                s.loadgen.rss_bytes,
                s.gateways.rss_bytes,
                s.backend.rss_bytes,
            ];
        } else {
            [
                s.loadgen.rss_bytes,
                s.gateways.rss_bytes,
                s.backend.rss_bytes,
            ] = self.last_memory;
        }
        s
    }
}

/// The figures a run reports about its cost.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    /// Before any user connected.
    pub before: Sample,
    /// When the most connections were held (the latest such sample).
    pub peak: Sample,
    /// First and last sample of the hold at the peak, for CPU while holding.
    pub hold_from: Sample,
    pub hold_to: Sample,
    /// Connections per second from the start until the peak was first held.
    pub ramp_connections_per_s: f64,
    pub loadgen_bytes_per_connection: f64,
    /// The system's figures: `None` when its processes were not seen (it runs on
    /// another host), never a zero standing in for "unknown".
    pub gateway_bytes_per_connection: Option<f64>,
    /// `None` when the slab shrank over the run (other work on the hosts): unmeasurable.
    pub kernel_bytes_per_connection: Option<f64>,
    /// CPU while holding, in cores (1.0 = one core busy).
    pub loadgen_cpu_cores: f64,
    pub gateway_cpu_cores: Option<f64>,
    pub backend_cpu_cores: Option<f64>,
    /// The hosts whose load generator processes and kernel these figures cover.
    pub hosts: Vec<String>,
}

/// Keeps the samples the report needs.
#[derive(Debug, Default)]
pub struct Tracker {
    before: Option<Sample>,
    peak: Option<Sample>,
    hold_from: Option<Sample>,
    hold_to: Option<Sample>,
    pub peak_rss: Usage,
    /// The hosts the samples cover [default: this one].
    pub hosts: Vec<String>,
}

impl Tracker {
    pub fn before(&mut self, s: Sample) {
        self.before = Some(s);
    }

    /// `target` is what the stages ask for at this moment.
    /// A sample while the stages ask for `target` users. The hold counts from when the
    /// peak target is reached: `reach` connected users (the peak target less the
    /// hostile users, who connect on their own and are not counted as connected).
    pub fn add(&mut self, s: Sample, target: u64, peak_target: u64, reach: u64) {
        if self.peak.is_none_or(|p| s.connected >= p.connected) {
            self.peak = Some(s);
        }
        if target == peak_target && s.connected >= reach && reach > 0 {
            if self.hold_from.is_none() {
                self.hold_from = Some(s);
            }
            self.hold_to = Some(s);
        }
    }

    pub fn report(&self) -> Option<ResourceReport> {
        let before = self.before?;
        let peak = self.peak?;
        let hold_from = self.hold_from.unwrap_or(peak);
        let hold_to = self.hold_to.unwrap_or(peak);
        let per = |bytes: u64, base: u64| {
            if peak.connected == 0 {
                0.0
            } else {
                bytes.saturating_sub(base) as f64 / peak.connected as f64
            }
        };
        let wall = (hold_to.at_s - hold_from.at_s).max(1e-9);
        let cores = |a: Usage, b: Usage| {
            if hold_to.at_s > hold_from.at_s {
                (b.cpu_s - a.cpu_s) / wall
            } else {
                0.0
            }
        };
        let seen = |v: f64| peak.system_seen.then_some(v);
        Some(ResourceReport {
            before,
            peak,
            hold_from,
            hold_to,
            ramp_connections_per_s: hold_from.connected as f64 / hold_from.at_s.max(1e-9),
            // All of the load generator's memory, fixed costs included: its per-user
            // state exists before the user connects, so a delta would hide it.
            loadgen_bytes_per_connection: per(peak.loadgen.rss_bytes, 0),
            gateway_bytes_per_connection: seen(per(
                peak.gateways.rss_bytes,
                before.gateways.rss_bytes,
            )),
            kernel_bytes_per_connection: (peak.slab_bytes >= before.slab_bytes)
                .then(|| per(peak.slab_bytes, before.slab_bytes)),
            loadgen_cpu_cores: cores(hold_from.loadgen, hold_to.loadgen),
            gateway_cpu_cores: seen(cores(hold_from.gateways, hold_to.gateways)),
            backend_cpu_cores: seen(cores(hold_from.backend, hold_to.backend)),
            hosts: if self.hosts.is_empty() {
                vec![this_host()]
            } else {
                self.hosts.clone()
            },
        })
    }
}

impl ResourceReport {
    /// Memory (PSS) every process of the run gained from the first to the last sample
    /// of the hold at the peak, in bytes (negative when it shrank).
    pub fn memory_growth_bytes(&self) -> f64 {
        let total =
            |s: &Sample| (s.loadgen.rss_bytes + s.gateways.rss_bytes + s.backend.rss_bytes) as f64;
        total(&self.hold_to) - total(&self.hold_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        let (rss, cpu) = read_stat(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(cpu >= 0.0);
        assert!(slab_bytes() > 0);
    }

    fn sample(at: f64, connected: u64, gw_rss: u64, gw_cpu: f64) -> Sample {
        Sample {
            at_s: at,
            connected,
            gateways: Usage {
                processes: 2,
                rss_bytes: gw_rss,
                cpu_s: gw_cpu,
            },
            system_seen: true,
            ..Sample::default()
        }
    }

    #[test]
    fn what_was_not_seen_is_unknown_not_zero() {
        let unseen = |at, connected, slab| Sample {
            at_s: at,
            connected,
            slab_bytes: slab,
            ..Sample::default()
        };
        let mut t = Tracker::default();
        t.before(unseen(0.0, 0, 10_000_000));
        t.add(unseen(2.0, 100, 9_000_000), 100, 100, 100);
        let r = t.report().unwrap();
        assert_eq!(r.gateway_bytes_per_connection, None);
        assert_eq!(r.gateway_cpu_cores, None);
        assert_eq!(r.backend_cpu_cores, None);
        // The slab shrank: not a negative figure, no figure.
        assert_eq!(r.kernel_bytes_per_connection, None);
    }

    #[test]
    fn figures_come_from_the_peak_and_the_hold() {
        let mut t = Tracker::default();
        t.before(sample(0.0, 0, 1_000, 0.0));
        t.add(sample(1.0, 50, 60_000, 1.0), 50, 100, 100);
        t.add(sample(2.0, 100, 101_000, 2.0), 100, 100, 100);
        t.add(sample(4.0, 100, 101_000, 2.5), 100, 100, 100);
        t.add(sample(5.0, 40, 50_000, 3.0), 40, 100, 100);
        let r = t.report().unwrap();
        assert_eq!(r.gateway_bytes_per_connection, Some(1_000.0));
        assert!((r.gateway_cpu_cores.unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(r.peak.at_s, 4.0);
    }
}
