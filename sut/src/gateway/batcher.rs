//! The agent's batching way to the envelope backend: sessions hand their requests to a
//! bounded channel, and one task sends whatever has gathered as one RPC at a time, so a
//! rush costs the backend one transaction per batch, not one per request. Each request
//! gets its own answer back, or `Unavailable` when the backend is down, busy or late.

use crate::rpc::{Peer, Rpc};
use std::sync::Mutex;
use std::time::Duration;
use sut_wire::protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot, watch};

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
    /// How long one RPC may take before its requests count as unavailable.
    timeout: Duration,
}

impl<Q: Batched> Batcher<Q> {
    pub(crate) fn new(batch: usize, timeout: Duration) -> Batcher<Q> {
        let (tx, rx) = mpsc::channel(batch * 8);
        Batcher {
            tx,
            rx: Mutex::new(Some(rx)),
            batch,
            timeout,
        }
    }

    /// Sends one request with the next batch and waits for its answer.
    pub(crate) async fn ask(&self, request: Q) -> Result<Q::Answer, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((request, tx))
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        rx.await.map_err(|_| ErrorCode::Unavailable)?
    }

    /// Sends batches to `backend` until `shutdown` (once; a second call returns at once).
    pub(crate) async fn run(&self, mut backend: Peer, mut shutdown: watch::Receiver<bool>) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        loop {
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = shutdown.wait_for(|s| *s) => None,
            };
            let Some(first) = first else { return };
            let mut jobs = vec![first];
            while jobs.len() < self.batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let (requests, replies): (Vec<Q>, Vec<_>) = jobs.into_iter().unzip();
            let reply = backend
                .call(Q::request(requests), self.timeout)
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
                        backend.reset();
                    }
                    for reply in replies {
                        let _ = reply.send(Err(ErrorCode::Unavailable));
                    }
                }
            }
        }
    }
}
