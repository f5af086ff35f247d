//! Benchmark injection: synthetic opens through the gateway's real open path, as if
//! that many users had opened at once. It skips only the client connection and the
//! token check; the durable queue, the forwarder, the backend and payment all do their
//! real, durable work, so the rate at which payment credits them is the open path's
//! end-to-end capacity (bench/opens.py measures it).

use super::session::enqueue_open;
use super::state::Gateway;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use sut_wire::token::EnvelopeToken;

/// Opens waiting for their queue commit at once: like that many users' sessions each
/// with one open in flight, so the group commit can batch them.
const IN_FLIGHT: usize = 4096;

/// Round ids no timeline uses (below it, one per gateway), so synthetic envelope ids
/// never meet seeded ones; ids keep the round in 24 bits above a 40-bit index.
const BENCH_ROUND: u32 = 0x00FF_FF00;

pub(super) async fn inject_opens(gw: Arc<Gateway>, n: u64) {
    let started = tokio::time::Instant::now();
    let token = |i: u64| EnvelopeToken {
        user: (u64::from(gw.id) << 40) | i,
        envelope_id: sut_core::seed_shard::envelope_id(BENCH_ROUND - u32::from(gw.id) % 0xFF00, i),
        amount_cents: 1 + (i % 2000) as u32,
        sponsor: 1,
        round: BENCH_ROUND,
        gateway: gw.id,
    };
    let mut pending = FuturesUnordered::new();
    let mut next = 0u64;
    let mut refused = 0u64;
    loop {
        while pending.len() < IN_FLIGHT && next < n {
            let gw = gw.clone();
            let t = token(next);
            pending.push(async move { enqueue_open(&gw, t).await });
            next += 1;
        }
        match pending.next().await {
            Some(Ok(_)) => {}
            Some(Err(_)) => refused += 1,
            None => break,
        }
    }
    crate::log_line!(
        "gateway {} bench: {n} synthetic opens queued durably in {:.2} s ({refused} refused)",
        gw.id,
        started.elapsed().as_secs_f64()
    );
}
