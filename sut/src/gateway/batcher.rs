//! The agent's batching way to the envelope backend: sessions hand their requests to a
//! bounded channel, and one task sends whatever has gathered as one RPC, so a rush
//! costs the backend one transaction per batch, not one per request. Up to one batch
//! per peer connection is in flight at once, so one slow batch does not hold the next.
//! Each request gets its own answer back within its deadline, or `Unavailable` (worth a
//! retry) when the backend is down, busy, hung or late: a session never waits on the
//! backend longer than the deadline, whatever the backend does.

use crate::rpc::{Peer, Rpc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Mutex;
use std::time::Duration;
use sut_wire::protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot, watch};

/// Connections to the backend each batcher keeps: batches in flight at once.
pub(crate) const PEERS: usize = 4;

type Job<Q, A> = (Q, oneshot::Sender<Result<A, ErrorCode>>);
/// The task's end of the channel, taken when it starts.
type Inbox<Q, A> = Mutex<Option<mpsc::Receiver<Job<Q, A>>>>;

/// How one kind of request travels: how a batch becomes an RPC and an RPC its answers.
pub(crate) trait Batched: Send + 'static {
    type Answer: Send + 'static;
    fn request(batch: Vec<Self>) -> Rpc
    where
        Self: Sized;
    /// The answers a reply carries, one per request in order; `None` if it is not one.
    fn answers(reply: Rpc) -> Option<Vec<Self::Answer>>;
}

/// Requests on their way, and the task's end of the channel until it starts.
pub(crate) struct Batcher<Q: Batched> {
    tx: mpsc::Sender<Job<Q, Q::Answer>>,
    rx: Inbox<Q, Q::Answer>,
    /// Requests per RPC at most.
    batch: usize,
    /// How long one RPC may take before its connection counts as broken.
    timeout: Duration,
    /// How long a request waits for its answer, queueing included.
    deadline: Duration,
}

impl<Q: Batched> Batcher<Q> {
    pub(crate) fn new(batch: usize, timeout: Duration, deadline: Duration) -> Batcher<Q> {
        let (tx, rx) = mpsc::channel(batch * 8);
        Batcher {
            tx,
            rx: Mutex::new(Some(rx)),
            batch,
            timeout,
            deadline,
        }
    }

    /// Sends one request with the next batch and waits for its answer, at most the
    /// deadline.
    pub(crate) async fn ask(&self, request: Q) -> Result<Q::Answer, ErrorCode> {
        let asked = async {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send((request, tx))
                .await
                .map_err(|_| ErrorCode::Unavailable)?;
            rx.await.map_err(|_| ErrorCode::Unavailable)?
        };
        tokio::time::timeout(self.deadline, asked)
            .await
            .unwrap_or(Err(ErrorCode::Unavailable))
    }

    /// Sends batches over `peers` (one batch in flight on each) until `shutdown` (once;
    /// a second call returns at once).
    pub(crate) async fn run(&self, peers: Vec<Peer>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut idle = peers;
        let mut in_flight = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(peer) = in_flight.next(), if !in_flight.is_empty() => idle.push(peer),
                job = rx.recv(), if !idle.is_empty() => {
                    let Some(first) = job else { return };
                    let mut jobs = vec![first];
                    while jobs.len() < self.batch {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    // Requests whose asker gave up (past its deadline) are not sent.
                    jobs.retain(|(_, reply)| !reply.is_closed());
                    if let (false, Some(peer)) = (jobs.is_empty(), idle.pop()) {
                        in_flight.push(send::<Q>(peer, jobs, self.timeout));
                    }
                }
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// One batch over one peer; the peer comes back for the next batch.
async fn send<Q: Batched>(mut peer: Peer, jobs: Vec<Job<Q, Q::Answer>>, timeout: Duration) -> Peer {
    let (requests, replies): (Vec<Q>, Vec<_>) = jobs.into_iter().unzip();
    let reply = peer
        .call(Q::request(requests), timeout)
        .await
        .and_then(Result::ok);
    let busy = matches!(reply, Some(Rpc::Busy { .. }));
    match reply.and_then(Q::answers) {
        Some(answers) if answers.len() == replies.len() => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(a));
            }
        }
        _ => {
            if !busy {
                peer.reset();
            }
            for reply in replies {
                let _ = reply.send(Err(ErrorCode::Unavailable));
            }
        }
    }
    peer
}
