//! The lease keeper: persists issuance leases ahead of need (seed mechanism 2: a
//! cursor lease is durable before any envelope is issued from it, so a crash may skip
//! ids, never repeat one).

use super::state::Gateway;
use super::store::GatewayOp;
use std::sync::Arc;
use std::time::Duration;

/// Persists issuance leases ahead of need, so shakes rarely wait for one, as often as
/// the core's [`ShakeCore::lease_check_pause`] says.
pub(super) async fn keep_leases(gw: Arc<Gateway>) {
    loop {
        let pause = gw
            .core
            .lock()
            .map(|c| c.lease_check_pause(gw.show_ms()))
            .unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
        let wanted = gw
            .core
            .lock()
            .map(|mut c| c.wanted_leases(gw.show_ms()))
            .unwrap_or_default();
        for (round, end) in wanted {
            let granted = gw.committer.submit(GatewayOp::Lease { round, end }).await;
            if let Ok(mut core) = gw.core.lock() {
                match granted {
                    Ok(_) => core.lease_granted(round, end),
                    Err(_) => core.lease_failed(round),
                }
            }
        }
    }
}
