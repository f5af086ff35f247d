//! The parent's side of the workers: start one process per segment part, read their
//! reports off their stdout, merge them exactly, stop them by closing their stdin.

use crate::segment::Segment;
use crate::stats::Summary;
use crate::worker::WorkerReport;
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// One worker's message, or `None` when its stdout closed.
type Message = (usize, Option<Result<WorkerReport>>);

pub struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: mpsc::Receiver<Message>,
    connected: Vec<u64>,
    clients_by_tier: Vec<std::collections::BTreeMap<u8, u64>>,
    /// Each worker's connected users by transport (levels, like `connected`).
    transport_connected: Vec<Vec<u64>>,
    /// Requests (answered or failed) each worker reported, summed over its reports.
    requests: Vec<u64>,
    finished: Vec<bool>,
    open: usize,
    failures: Vec<String>,
}

impl Fleet {
    /// Starts `count` workers, worker `j` on part `j` of `segment`.
    pub fn start(
        profile: &Path,
        segment: Segment,
        count: u64,
        start_at: i64,
        gateways: &[String],
        (auth_key, quic_cert): (&Path, Option<&Path>),
    ) -> Result<Fleet> {
        let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
        let (tx, rx) = mpsc::channel(1024);
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for j in 0..count {
            let part = segment.part(j, count);
            let mut child = Command::new(&exe)
                .arg("run")
                .arg(profile)
                .arg("--worker")
                .arg("--segment")
                .arg(part.to_string())
                .arg("--start-at")
                .arg(start_at.to_string())
                .arg("--gateways")
                .arg(gateways.join(","))
                .arg("--auth-key-file")
                .arg(auth_key)
                .args(quic_cert.iter().flat_map(|c| [Path::new("--quic-cert"), c]))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Ctrl-C reaches the parent only; it stops workers by closing their stdin,
                // so each still sends its last report.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start worker {j} ({})", exe.display()))?;
            let stdout = child.stdout.take().context("worker stdout")?;
            stdins.push(child.stdin.take());
            children.push(child);
            let tx = tx.clone();
            let index = j as usize;
            tokio::spawn(async move {
                let codec = LengthDelimitedCodec::builder()
                    .max_frame_length(64 << 20)
                    .new_codec();
                let mut frames = FramedRead::new(stdout, codec);
                while let Some(frame) = frames.next().await {
                    let report = frame
                        .context("reading a worker report")
                        .and_then(|b| postcard::from_bytes(&b).context("decoding a worker report"));
                    if tx.send((index, Some(report))).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send((index, None)).await;
            });
        }
        let n = count as usize;
        Ok(Fleet {
            children,
            stdins,
            rx,
            connected: vec![0; n],
            clients_by_tier: vec![Default::default(); n],
            transport_connected: vec![Vec::new(); n],
            requests: vec![0; n],
            finished: vec![false; n],
            open: n,
            failures: Vec::new(),
        })
    }

    /// Waits for the next report and merges it into `total`; `false` once every worker
    /// has finished.
    pub async fn next_report(&mut self, total: &Mutex<Summary>) -> Result<bool> {
        if self.open == 0 {
            return Ok(false);
        }
        let Some((j, message)) = self.rx.recv().await else {
            return Ok(false);
        };
        match message {
            Some(Ok(report)) => {
                let mut delta = Summary::from_wire(report.summary)?;
                // Levels are replaced, counts added.
                self.connected[j] = delta.connected;
                self.clients_by_tier[j] = std::mem::take(&mut delta.clients_by_tier);
                self.requests[j] += delta.requests();
                delta.connected = 0;
                self.transport_connected[j] = delta
                    .by_transport
                    .iter_mut()
                    .map(|t| std::mem::take(&mut t.connected))
                    .collect();
                let mut total = total.lock().unwrap_or_else(|p| p.into_inner());
                total.merge(&delta);
                total.connected = self.connected.iter().sum();
                for (k, part) in total.by_transport.iter_mut().enumerate() {
                    part.connected = self
                        .transport_connected
                        .iter()
                        .filter_map(|levels| levels.get(k))
                        .sum();
                }
                total.clients_by_tier.clear();
                for levels in &self.clients_by_tier {
                    for (tier, n) in levels {
                        *total.clients_by_tier.entry(*tier).or_default() += n;
                    }
                }
                if report.last && !self.finished[j] {
                    self.finished[j] = true;
                }
            }
            Some(Err(e)) => self.failures.push(format!("worker {j}: {e:#}")),
            None => {
                if !self.finished[j] {
                    self.failures
                        .push(format!("worker {j} ended without its final report"));
                }
                self.open -= 1;
            }
        }
        Ok(true)
    }

    /// Requests each worker made, for checking that the merge lost nothing.
    pub fn requests_by_worker(&self) -> Vec<u64> {
        self.requests.clone()
    }

    /// The workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// Asks every worker to stop now (each still sends its last report).
    pub fn stop(&mut self) {
        self.stdins.iter_mut().for_each(|s| drop(s.take()));
    }

    /// Waits for the workers to exit; fails if any failed or lost its reports, since the
    /// merged figures would then be incomplete.
    pub async fn wait(mut self) -> Result<()> {
        self.stop();
        for (j, child) in self.children.iter_mut().enumerate() {
            let status = child.wait().await?;
            if !status.success() {
                self.failures
                    .push(format!("worker {j} exited with {status}"));
            }
        }
        if !self.failures.is_empty() {
            bail!(
                "the run's figures are incomplete:\n  {}",
                self.failures.join("\n  ")
            );
        }
        Ok(())
    }
}
