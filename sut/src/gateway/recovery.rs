//! A gateway's start: the shake core rebuilt from what its store recovered (issue
//! records, persisted lease ends), and the pass-through queue from the entries still
//! waiting for the backend's ack.

use super::config::GatewayConfig;
use super::store::Recovered;
use std::collections::HashMap;
use sut_core::passthrough::PassThroughQueue;
use sut_core::shake::ShakeCore;
use sut_wire::timeline::Timeline;

/// What a gateway starts from.
pub(super) struct Restored {
    /// The core with its users' issues replayed; its rounds' shards are loaded once
    /// the schedule version to run on is known ([`super::schedule::load_seeds`]).
    pub core: ShakeCore,
    pub queue: PassThroughQueue,
    /// Lease ends persisted per round.
    pub leases: HashMap<u32, u64>,
}

/// The core and queue as they were.
pub(super) fn recover(config: &GatewayConfig, recovered: &Recovered) -> Restored {
    let mut core = ShakeCore::new(
        config.id,
        config.gateways,
        config.key.clone(),
        config.timeline.clone(),
    );
    for record in &recovered.issued {
        core.restore_issue(record);
    }
    let mut queue = PassThroughQueue::default();
    for (seq, entry) in &recovered.queue {
        queue.push(*seq, *entry);
    }
    Restored {
        core,
        queue,
        leases: recovered.leases.iter().map(|(r, e)| (*r, *e)).collect(),
    }
}

/// Each tier's shake interval in ms, as clients are told.
pub(super) fn tier_intervals_ms(timeline: &Timeline) -> Vec<u32> {
    timeline
        .tiers
        .iter()
        .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
        .collect()
}
