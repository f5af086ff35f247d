//! The I/O shell around [`UserCore`]: one long TCP connection per simulated user,
//! reconnecting with backoff when it drops.

use crate::profile::Profile;
use crate::stages::user_windows;
use crate::stats::{Op, Summary};
use crate::user::{Action, UserCore};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sut::passthrough::Backoff;
use sut::protocol::FrameCodec;
use sut::signing::SigningKey;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// What every user of a run shares.
pub struct RunContext {
    pub profile: Profile,
    pub gateways: Vec<String>,
    pub auth: SigningKey,
    pub start: Instant,
    pub stats: Arc<Mutex<Summary>>,
}

impl RunContext {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn with_stats<R>(&self, f: impl FnOnce(&mut Summary) -> R) -> R {
        let mut guard = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Mixes a user id into a well-spread hash (splitmix64's finalizer).
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The gateway a user dials first: its id hashed over the gateway list.
pub fn home_gateway(user: u64, gateways: usize) -> usize {
    (mix(user) % gateways.max(1) as u64) as usize
}

enum Ended {
    Left,
    Dropped,
}

/// Runs one user through all its windows.
pub async fn run_user(ctx: Arc<RunContext>, user: u64) {
    let windows = user_windows(&ctx.profile.stages, user);
    if windows.is_empty() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.profile.seed ^ mix(user));
    let auth = Bytes::copy_from_slice(&ctx.auth.auth_token(user));
    let mut core = UserCore::new(user, auth, &ctx.profile.behaviour, rng.random());
    let home = home_gateway(user, ctx.gateways.len());
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    for (start, end) in windows {
        tokio::time::sleep_until(ctx.start + start).await;
        let mut attempt = 0usize;
        while ctx.now() < end {
            let addr = &ctx.gateways[(home + attempt) % ctx.gateways.len()];
            let intended = ctx.now();
            let connected = tokio::time::timeout(
                ctx.profile.behaviour.request_timeout,
                TcpStream::connect(addr),
            )
            .await;
            let stream = match connected {
                Ok(Ok(s)) => s,
                Ok(Err(_)) | Err(_) => {
                    ctx.with_stats(|s| s.error(Op::Connect, "failed"));
                    // Fall back to the next gateway in the list, as the seed's clients
                    // fall back to another cluster.
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay(rng.random())).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let now = ctx.now();
            ctx.with_stats(|s| {
                s.record(Op::Connect, (now - intended).as_micros() as u64);
                s.connected += 1;
            });
            core.connected(now, end);
            let ended = drive(&ctx, &mut core, stream, &mut rng).await;
            ctx.with_stats(|s| s.connected -= 1);
            match ended {
                Ended::Left => break,
                Ended::Dropped => {
                    ctx.with_stats(|s| s.drops += 1);
                    tokio::time::sleep(backoff.next_delay(rng.random())).await;
                }
            }
        }
    }
}

async fn drive(
    ctx: &RunContext,
    core: &mut UserCore,
    stream: TcpStream,
    rng: &mut ChaCha8Rng,
) -> Ended {
    let mut conn = Framed::new(stream, FrameCodec::default());
    let timeout = ctx.profile.behaviour.request_timeout;
    loop {
        match core.poll(ctx.now()) {
            Action::Leave => return Ended::Left,
            Action::Send(frame) => {
                if let Some(intended) = core.intended() {
                    let lag = ctx.now().saturating_sub(intended).as_micros() as u64;
                    ctx.with_stats(|s| s.record_send_lag(lag));
                }
                if conn.send(frame).await.is_err() {
                    ctx.with_stats(|s| core.failed("send_failed", s));
                    return Ended::Dropped;
                }
                match tokio::time::timeout(timeout, conn.next()).await {
                    Ok(Some(Ok(frame))) => {
                        let roll: f64 = rng.random();
                        let now = ctx.now();
                        if ctx
                            .with_stats(|s| core.on_frame(frame, now, roll, s))
                            .is_some()
                        {
                            return Ended::Dropped;
                        }
                    }
                    Ok(Some(Err(_))) | Ok(None) => {
                        ctx.with_stats(|s| core.failed("closed", s));
                        return Ended::Dropped;
                    }
                    Err(_) => {
                        ctx.with_stats(|s| core.failed("timeout", s));
                        return Ended::Dropped;
                    }
                }
            }
            Action::WaitUntil(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(ctx.start + t) => {}
                    incoming = conn.next() => match incoming {
                        Some(Ok(frame)) => {
                            let now = ctx.now();
                            if ctx.with_stats(|s| core.on_frame(frame, now, 0.0, s)).is_some() {
                                return Ended::Dropped;
                            }
                        }
                        _ => return Ended::Dropped,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_gateways() {
        let mut counts = [0usize; 4];
        for u in 0..4000 {
            counts[home_gateway(u, 4)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
