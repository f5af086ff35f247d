//! The gateway (access server): holds the long connections, decides shakes locally and,
//! through its agent, records opens in the pass-through queue and forwards them.

//!
//! This file wires the parts and runs the accept loop: [`config`], [`metrics`],
//! [`state`] (what the tasks share), [`session`] (one client's connection),
//! [`leases`] (the lease keeper), [`load`] (the load watcher that sets the tier),
//! and the agent's tasks: [`forwarder`] (the pass-through queue), [`sync`] (the shared
//! limit view), [`split`] (shares and grabs), over the durable [`store`].

mod bench;
mod config;
mod forwarder;
mod leases;
mod load;
mod metrics;
mod session;
mod split;
mod state;
pub mod store;
mod sync;

pub use config::{GatewayConfig, GatewayError};

use crate::metrics::labels;
use crate::seeds::shard_path;
use crate::store::GroupCommitter;
use metrics::{GatewayMetrics, QueueAge};
use prometheus_client::registry::Registry;
use shellkit::clock::unix_ms;
use state::Gateway;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sut_core::passthrough::PassThroughQueue;
use sut_core::shake::ShakeCore;
use tokio::sync::{watch, Notify};

/// Runs a gateway until `shutdown` turns true, then drains its queue (bounded by the
/// drain timeout) and returns.
pub async fn run(
    config: GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), GatewayError> {
    let (db, recovered) = store::open(&store::db_path(&config.data, config.id))?;
    let mut core = ShakeCore::new(
        config.id,
        config.gateways,
        config.key.clone(),
        config.timeline.clone(),
    );
    let mut budgets = Vec::new();
    for round in &config.timeline.rounds {
        let shard = crate::seeds::load(
            &shard_path(&config.seeds, round.id, config.id),
            round.id,
            config.id,
        )?;
        budgets.push((round.id, shard.envelopes.len()));
        let leased = recovered.leases.get(&round.id).copied().unwrap_or(0);
        core.load_round(shard, leased, unix_ms() - config.show_start_ms);
    }
    for record in &recovered.issued {
        core.restore_issue(record);
    }
    let mut queue = PassThroughQueue::default();
    for (seq, entry) in &recovered.queue {
        queue.push(*seq, *entry);
    }

    let mut registry = Registry::default();
    let metrics = GatewayMetrics::register(&mut registry, &config.timeline, config.gateways);
    metrics.queue_depth.set(queue.depth() as i64);
    for (round, n) in budgets {
        metrics
            .budget
            .get_or_create(&labels(&[("round", &round.to_string())]))
            .set(n as i64);
    }
    let queue = Arc::new(Mutex::new(queue));
    registry.register_collector(Box::new(QueueAge {
        queue: queue.clone(),
        show_start_ms: config.show_start_ms,
    }));
    let committer = GroupCommitter::spawn_batched(Arc::new(db), 1024, store::apply);
    registry.register_collector(Box::new(crate::store::CommitMetrics {
        db: "queue",
        stats: committer.stats.clone(),
    }));
    let split_agent = split::agent::SplitAgent::register(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;

    let gw = Arc::new(Gateway {
        id: config.id,
        core: Mutex::new(core),
        queue,
        queue_notify: Notify::new(),
        committer,
        key: config.key.clone(),
        auth: config.auth.clone(),
        show_start_ms: config.show_start_ms,
        config_version: config.timeline.version,
        heartbeat_timeout: config.heartbeat_timeout,
        metrics,
        shutdown: shutdown.clone(),
        sessions: std::sync::atomic::AtomicUsize::new(0),
        frames: std::sync::atomic::AtomicU64::new(0),
        tier: std::sync::atomic::AtomicU8::new(0),
        admit: std::sync::atomic::AtomicU32::new(sut_core::throttle_tier::ADMIT_ALL),
        top_tier: config.timeline.top_tier(),
        tier_intervals_ms: config
            .timeline
            .tiers
            .iter()
            .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
            .collect(),
        shake_cost: config.shake_cost,
        // After a restart everything is published again: the backend keeps each once.
        to_publish: Mutex::new(recovered.issued.iter().map(|r| r.issued()).collect()),
        split: split_agent,
    });
    crate::log_line!(
        "gateway {} listening on {} (issued so far {}, queue {} to forward)",
        config.id,
        config.listen,
        recovered.issued.len(),
        recovered.queue.len()
    );

    let leases = tokio::spawn(leases::keep_leases(gw.clone()));
    let load_watch = tokio::spawn(load::watch(gw.clone(), config.tiers));
    let limit_sync = tokio::spawn(sync::run(
        gw.clone(),
        config.envelope_addr.clone(),
        config.sync_interval,
    ));
    tokio::spawn(split::run(gw.clone(), config.envelope_addr.clone()));
    if config.bench_opens > 0 {
        tokio::spawn(bench::inject_opens(gw.clone(), config.bench_opens));
    }
    let forwarder = tokio::spawn(forwarder::run(
        gw.clone(),
        config.envelope_addr.clone(),
        config.drain_timeout,
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        if gw.sessions.load(std::sync::atomic::Ordering::Acquire) >= config.max_connections {
                            tokio::spawn(session::refuse_full(gw.clone(), stream));
                        } else {
                            tokio::spawn(session::serve(gw.clone(), stream));
                        }
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
    // Sessions see the same shutdown signal and close; the forwarder drains the queue.
    let _ = forwarder.await;
    let left = gw.queue.lock().map(|q| q.depth()).unwrap_or(0);
    crate::log_line!(
        "gateway {} stopped ({left} opens left in its durable queue)",
        config.id
    );
    Ok(())
}
