//! The parent's side of the workers: start one process per segment part, read their
//! reports (and mail for friends in other workers) off their stdout, hand each worker
//! the mail for its users on its stdin, stop them by closing their stdin.

use crate::merge::Merge;
use crate::segment::Segment;
use crate::stats::Summary;
use crate::worker::{Mail, WorkerMessage, WorkerReport};
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// One worker's message, or `None` when its stdout closed.
type Message = (usize, Option<Result<WorkerMessage>>);

pub struct Fleet {
    children: Vec<Child>,
    /// Each worker's stdin, written by a task of its own (a worker busy for a moment
    /// holds up no one); dropping the queue closes the stdin, which stops the worker.
    stdins: Vec<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    segment: Segment,
    rx: mpsc::Receiver<Message>,
    finished: Vec<bool>,
    open: usize,
    failures: Vec<String>,
}

/// What came from the workers.
pub enum Event {
    Report(u64, Box<WorkerReport>),
    /// Shares for friends in other workers: [`Fleet::deliver`] them.
    Mail(Vec<Mail>),
    /// Every worker's stdout has closed.
    Done,
}

/// Writes frames to a worker's stdin until the queue closes, then closes the stdin.
fn stdin_writer(mut stdin: ChildStdin) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if stdin.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    tx
}

impl Fleet {
    /// Starts `count` workers, worker `j` on part `j` of `segment`.
    pub fn start(
        profile: &Path,
        (segment, reach): (Segment, Segment),
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
                .arg("--reach")
                .arg(reach.to_string())
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
            stdins.push(child.stdin.take().map(stdin_writer));
            children.push(child);
            let tx = tx.clone();
            let index = j as usize;
            tokio::spawn(async move {
                let codec = LengthDelimitedCodec::builder()
                    .max_frame_length(64 << 20)
                    .new_codec();
                let mut frames = FramedRead::new(stdout, codec);
                while let Some(frame) = frames.next().await {
                    let report = frame.context("reading a worker's message").and_then(|b| {
                        postcard::from_bytes(&b).context("decoding a worker's message")
                    });
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
            segment,
            rx,
            finished: vec![false; n],
            open: n,
            failures: Vec::new(),
        })
    }

    /// The next report from any worker, or [`Event::Done`] once every worker's output
    /// has closed. A report that does not decode, or a worker that ends without its
    /// final report, is kept as a failure for [`Fleet::wait`].
    pub async fn next(&mut self) -> Event {
        while self.open > 0 {
            let Some((j, message)) = self.rx.recv().await else {
                break;
            };
            match message {
                Some(Ok(WorkerMessage::Report(report))) => {
                    if report.last {
                        self.finished[j] = true;
                    }
                    return Event::Report(j as u64, report);
                }
                Some(Ok(WorkerMessage::Mail(mail))) => return Event::Mail(mail),
                Some(Err(e)) => self.failures.push(format!("worker {j}: {e:#}")),
                None => {
                    if !self.finished[j] {
                        self.failures
                            .push(format!("worker {j} ended without its final report"));
                    }
                    self.open -= 1;
                }
            }
        }
        Event::Done
    }

    /// Waits for the next report and merges it into `total`, delivering mail on the
    /// way; `false` once every worker has finished.
    pub async fn next_report(&mut self, merge: &mut Merge, total: &Mutex<Summary>) -> Result<bool> {
        loop {
            match self.next().await {
                Event::Report(j, report) => return merge.add((0, j), *report, total).map(|_| true),
                // Friends are chosen within this machine's segment: none is elsewhere.
                Event::Mail(mail) => drop(self.deliver(mail)),
                Event::Done => return Ok(false),
            }
        }
    }

    /// Hands each mail to the worker simulating its friend; returns the mail for users
    /// outside this machine's segment (for the coordinator to route).
    pub fn deliver(&mut self, mail: Vec<Mail>) -> Vec<Mail> {
        let workers = self.children.len() as u64;
        let mut by_worker: Vec<Vec<Mail>> = vec![Vec::new(); workers as usize];
        let mut elsewhere = Vec::new();
        for m in mail {
            match self.segment.worker_of(m.friend, workers) {
                Some(j) => by_worker[j as usize].push(m),
                None => elsewhere.push(m),
            }
        }
        for (j, batch) in by_worker.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let (Some(Some(stdin)), Ok(body)) = (self.stdins.get(j), postcard::to_stdvec(&batch))
            {
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                let _ = stdin.send(frame);
            }
        }
        elsewhere
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
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
    pub async fn wait(self) -> Result<()> {
        let failures = self.wait_failures().await?;
        if !failures.is_empty() {
            bail!(
                "the run's figures are incomplete:\n  {}",
                failures.join("\n  ")
            );
        }
        Ok(())
    }

    /// Waits for the workers to exit and returns what went wrong.
    pub async fn wait_failures(mut self) -> Result<Vec<String>> {
        self.stop();
        for (j, child) in self.children.iter_mut().enumerate() {
            let status = child.wait().await?;
            if !status.success() {
                self.failures
                    .push(format!("worker {j} exited with {status}"));
            }
        }
        Ok(self.failures)
    }
}
