//! The gateway (access server): holds the long connections, decides shakes locally and,
//! through its agent, records opens in the pass-through queue and forwards them.

//!
//! This file wires the parts and runs the accept loop: [`config`], [`recovery`] (state
//! rebuilt from the store and the seed shards at start), [`metrics`],
//! [`state`] (what the tasks share), [`session`] (one client's session), [`conn`] (its
//! connection's bounds in bytes and time),
//! [`leases`] (the lease keeper), [`load`] (the load watcher that sets the tier),
//! and the agent's tasks: [`forwarder`] (the pass-through queue), [`sync`] (the shared
//! limit view), [`split`] (shares and grabs), [`reserve`] (strict limits: wins reserved
//! at the user's owner), both over the [`batcher`], and the durable [`store`]. The
//! committer and both batchers run on the [`lane`], a thread beside the event loop.

mod batcher;
mod bench;
mod channels;
mod config;
mod conn;
mod forwarder;
mod lane;
mod leases;
mod link;
mod live_schedule;
mod load;
mod metrics;
mod peers;
mod quic;
mod recovery;
mod reserve;
pub mod schedule;
mod session;
mod split;
mod state;
pub mod store;
mod sync;

pub use config::{ChannelConfig, GatewayConfig, GatewayError, SessionLimits};

use crate::committer::GroupCommitter;
use crate::rpc::Peer;
use metrics::{GatewayMetrics, QueueAge};
use prometheus_client::registry::Registry;
use state::Gateway;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sut_core::client_rate::ClientRates;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// Runs a gateway until `shutdown` turns true, then drains its queue (bounded by the
/// drain timeout) and returns the opens still queued (durable, forwarded at the next
/// start).
pub async fn run(
    config: GatewayConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<usize, GatewayError> {
    let db_path = store::db_path(&config.data, config.id);
    let (db, recovered) = store::open(&db_path)?;
    let recovery::Restored {
        core,
        queue,
        leases,
    } = recovery::recover(&config, &recovered);
    let mut registry = Registry::default();
    let metrics = GatewayMetrics::register(&mut registry, &config.timeline, config.gateways);
    let schedule_metrics = metrics::ScheduleMetrics::register(&mut registry);
    metrics.queue_depth.set(queue.depth() as i64);
    let queue = Arc::new(Mutex::new(queue));
    registry.register_collector(Box::new(QueueAge {
        queue: queue.clone(),
        show_start_ms: config.show_start_ms,
    }));
    let lane = lane::Lane::start(config.id).map_err(GatewayError::Lane)?;
    let committer = GroupCommitter::spawn_batched(lane.handle(), db, db_path, 1024, store::apply);
    registry.register_collector(Box::new(crate::committer::CommitMetrics {
        db: "queue",
        stats: committer.stats.clone(),
    }));
    let split = split::agent::SplitAgent::register(&mut registry, config.backend_deadline);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    // QUIC on the UDP port of the same number (the TCP port may have been chosen by
    // the kernel).
    let quic_addr = listener
        .local_addr()
        .map_err(|source| crate::listen::ListenError {
            addr: config.listen.clone(),
            source,
        })?;
    let quic = quic::bind(
        quic_addr,
        &config.quic_identity,
        quic_idle(&config),
        config.limits.hello_timeout,
    )?;
    let gw = Arc::new(Gateway {
        id: config.id,
        core: Mutex::new(core),
        queue,
        queue_notify: Notify::new(),
        committer,
        key: config.key.clone(),
        auth: config.auth.clone(),
        show_start_ms: config.show_start_ms,
        gateways: config.gateways,
        schedule: live_schedule::LiveSchedule::new(
            &config.timeline,
            config.operator.clone(),
            &config.data,
            config.id,
            schedule_metrics,
        ),
        leases_at_start: leases,
        peers: std::sync::OnceLock::new(),
        heartbeat_timeout: config.heartbeat_timeout,
        metrics,
        shutdown: shutdown.clone(),
        sessions: AtomicUsize::new(0),
        frames: AtomicU64::new(0),
        tier: AtomicU8::new(0),
        admission: Mutex::new(load::admission()),
        probe_due_us: AtomicU64::new(u64::MAX),
        stale: AtomicU64::new(0),
        top_tier: config.timeline.top_tier(),
        tier_intervals_ms: recovery::tier_intervals_ms(&config.timeline),
        shake_cost: config.shake_cost,
        // After a restart everything is published again: the backend keeps each once.
        to_publish: Mutex::new(recovered.issued.iter().map(|r| r.issued()).collect()),
        split,
        reserve: batcher::Batcher::new(
            reserve::BATCH,
            reserve::RESERVE_TIMEOUT,
            reserve::RESERVE_TIMEOUT,
        ),
        strict_limits: config.strict_limits,
        client_rates: ClientRates::new(config.limits.frames_per_second, config.limits.frame_burst),
        limits: config.limits.clone(),
        partial_bytes: AtomicUsize::new(0),
        started: Instant::now(),
    });
    schedule::start(&gw)?;
    channels::start(gw.clone(), config.channels.clone()).await?;
    crate::log_line!(
        "gateway {} listening on {} (issued so far {}, queue {} to forward)",
        config.id,
        config.listen,
        recovered.issued.len(),
        recovered.queue.len()
    );
    Ok(serve(gw, &config, &lane, listener, quic, shutdown).await)
}

/// QUIC's idle timeout: past the heartbeat timeout, so that the session's own deadline
/// (which answers the client with a reason) comes first.
fn quic_idle(config: &GatewayConfig) -> Duration {
    config.heartbeat_timeout + Duration::from_secs(10)
}

/// Starts the lease keeper, load watcher and agent tasks, accepts connections until
/// `shutdown`, then waits for the forwarder to drain the queue.
async fn serve(
    gw: Arc<Gateway>,
    config: &GatewayConfig,
    lane: &lane::Lane,
    listener: TcpListener,
    quic: quic::Bound,
    mut shutdown: watch::Receiver<bool>,
) -> usize {
    let leases = tokio::spawn(leases::keep_leases(gw.clone()));
    let load_watch = tokio::spawn(load::watch(gw.clone(), config.tiers));
    let backend = || Peer::new(&config.envelope_addr, config.rpc_key.clone());
    let limit_sync = tokio::spawn(sync::run(gw.clone(), backend(), config.sync_interval));
    // Several connections each, so one slow batch does not hold the next.
    let peers = || (0..batcher::PEERS).map(|_| backend()).collect::<Vec<_>>();
    lane.spawn(split::run(gw.clone(), peers()));
    if config.strict_limits {
        lane.spawn(reserve::run(gw.clone(), peers()));
    }
    if config.bench_opens > 0 {
        tokio::spawn(bench::inject_opens(gw.clone(), config.bench_opens));
    }
    let forget = tokio::spawn(forget_idle_users(gw.clone()));
    let forwarder = tokio::spawn(forwarder::run(
        gw.clone(),
        backend(),
        config.deliver_every,
        config.drain_timeout,
    ));
    // At shutdown, the sessions' last frames (refusals) may take a little while to
    // reach their clients.
    let quic = tokio::spawn(quic::run(
        gw.clone(),
        quic,
        config.max_connections,
        shutdown.clone(),
        config.limits.write_timeout.min(Duration::from_secs(2)),
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let stream = link::tcp(stream, config.limits.send_buffer);
                        start_session(&gw, stream, config.max_connections);
                    }
                    // Out of files (or another transient failure): pause rather than spin;
                    // the connection waits in the backlog.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    leases.abort();
    load_watch.abort();
    limit_sync.abort();
    forget.abort();
    // Sessions see the same shutdown signal and close; the forwarder drains the queue.
    let _ = forwarder.await;
    let _ = quic.await;
    let left = gw.queue.lock().map(|q| q.depth()).unwrap_or(0);
    crate::log_line!(
        "gateway {} stopped ({left} opens left in its durable queue)",
        config.id
    );
    left
}

/// A session on `link` (TCP or QUIC), or a refusal when the gateway already holds
/// `max_connections`.
fn start_session<L: link::Link>(gw: &Arc<Gateway>, link: L, max_connections: usize) {
    if gw.sessions.load(Ordering::Acquire) >= max_connections {
        tokio::spawn(conn::refuse_full(gw.clone(), link));
    } else {
        tokio::spawn(session::serve(gw.clone(), link));
    }
}

/// Drops the frame allowances of users that have used none lately, every 10 s.
async fn forget_idle_users(gw: Arc<Gateway>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        gw.client_rates.forget_idle(gw.started.elapsed());
    }
}
