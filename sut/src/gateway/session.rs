//! One client's long connection: hello, then shakes, opens, shares, grabs and heartbeats
//! in order, each connection bounded in bytes and time (see [`super::conn`]).

use super::conn::{refuse, Conn, Connected, Next, Stop};
use super::link::Link;
use super::state::Gateway;
use super::store::{GatewayOp, GatewayResult};
use crate::metrics::labels;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use sut_core::passthrough::OpenEntry;
use sut_core::shake::Reason;
use sut_wire::cookie::{Cookie, MAX_COOKIE_LEN};
use sut_wire::protocol::{ErrorCode, Frame};
use sut_wire::token::{EnvelopeToken, TokenError};

/// Frames one session handles in a row before it lets the rest of the gateway run.
const FRAMES_PER_TURN: u32 = 8;

/// One session, start to end.
///
/// An idle session is what a gateway holds a million of, so its task is kept small:
/// while idle it waits only for readability (with the heartbeat or frame deadline and
/// the shutdown signal); frames are then read without waiting, and every rarer or
/// larger step (the hello, a shake, an open, a reply, a refusal, a wait for the user's
/// allowance) runs as a boxed future whose state exists only while it runs.
///
/// No client holds the gateway: a session yields after [`FRAMES_PER_TURN`] frames, and
/// a user past their frame allowance ([`sut_core::client_rate`]) is not read until
/// their next frame is due.
pub(super) async fn serve<L: Link>(gw: Arc<Gateway>, link: L) {
    let _guard = Connected::<L>::new(gw.clone());
    let mut conn = Conn::new(gw.clone(), link);
    // One block rather than a function of its own: the task then holds one state
    // machine, not two nested ones (a session's task is held a million times over).
    'session: {
        let Some(user) = Box::pin(hello(&gw, &mut conn)).await else {
            break 'session;
        };
        // Made once and kept across frames: a busy session's wait for its next frame then
        // costs no timer or signal registration of its own. The alarm stays at the deadline
        // it was set for; when it goes off early (frames came meanwhile), it is set again.
        let mut stop_signal = gw.shutdown.clone();
        let stopping = stop_signal.wait_for(|s| *s);
        tokio::pin!(stopping);
        let alarm = tokio::time::sleep_until(conn.deadline().0.into());
        tokio::pin!(alarm);
        // When this client's last shake got a decision: at a raised tier, one that comes
        // sooner than the tier's interval is answered "come back later" without any work.
        let mut last_decided: Option<Instant> = None;
        let mut turn = 0u32;
        loop {
            let frame = match conn.try_next() {
                Ok(Next::Frame(frame)) => frame,
                Ok(Next::Closed) => break 'session,
                Err(stop) => {
                    // A malformed or oversized frame leaves the stream unsynchronised: close.
                    if let Some((code, message)) = stop.code() {
                        Box::pin(refuse(&gw, &mut conn, code, message)).await;
                    }
                    break 'session;
                }
                Ok(Next::Wait) => {
                    turn = 0;
                    let (deadline, code) = conn.deadline();
                    if deadline < alarm.deadline().into_std() {
                        alarm.as_mut().reset(deadline.into());
                    }
                    let woke = tokio::select! {
                        biased;
                        ready = conn.link.readable() => Woke::Ready(ready.is_ok()),
                        _ = &mut alarm => Woke::Alarm,
                        _ = &mut stopping => Woke::Stop,
                    };
                    match woke {
                        Woke::Ready(true) => continue,
                        Woke::Ready(false) => break 'session,
                        Woke::Alarm => {
                            let (deadline, _) = conn.deadline();
                            if deadline > Instant::now() {
                                alarm.as_mut().reset(deadline.into());
                                continue;
                            }
                            let msg = if code == ErrorCode::FrameTimeout {
                                gw.limit_hit("frame_timeout");
                                format!("a frame unfinished for {:?}", gw.limits.frame_timeout)
                            } else {
                                format!("silent for {:?}", gw.heartbeat_timeout)
                            };
                            Box::pin(refuse(&gw, &mut conn, code, msg)).await;
                            break 'session;
                        }
                        Woke::Stop => {
                            let msg = "gateway shutting down; reconnect".to_string();
                            Box::pin(refuse(&gw, &mut conn, ErrorCode::ShuttingDown, msg)).await;
                            break 'session;
                        }
                    }
                }
            };
            // The allowance is taken at once unless the user is over it: only then a wait.
            let allowed = gw.client_rates.take(user, gw.started.elapsed()).is_ok()
                || Box::pin(allowance(&gw, user)).await;
            if !allowed {
                let msg = "gateway shutting down; reconnect".to_string();
                Box::pin(refuse(&gw, &mut conn, ErrorCode::ShuttingDown, msg)).await;
                break 'session;
            }
            gw.frames.fetch_add(1, Ordering::Relaxed);
            let reply = match frame {
                Frame::Heartbeat => {
                    gw.metrics.heartbeats.inc();
                    Frame::HeartbeatAck {
                        server_time_ms: shellkit::clock::unix_ms().max(0) as u64,
                    }
                }
                // Most shakes are decided without waiting; a win waits for its reservation
                // and its durable record.
                Frame::Shake { cookie } => match shake_now(&gw, user, cookie, &mut last_decided) {
                    Shook::Reply(reply) => reply,
                    Shook::Won(decided) => Box::pin(issue(&gw, user, decided)).await,
                },
                Frame::Open { token } => Box::pin(open(&gw, user, token)).await,
                Frame::Share { token, friends } => {
                    Box::pin(super::split::share(&gw, user, token, friends)).await
                }
                Frame::Grab { share_id } => Box::pin(super::split::grab(&gw, user, share_id)).await,
                other => {
                    let msg = format!("frame type 0x{:02x} is not a request", other.type_byte());
                    Box::pin(refuse(&gw, &mut conn, ErrorCode::Unexpected, msg)).await;
                    break 'session;
                }
            };
            let sent = match conn.write_now(reply) {
                Ok(rest) if rest.is_empty() => Ok(()),
                Ok(rest) => Box::pin(conn.finish(rest)).await,
                Err(e) => Err(e),
            };
            if sent.is_err() {
                break 'session;
            }
            turn += 1;
            if turn >= FRAMES_PER_TURN {
                turn = 0;
                tokio::task::yield_now().await;
            }
        }
    }
    conn.link.close(gw.limits.write_timeout).await;
}

/// What woke a session waiting for its next frame.
enum Woke {
    /// The socket is readable (true), or failed (false).
    Ready(bool),
    Alarm,
    Stop,
}

/// Takes one frame of `user`'s allowance, waiting (without reading) until there is one;
/// false if the gateway began to shut down meanwhile.
async fn allowance(gw: &Gateway, user: u64) -> bool {
    // Its own receiver, made only when a user is over its allowance: idle sessions do
    // not hold one for it.
    let mut shutdown = gw.shutdown.clone();
    let mut waited = false;
    loop {
        let Err(wait) = gw.client_rates.take(user, gw.started.elapsed()) else {
            return true;
        };
        if !std::mem::replace(&mut waited, true) {
            gw.limit_hit("rate_waits");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// What waiting for the Hello came to.
enum HelloWait {
    Read(Result<Option<Frame>, Stop>),
    TimedOut,
    ShuttingDown,
}

/// Reads the Hello (within the hello deadline) and checks it; the user id, or `None`
/// after refusing the connection. A connection that has not logged in does not hold up
/// a stop.
async fn hello<L: Link>(gw: &Gateway, conn: &mut Conn<L>) -> Option<u64> {
    let mut shutdown = gw.shutdown.clone();
    let waited = {
        let read = async {
            loop {
                match conn.try_next()? {
                    Next::Frame(frame) => return Ok(Some(frame)),
                    Next::Closed => return Ok(None),
                    Next::Wait => conn
                        .link
                        .readable()
                        .await
                        .map_err(|e| Stop::Codec(e.into()))?,
                }
            }
        };
        tokio::select! {
            read = tokio::time::timeout(gw.limits.hello_timeout, read) => {
                read.map_or(HelloWait::TimedOut, HelloWait::Read)
            }
            _ = shutdown.wait_for(|s| *s) => HelloWait::ShuttingDown,
        }
    };
    let user = match waited {
        HelloWait::Read(Ok(Some(Frame::Hello {
            user_id,
            auth_token,
        }))) => {
            if !gw.auth.verify(b"auth", &user_id.to_be_bytes(), &auth_token) {
                let msg = format!("auth token does not match user {user_id}");
                refuse(gw, conn, ErrorCode::AuthFailed, msg).await;
                return None;
            }
            user_id
        }
        HelloWait::Read(Ok(Some(other))) => {
            let msg = format!(
                "first frame must be Hello, got type 0x{:02x}",
                other.type_byte()
            );
            refuse(gw, conn, ErrorCode::NotHelloFirst, msg).await;
            return None;
        }
        HelloWait::Read(Err(stop)) => {
            if let Some((code, message)) = stop.code() {
                refuse(gw, conn, code, message).await;
            }
            return None;
        }
        HelloWait::Read(Ok(None)) => return None,
        HelloWait::TimedOut => {
            gw.limit_hit("hello_timeout");
            let msg = format!(
                "no Hello within {:?} of connecting",
                gw.limits.hello_timeout
            );
            refuse(gw, conn, ErrorCode::HelloTimeout, msg).await;
            return None;
        }
        HelloWait::ShuttingDown => return None,
    };
    gw.metrics
        .sessions
        .get_or_create(&labels(&[("result", "accepted")]))
        .inc();
    let throttle = gw.throttle();
    let (tier, shake_interval_ms) = (throttle.tier, throttle.shake_interval_ms);
    let (config_version, countdown_ms) = gw.countdown(gw.show_ms());
    let ack = Frame::HelloAck {
        server_time_ms: shellkit::clock::unix_ms().max(0) as u64,
        tier,
        shake_interval_ms,
        config_version,
        countdown_ms,
    };
    conn.send(ack).await.ok()?;
    Some(user)
}

/// A shake's outcome as far as it goes without waiting.
enum Shook {
    Reply(Frame),
    /// A win: it waits for its reservation and its durable record before its reply.
    Won(Decided),
}

/// A decided shake on its way to its reply, with the tier its reply carries and the
/// schedule version it was decided on, with that version's countdown.
struct Decided {
    decision: sut_core::shake::ShakeDecision,
    tier: u8,
    shake_interval_ms: u32,
    config_version: u64,
    countdown_ms: u32,
}

/// Decides one shake, unless the gateway's throttle sheds it
/// ([`sut_core::shedding`]): then it is answered "come back later" without any work.
fn shake_now(gw: &Gateway, user: u64, cookie: Bytes, last_decided: &mut Option<Instant>) -> Shook {
    if cookie.len() > MAX_COOKIE_LEN {
        gw.error(ErrorCode::FieldTooLarge);
        let msg = format!(
            "a cookie is at most {MAX_COOKIE_LEN} bytes; send back the last one the gateway gave"
        );
        return Shook::Reply(Frame::error(ErrorCode::FieldTooLarge, msg));
    }
    let throttle = gw.throttle();
    let (tier, shake_interval_ms) = (throttle.tier, throttle.shake_interval_ms);
    let since_decided = last_decided.map(|t| t.elapsed());
    let show_ms = gw.show_ms();
    if let Some(why) = throttle.shed(since_decided, || gw.admitted()) {
        if why == sut_core::shedding::Shed::Stale {
            gw.stale.fetch_add(1, Ordering::Relaxed);
        }
        // No decision, no lock, no write. Nothing unchecked is echoed: the cookie goes
        // back only if its signature holds (a decided shake has the core check it).
        if let Err(e) = Cookie::open(&cookie, user, show_ms, &gw.key) {
            gw.error(ErrorCode::CookieInvalid);
            return Shook::Reply(Frame::error(ErrorCode::CookieInvalid, e.to_string()));
        }
        gw.metrics.throttled.inc();
        let (config_version, countdown_ms) = gw.countdown(show_ms);
        return Shook::Reply(Frame::ShakeReply {
            outcome: sut_wire::protocol::Outcome::ComeBackLater,
            tier,
            shake_interval_ms,
            cookie,
            config_version,
            countdown_ms,
        });
    }
    *last_decided = Some(Instant::now());
    if !gw.shake_cost.is_zero() {
        let start = Instant::now();
        while start.elapsed() < gw.shake_cost {
            std::hint::spin_loop();
        }
    }
    let decided = gw
        .core
        .lock()
        .map(|mut core| {
            let version = core.version();
            let countdown = core.timeline().countdown_ms(show_ms);
            core.shake(show_ms, user, &cookie)
                .map(|d| (d, version, countdown))
        })
        .map_err(|_| ());
    let (decision, config_version, countdown_ms) = match decided {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            gw.error(ErrorCode::CookieInvalid);
            return Shook::Reply(Frame::error(ErrorCode::CookieInvalid, e.to_string()));
        }
        Err(_) => {
            gw.error(ErrorCode::Unavailable);
            return Shook::Reply(Frame::error(
                ErrorCode::Unavailable,
                "gateway state poisoned",
            ));
        }
    };
    let decided = Decided {
        decision,
        tier,
        shake_interval_ms,
        config_version,
        countdown_ms,
    };
    if decided.decision.issued.is_some() {
        Shook::Won(decided)
    } else {
        Shook::Reply(decided_reply(gw, decided))
    }
}

/// A win's reply: reserved at the user's owner (strict limits) and recorded durably
/// first, so that the audit can see every envelope any user holds.
async fn issue(gw: &Gateway, user: u64, won: Decided) -> Frame {
    let decision = super::reserve::confirm(gw, user, won.decision).await;
    if let Some(record) = decision.issued {
        if gw.committer.submit(GatewayOp::Issue(record)).await.is_err() {
            gw.error(ErrorCode::Unavailable);
            return Frame::error(
                ErrorCode::Unavailable,
                "could not record the issue; shake again",
            );
        }
        gw.metrics.count_issue(record.round);
        if let Ok(mut p) = gw.to_publish.lock() {
            p.push(record.issued());
        }
    }
    decided_reply(gw, Decided { decision, ..won })
}

/// The reply to a decided shake, counted by its reason.
fn decided_reply(gw: &Gateway, decided: Decided) -> Frame {
    let Decided {
        decision,
        tier,
        shake_interval_ms,
        config_version,
        countdown_ms,
    } = decided;
    if let Some(i) = Reason::ALL.iter().position(|r| *r == decision.reason) {
        gw.metrics.shakes_by_reason[i].inc();
    }
    gw.schedule.decided.fetch_add(1, Ordering::Relaxed);
    Frame::ShakeReply {
        outcome: decision.outcome,
        tier,
        shake_interval_ms,
        cookie: decision.cookie,
        config_version,
        countdown_ms,
    }
}

async fn open(gw: &Gateway, user: u64, token: Bytes) -> Frame {
    let refused = |code: ErrorCode| {
        gw.metrics
            .opens
            .get_or_create(&labels(&[("result", code.name())]))
            .inc();
        Frame::OpenReply {
            code: code as u16,
            amount_cents: 0,
        }
    };
    let token = match EnvelopeToken::open(&token, user, &gw.key) {
        Ok(t) => t,
        Err(TokenError::Forged) => return refused(ErrorCode::TokenForged),
        Err(TokenError::NotYours) => return refused(ErrorCode::TokenNotYours),
    };
    match enqueue_open(gw, token).await {
        // A repeat (this envelope was opened here before) gets the original answer:
        // ok and the amount, which the signed token carries.
        Ok(repeat) => {
            if repeat {
                gw.metrics
                    .opens
                    .get_or_create(&labels(&[("result", "repeat")]))
                    .inc();
            }
            Frame::OpenReply {
                code: 0,
                amount_cents: token.amount_cents,
            }
        }
        Err(code) => refused(code),
    }
}

/// The agent's part of an open whose token checked out: durable in the pass-through
/// queue first, then handed to the forwarder. Only after this may the user be told.
/// `Ok(true)` for a repeat: recorded here before, so nothing is queued again.
pub(super) async fn enqueue_open(gw: &Gateway, token: EnvelopeToken) -> Result<bool, ErrorCode> {
    let entry = OpenEntry {
        token,
        opened_ms: gw.show_ms(),
    };
    match gw.committer.submit(GatewayOp::Open(entry)).await {
        Ok(GatewayResult::Queued { seq }) => {
            if let Ok(mut q) = gw.queue.lock() {
                q.push(seq, entry);
                gw.metrics.queue_depth.set(q.depth() as i64);
            }
            gw.queue_notify.notify_one();
            gw.metrics.opens_ok.inc();
            Ok(false)
        }
        Ok(GatewayResult::Repeat) => Ok(true),
        Ok(GatewayResult::Done) => Err(ErrorCode::Unavailable),
        Err(_) => Err(ErrorCode::Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_output<F>(_: &dyn Fn() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A gateway holds ~19,000 idle sessions; the budget is 2 KiB per connection with
    /// the task header, the socket's registration and allocator overhead on top of this.
    #[test]
    #[allow(unreachable_code)]
    fn an_idle_session_fits_its_memory_budget() {
        let size =
            size_of_output(&|| serve::<tokio::net::TcpStream>(unreachable!(), unreachable!()));
        assert!(size <= 1024, "the session future grew to {size} bytes");
    }
}
