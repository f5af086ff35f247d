//! A gateway's start: the shake core rebuilt from its seed shards and what its store
//! recovered (persisted lease ends, issue records), and the pass-through queue from the
//! entries still waiting for the backend's ack.

use super::config::{GatewayConfig, GatewayError};
use super::store::Recovered;
use crate::seeds::{self, shard_path};
use shellkit::clock::unix_ms;
use sut_core::passthrough::PassThroughQueue;
use sut_core::shake::ShakeCore;
use sut_wire::timeline::Timeline;

/// What a gateway starts from.
pub(super) struct Restored {
    pub core: ShakeCore,
    pub queue: PassThroughQueue,
    /// (round, envelopes in this gateway's shard): what it may issue.
    pub budgets: Vec<(u32, usize)>,
}

/// The core and queue as they were, and each round's budget.
pub(super) fn recover(
    config: &GatewayConfig,
    recovered: &Recovered,
) -> Result<Restored, GatewayError> {
    let mut core = ShakeCore::new(
        config.id,
        config.gateways,
        config.key.clone(),
        config.timeline.clone(),
    );
    let mut budgets = Vec::new();
    for round in &config.timeline.rounds {
        let path = shard_path(&config.seeds, round.id, config.id);
        let shard = seeds::load(&path, round.id, config.id)?;
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
    Ok(Restored {
        core,
        queue,
        budgets,
    })
}

/// Each tier's shake interval in ms, as clients are told.
pub(super) fn tier_intervals_ms(timeline: &Timeline) -> Vec<u32> {
    timeline
        .tiers
        .iter()
        .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
        .collect()
}
