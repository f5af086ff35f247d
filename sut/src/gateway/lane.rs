//! The durable lane: a thread of its own beside the gateway's event loop, which runs the
//! way a win or an open takes to disk and to the backend (the group committer, the
//! reservation and split batchers, their RPC connections).
//!
//! On the event loop a win would hop through the loop's run queue at every step (the
//! batcher's turn, the RPC reply, the committer's turn, the fsync's completion), each
//! time behind every session that had a frame ready: under a surge, that is where a
//! win's reply lost tens of milliseconds. On the lane those steps run at once, and only
//! the session's last wake (the answer) crosses back; the loop takes such wakes from
//! other threads every few tasks (the runtime's global queue interval, set by the CLI).

use std::future::Future;
use std::io;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A running lane; dropping it stops the thread and waits for it: tasks still on it are
/// dropped there, so the committer's database is closed cleanly before the process
/// exits (redb then needs no repair at the next start).
pub(super) struct Lane {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lane {
    /// Starts the lane's thread with its own single-threaded runtime.
    pub(super) fn start(gateway: u16) -> io::Result<Lane> {
        let rt = Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("lane-{gateway}"))
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Lane {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `task` on the lane.
    pub(super) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// The lane's runtime, for parts that spawn their own tasks where they are made.
    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Quick: the runtime drops its tasks, and waits only for a commit under way.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_lane_thread_and_answer_across() {
        let lane = Lane::start(7).unwrap();
        let caller = std::thread::current().id();
        let rt = Builder::new_current_thread().build().unwrap();
        let (name, other) = rt.block_on(async {
            lane.spawn(async move {
                let t = std::thread::current();
                (t.name().map(str::to_owned), t.id() != caller)
            })
            .await
            .unwrap()
        });
        assert_eq!(name.as_deref(), Some("lane-7"));
        assert!(other);
    }

    #[test]
    fn a_dropped_lane_drops_its_tasks() {
        let lane = Lane::start(1).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        lane.spawn(async move {
            std::future::pending::<()>().await;
            drop(tx);
        });
        drop(lane);
        // The pending task was dropped with the runtime, and with it the sender, by the
        // time the drop returned.
        let mut rx = rx;
        assert_eq!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    }
}
