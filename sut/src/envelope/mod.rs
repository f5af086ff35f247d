//! The envelope backend: records every open exactly once (by envelope id) and forwards
//! the credit to payment, again exactly once, through a durable outbox. It also keeps
//! the split envelopes: shares, grabs (credited through the same outbox) and the
//! recycling of what expires (see [`split_store`]).
//!
//! This file wires the parts: `tables` (the schema), [`store`] (durable records), [`state`] (what the handlers
//! share), [`handle`] (RPC dispatch), [`credits`] (the outbox to payment), [`splits`]
//! (shares, grabs, expiry), [`reservations`] (strict per-user limits) and their
//! metrics.

mod config;
mod credits;
mod handle;
mod metrics;
mod reservations;
pub mod split_store;
mod splits;
mod state;
pub mod store;
mod tables;

pub use config::{EnvelopeConfig, EnvelopeError};
pub use store::{db_path, read_opens, read_outbox, OpenRecord};

use crate::committer::GroupCommitter;
use crate::rpc;
use prometheus_client::registry::Registry;
use split_store::ExpiryQueue;
use state::Backend;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// Runs the backend until `shutdown`, then drains the outbox to payment (bounded);
/// returns the credits still in the outbox (durable, sent at the next start).
pub async fn run(
    config: EnvelopeConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<usize, EnvelopeError> {
    let path = db_path(&config.data);
    let (db, outbox, issuance) = store::open(&path)?;
    let split_ttl_ms = config.split_ttl.as_millis().min(i64::MAX as u128) as i64;
    let expiry = ExpiryQueue::load(&db, split_ttl_ms)?;
    let mut registry = Registry::default();
    let backend = Arc::new(Backend {
        committer: GroupCommitter::spawn(db, path, 4096, store::apply),
        split_ttl_ms,
        show_start_ms: config.show_start_ms,
        expiry: Mutex::new(expiry),
        splits: Default::default(),
        grabbed_cents: Default::default(),
        recycled_cents: Default::default(),
        issuance: tokio::sync::Mutex::new(issuance),
        outbox: Mutex::new(outbox.into_iter().map(|c| (c.envelope_id, c)).collect()),
        outbox_notify: Notify::new(),
        in_flight: Default::default(),
        max_in_flight: config.max_in_flight,
        recorded: Default::default(),
        outbox_depth: Default::default(),
        credited: Default::default(),
        reservations: Default::default(),
    });
    metrics::register(&backend, &mut registry);
    let refused = crate::metrics::rpc_refused(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!("envelope backend listening on {}", config.listen);

    let payment = rpc::Peer::new(&config.payment_addr, config.rpc_key.clone());
    let forwarder = tokio::spawn(credits::forward(
        backend.clone(),
        payment,
        shutdown.clone(),
        config.deliver_every,
        config.drain_timeout,
    ));
    let expirer = tokio::spawn(splits::expire(backend.clone(), shutdown.clone()));
    let handler_backend = backend.clone();
    rpc::serve(
        listener,
        config.rpc_key,
        refused,
        shutdown,
        move |request| {
            let b = handler_backend.clone();
            async move { handle::handle(&b, request).await }
        },
    )
    .await;
    let _ = expirer.await;
    let _ = forwarder.await;
    let left = backend.outbox.lock().map(|o| o.len()).unwrap_or(0);
    crate::log_line!("envelope backend stopped ({left} credits left in its outbox)");
    Ok(left)
}

#[cfg(test)]
mod tests;
