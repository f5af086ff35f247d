//! Starting and stopping a local system under test (`sut up`) for a run.

use crate::profile::SpawnTarget;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use sut_core::audit::AuditReport;
use sut_wire::manifest::{self, Manifest};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A running `sut up`.
pub struct Spawned {
    child: Child,
    control: Option<tokio::process::ChildStdin>,
    pub data: PathBuf,
    pub manifest: Manifest,
    pub log: PathBuf,
    sut: PathBuf,
}

/// Finds the `sut` binary: `--sut-bin`, then `$SUT_BIN`, then beside this executable,
/// then `PATH`.
pub fn sut_binary(flag: Option<PathBuf>) -> PathBuf {
    if let Some(p) = flag.or_else(|| std::env::var_os("SUT_BIN").map(PathBuf::from)) {
        return p;
    }
    if let Ok(exe) = std::env::current_exe() {
        let beside = exe.with_file_name("sut");
        if beside.exists() {
            return beside;
        }
        // Test binaries live one level down, in target/<profile>/deps.
        if let Some(up) = exe.parent().and_then(Path::parent) {
            let candidate = up.join("sut");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    PathBuf::from("sut")
}

/// Wipes `data`, starts `sut up` on it and waits for its manifest.
/// `connections` sizes the gateway fleet when the profile does not fix it;
/// `heartbeat_timeout` is how long gateways let a silent client live.
pub async fn start(
    target: &SpawnTarget,
    data: &Path,
    sut: &Path,
    (connections, heartbeat_timeout): (u64, Duration),
    extra: &[String],
) -> Result<Spawned> {
    if crate::disk::is_mounted(data) {
        // A size-limited data directory left from an earlier run.
        crate::disk::unmount(data)?;
    }
    if data.exists() {
        std::fs::remove_dir_all(data)
            .with_context(|| format!("cannot wipe the run's data directory {}", data.display()))?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    if let Some(size) = target.data_bytes().map_err(anyhow::Error::msg)? {
        crate::disk::mount(data, size)?;
    }
    let log_path = data.join("sut.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(sut);
    cmd.arg("up");
    match target.gateways {
        Some(n) => cmd.arg("--gateways").arg(n.to_string()),
        None => cmd.arg("--connections").arg(connections.to_string()),
    };
    if !target.tiers {
        cmd.arg("--no-tiers");
    }
    if !target.strict_limits {
        cmd.arg("--no-strict-limits");
    }
    cmd.arg("--sync-interval")
        .arg(humantime::format_duration(target.sync_interval).to_string());
    cmd.arg("--split-ttl")
        .arg(humantime::format_duration(target.split_ttl).to_string());
    for (flag, d) in [
        ("--hello-timeout", target.hello_timeout),
        ("--frame-timeout", target.frame_timeout),
        ("--write-timeout", target.write_timeout),
    ] {
        cmd.arg(flag).arg(humantime::format_duration(d).to_string());
    }
    cmd.arg("--payment-latency")
        .arg(humantime::format_duration(target.payment.latency).to_string())
        .arg("--payment-failure-rate")
        .arg(target.payment.failure_rate.to_string());
    for o in &target.payment.outages {
        cmd.arg("--payment-outage").arg(o);
    }
    cmd.arg("--shake-cost")
        .arg(humantime::format_duration(target.shake_cost).to_string());
    cmd.arg("--heartbeat-timeout")
        .arg(humantime::format_duration(heartbeat_timeout).to_string())
        .arg("--data")
        .arg(data)
        .arg("--timeline")
        .arg(&target.timeline)
        .arg("--base-port")
        .arg(target.base_port.to_string())
        .arg("--countdown")
        .arg(humantime::format_duration(target.countdown).to_string())
        .args(extra)
        // Control lines (faults) go to `sut up` through its standard input.
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes the kernel stop `sut up` if this
    // load generator dies, so no system under test is left behind.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} (build it with `cargo build --release`, or pass --sut-bin)",
            sut.display()
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let manifest = loop {
        if let Some(m) = read_manifest(data) {
            break m;
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`sut up` exited ({status}) before it was ready:\n{tail}");
        }
        if Instant::now() > deadline {
            bail!(
                "`sut up` was not ready after 60 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let control = child.stdin.take();
    Ok(Spawned {
        child,
        control,
        data: data.to_path_buf(),
        manifest,
        log: log_path,
        sut: sut.to_path_buf(),
    })
}

/// `sut up`'s exit code for a stop that left work queued.
const LEFT_QUEUED: i32 = 3;

/// The file a `disk_full` fault fills the data directory's disk with.
const DISK_FILLER: &str = "disk-full.filler";

/// The pid `sut up` last started `part` with, from its `events.jsonl`.
fn part_pid(data: &Path, part: &str) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("events.jsonl")).ok()?;
    crate::faults::events(&text, 0)
        .into_iter()
        .rev()
        .filter(|e| e.part == part && e.event == "started")
        .find_map(|e| e.pid)
        .map(|p| p as i32)
}

/// The manifest `sut up` writes once every part listens; `None` until it is there whole.
fn read_manifest(data: &Path) -> Option<Manifest> {
    let path = manifest::path(data);
    let text = std::fs::read_to_string(&path).ok()?;
    Manifest::parse(&text, &path).ok()
}

impl Spawned {
    /// The `sut up` process (its parts are its children).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Carries out one fault step; the (part, event) to record for a disk or channel
    /// step (`sut up` records its parts' own).
    pub async fn fault(
        &mut self,
        action: &crate::faults::Action,
    ) -> Result<Option<(String, &'static str)>> {
        use crate::faults::Action;
        match action {
            Action::Control(line) => {
                self.control(line).await?;
                let words: Vec<&str> = line.split_whitespace().collect();
                Ok(match words.as_slice() {
                    ["channel", name, "down"] => Some((format!("channel-{name}"), "cut")),
                    ["channel", name, "up"] => Some((format!("channel-{name}"), "restored")),
                    _ => None,
                })
            }
            Action::Crash(part) => {
                let pid = part_pid(&self.data, part).with_context(|| {
                    format!(
                        "no running {part} in {}",
                        self.data.join("events.jsonl").display()
                    )
                })?;
                kill(Pid::from_raw(pid), Signal::SIGKILL)
                    .with_context(|| format!("cannot kill {part} (pid {pid})"))?;
                Ok(None)
            }
            Action::FillDisk => {
                let filler = self.data.join(DISK_FILLER);
                let took =
                    tokio::task::spawn_blocking(move || crate::disk::fill(&filler)).await??;
                eprintln!(
                    "fault: the data directory's disk is full ({} taken)",
                    bytesize::ByteSize(took)
                );
                Ok(Some(("data".into(), "disk_full")))
            }
            Action::FreeDisk => {
                let filler = self.data.join(DISK_FILLER);
                std::fs::remove_file(&filler)
                    .with_context(|| format!("cannot remove {}", filler.display()))?;
                Ok(Some(("data".into(), "disk_freed")))
            }
        }
    }

    /// Stops the system cleanly (SIGTERM: gateways drain, then the rest) and waits.
    /// Sends one control line (`kill gateway-0`, `start payment`...) to `sut up`, which
    /// records what it did in the data directory's `events.jsonl`.
    pub async fn control(&mut self, line: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let stdin = self
            .control
            .as_mut()
            .context("`sut up` has no control input")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin
            .flush()
            .await
            .context("cannot reach `sut up`'s control input")
    }

    pub async fn stop(mut self) -> Result<()> {
        self.stop_parts().await
    }

    /// Stops the system (as [`Spawned::stop`]), then audits its records with `sut audit`:
    /// the audit's report, and what payment credited to each user.
    pub async fn stop_and_audit(mut self) -> Result<(AuditReport, BTreeMap<u64, u64>)> {
        self.stop_parts().await?;
        audit(&self.sut, &self.data).await
    }

    async fn stop_parts(&mut self) -> Result<()> {
        // No more control lines: `sut up` sees its input end.
        self.control.take();
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(180), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            // Stopped with work still queued (durable): the audit says how much is
            // pending, and the promises check fails for the users still waiting.
            Ok(Ok(status)) if status.code() == Some(LEFT_QUEUED) => {
                eprintln!(
                    "`sut up` stopped with work still queued (see {}); the audit counts it as pending",
                    self.log.display()
                );
                Ok(())
            }
            Ok(Ok(status)) => bail!("`sut up` ended with {status}; see {}", self.log.display()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("`sut up` did not stop within 180 s; killed it")
            }
        }
    }
}

/// Runs `sut audit --json` on a stopped system's data directory. The audit's exit code
/// says pass or fail; its report says why, so a failed audit is a report, not an error.
/// Payment's credits by user come back beside it (from `--credits-by-user`).
pub async fn audit(sut: &Path, data: &Path) -> Result<(AuditReport, BTreeMap<u64, u64>)> {
    let credits_path = data.join("credits_by_user.csv");
    let out = Command::new(sut)
        .arg("audit")
        .arg("--data")
        .arg(data)
        .arg("--json")
        .arg("--credits-by-user")
        .arg(&credits_path)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {} audit", sut.display()))?;
    let report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`sut audit` could not read the run's records ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let text = std::fs::read_to_string(&credits_path)
        .with_context(|| format!("`sut audit` wrote no {}", credits_path.display()))?;
    let credits = crate::promises::parse_credits(&text, &credits_path)?;
    Ok((report, credits))
}
