//! The hostile users' I/O: one task per connection in the parent's runtime, dialing,
//! writing what the [`super::Tactic`] says, reading and counting what comes back. The users'
//! windows follow the profile's stages like everyone's.

use super::{put_frame, Attack, AttackFigures, HostileFigures};
use crate::profile::Profile;
use crate::segment::Segment;
use crate::stages::user_windows;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sut_wire::cookie::MAX_ENVELOPES_PER_USER;
use sut_wire::protocol::{ErrorCode, Frame, FrameCodec, Outcome};
use sut_wire::signing::SigningKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::FramedRead;

/// Wait before dialing again after a connection ended.
const REDIAL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The hostile users of a run, attacking until their windows end or [`Hostile::stop`].
pub struct Hostile {
    pub figures: Arc<Mutex<HostileFigures>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// What one user's connections share: its figures' place and, for a racer, the
/// sponsors its connections received between them.
struct UserRun {
    attack: Attack,
    user: u64,
    auth: [u8; sut_wire::signing::MAC_LEN],
    figures: Arc<Mutex<HostileFigures>>,
    received: Mutex<(Vec<u16>, bool)>,
    shake_every: Duration,
}

impl UserRun {
    fn count(&self, f: impl FnOnce(&mut AttackFigures)) {
        if let Ok(mut g) = self.figures.lock() {
            f(g.attack(self.attack));
        }
    }

    /// A racer's envelope: counted over all its connections against the limits.
    fn envelope(&self, sponsor: u16) {
        let first_over = match self.received.lock() {
            Ok(mut r) => {
                let over = r.0.contains(&sponsor) || r.0.len() >= MAX_ENVELOPES_PER_USER;
                r.0.push(sponsor);
                let first = over && !r.1;
                r.1 |= over;
                first
            }
            Err(_) => false,
        };
        self.count(|a| {
            a.envelopes += 1;
            a.over_limit_users += u64::from(first_over);
        });
    }
}

impl Hostile {
    /// Starts the segment's hostile users; the run's users count from `run_start`.
    pub fn start(
        profile: &Profile,
        segment: Segment,
        gateways: &[String],
        auth: &SigningKey,
        run_start: Instant,
    ) -> Hostile {
        let hostile = &profile.behaviour.hostile;
        let figures = Arc::new(Mutex::new(HostileFigures {
            share: hostile.share,
            ..HostileFigures::default()
        }));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let shake_every = if profile.behaviour.shake_rate > 0.0 {
            Duration::from_secs_f64(1.0 / profile.behaviour.shake_rate)
        } else {
            Duration::from_secs(1)
        };
        for user in segment.users(profile.users) {
            let Some(attack) = hostile.attack_of(user, profile.seed) else {
                continue;
            };
            let windows = user_windows(&profile.stages, user);
            if windows.is_empty() {
                continue;
            }
            let run = Arc::new(UserRun {
                attack,
                user,
                auth: auth.auth_token(user),
                figures: figures.clone(),
                received: Mutex::new((Vec::new(), false)),
                shake_every,
            });
            run.count(|a| a.users += 1);
            let targets: Vec<String> = if attack.tactic().every_gateway() {
                gateways.to_vec()
            } else {
                vec![gateways[crate::worker::home_gateway(user, gateways.len())].clone()]
            };
            for addr in targets {
                let (run, windows, stopped) = (run.clone(), windows.clone(), stopped.clone());
                tasks.spawn(async move {
                    for (from, to) in windows {
                        let (from, to) = (run_start + from, run_start + to);
                        tokio::select! {
                            _ = sleep_until(from) => {}
                            _ = wait_stop(stopped.clone()) => return,
                        }
                        tokio::select! {
                            _ = attack_until(&run, &addr, from) => {}
                            _ = sleep_until(to) => {}
                            _ = wait_stop(stopped.clone()) => return,
                        }
                    }
                });
            }
        }
        Hostile {
            figures,
            stop,
            tasks,
        }
    }

    /// Ends every attack and waits for the tasks.
    pub async fn stop(mut self) -> HostileFigures {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let figures = self.figures.lock().map(|f| f.clone()).unwrap_or_default();
        figures
    }
}

async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Attacks over one connection after another, for as long as the caller lets it.
async fn attack_until(run: &UserRun, addr: &str, epoch: Instant) {
    loop {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                run.count(|a| a.connections += 1);
                let ended = attack_once(run, stream, epoch).await;
                run.count(|a| *a.ended.entry(ended).or_default() += 1);
            }
            _ => run.count(|a| a.connect_failures += 1),
        }
        tokio::time::sleep(REDIAL).await;
    }
}

/// One connection, to its end; how it ended.
async fn attack_once(run: &UserRun, stream: TcpStream, epoch: Instant) -> String {
    let tactic = run.attack.tactic();
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    if tactic.hello() {
        let mut b = BytesMut::new();
        put_frame(
            &mut b,
            Frame::Hello {
                user_id: run.user,
                auth_token: Bytes::copy_from_slice(&run.auth),
            },
        );
        if write.write_all(&b).await.is_err() {
            return "write_failed".into();
        }
        run.count(|a| {
            a.frames_sent += 1;
            a.bytes_sent += b.len() as u64;
        });
    }
    let writing = async {
        // Racers' connections write at the same instants: the period's ticks from the
        // window's start, shared by all of the user's connections.
        let mut ticks = tokio::time::interval_at(epoch, tactic.period(run.shake_every));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticks.tick().await;
        let mut k = 0u64;
        while let Some((bytes, frames)) = tactic.write(k) {
            if write.write_all(&bytes).await.is_err() {
                return "write_failed".to_string();
            }
            run.count(|a| {
                a.frames_sent += frames;
                a.bytes_sent += bytes.len() as u64;
            });
            k += 1;
            ticks.tick().await;
        }
        std::future::pending::<String>().await
    };
    if !tactic.reads() {
        // Never reads: only a failed write tells the connection is gone.
        return writing.await;
    }
    let reading = async {
        let mut frames = FramedRead::new(read, FrameCodec::default());
        let mut last_error: Option<String> = None;
        loop {
            match frames.next().await {
                Some(Ok(frame)) => {
                    run.count(|a| a.frames_received += 1);
                    if let Some(e) = last_error.take() {
                        // The connection went on after it: a refusal, not an ending.
                        run.count(|a| *a.refused.entry(e).or_default() += 1);
                    }
                    match frame {
                        Frame::Error { code, .. } => {
                            let name = ErrorCode::from_u16(code)
                                .map(|c| c.name())
                                .unwrap_or("unknown");
                            last_error = Some(name.to_string());
                        }
                        Frame::ShakeReply {
                            outcome: Outcome::Envelope { sponsor, .. },
                            ..
                        } => run.envelope(sponsor),
                        _ => {}
                    }
                }
                Some(Err(_)) => return last_error.unwrap_or_else(|| "reset".into()),
                None => return last_error.unwrap_or_else(|| "closed".into()),
            }
        }
    };
    tokio::pin!(writing);
    tokio::pin!(reading);
    tokio::select! {
        ended = &mut reading => ended,
        // A failed write: the gateway may have said why just before closing.
        failed = &mut writing => timeout(Duration::from_secs(1), &mut reading)
            .await
            .unwrap_or(failed),
    }
}
