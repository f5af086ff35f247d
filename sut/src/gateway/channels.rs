//! The live timeline's three independent channels into a gateway (seed mechanism 5),
//! any one of which alone brings every version:
//!
//! - **push**: a watch on each config service (two instances): a long poll answered
//!   the moment the service holds a newer version;
//! - **pull**: a poll of the versioned source in the data directory (`timeline/`),
//!   every [`PULL_EVERY`];
//! - **gossip**: a gateway that applies a version passes it to [`FANOUT`] random peers,
//!   and twice a second offers what it holds to one random peer (so a version one
//!   gateway has reaches all, even past peers that were down).
//!
//! Each channel can be taken down at this gateway by an injected fault
//! (`Rpc::ChannelFault` on the peer port, from `sut up`'s `channel NAME down`): it then
//! neither takes nor sends anything, as if its network path were cut. Whatever a
//! channel brings goes through [`super::schedule::offer`], which keeps only a checked,
//! newer version, so a channel that is slow, repeats itself or delivers out of order
//! does no harm.

use super::config::ChannelConfig;
use super::peers::Peers;
use super::schedule::offer;
use super::state::Gateway;
use crate::config_service::WATCH_CALL_TIMEOUT;
use crate::rpc::{self, Peer, Rpc};
use shellkit::clock::unix_ms;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use sut_core::live_timeline::{Channel, Offer};
use sut_wire::schedule::SignedSchedule;

/// How often the pull channel looks at the versioned source.
pub const PULL_EVERY: Duration = Duration::from_millis(250);
/// Peers a gateway passes a newly applied version to: with 6, a version one gateway
/// has reaches all but about e^-6 (a quarter of a percent) of a fleet by the first
/// spread alone; the periodic offers below catch the rest.
pub const FANOUT: usize = 6;
/// How often a gateway offers what it holds to one random peer.
const GOSSIP_EVERY: Duration = Duration::from_millis(500);
/// How often the decided-shake count is sampled (for stale counts).
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Starts every channel's tasks; they end with the gateway's runtime.
pub(super) async fn start(
    gw: Arc<Gateway>,
    config: ChannelConfig,
) -> Result<(), crate::listen::ListenError> {
    for addr in &config.config_addrs {
        tokio::spawn(push(gw.clone(), Peer::new(addr, config.rpc_key.clone())));
    }
    tokio::spawn(pull(gw.clone(), config.data.clone()));
    tokio::spawn(sample(gw.clone()));
    if let Some(addr) = &config.gossip {
        let listener = crate::listen::bind(addr).await?;
        let peers = Peers::new(config.data.clone(), addr.clone(), config.rpc_key.clone());
        tokio::spawn(gossip_on(gw.clone(), peers.clone()));
        let shutdown = gw.shutdown.clone();
        let refused = prometheus_client::metrics::counter::Counter::default();
        tokio::spawn(rpc::serve(
            listener,
            config.rpc_key,
            refused,
            shutdown,
            move |request| {
                let gw = gw.clone();
                let peers = peers.clone();
                async move { peer_request(&gw, &peers, request) }
            },
        ));
    }
    Ok(())
}

/// The push channel from one config service.
async fn push(gw: Arc<Gateway>, mut service: Peer) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if gw.schedule.is_down(Channel::Push) {
            service.reset();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let have = gw.schedule.held_version();
        match service
            .call(Rpc::WatchSchedule { have }, WATCH_CALL_TIMEOUT)
            .await
        {
            Some(Ok(Rpc::Schedule { signed })) => {
                backoff = Duration::from_millis(200);
                // Cut while the watch was out: what it brought is lost with the path.
                if !gw.schedule.is_down(Channel::Push) {
                    take(&gw, &signed, Channel::Push);
                }
            }
            Some(Ok(Rpc::ScheduleHeld { .. })) => backoff = Duration::from_millis(200),
            _ => {
                service.reset();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The pull channel: the data directory's versioned source.
async fn pull(gw: Arc<Gateway>, data: PathBuf) {
    let mut tick = tokio::time::interval(PULL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if gw.schedule.is_down(Channel::Pull) {
            continue;
        }
        // The source is files: read off the loop, which a slow disk must never stall.
        let held = gw.schedule.held_version();
        let (dir, public) = (data.clone(), gw.schedule.public.clone());
        let found = tokio::task::spawn_blocking(move || {
            let latest = crate::schedule_files::latest_number(&dir);
            (latest > held).then(|| crate::schedule_files::load_version(&dir, latest, &public))
        })
        .await
        .ok()
        .flatten();
        match found {
            Some(Ok((_, signed))) => take(&gw, &signed, Channel::Pull),
            Some(Err(e)) => crate::log_line!("gateway {}: pull: {e}", gw.id),
            None => {}
        }
    }
}

/// Offers a version from a channel; an applied one is passed on by gossip.
fn take(gw: &Arc<Gateway>, signed: &SignedSchedule, channel: Channel) {
    match offer(gw, signed, channel) {
        Ok(Offer::Applied) => {
            if let Some(peers) = gw.peers.get() {
                tokio::spawn(fan_out(gw.clone(), peers.clone(), signed.clone()));
            }
        }
        Ok(_) => {}
        Err(e) => crate::log_line!(
            "gateway {}: a version from {} refused: {e}",
            gw.id,
            channel.name()
        ),
    }
}

/// What a peer (another gateway, the operator's tool, the supervisor) asks.
fn peer_request(gw: &Arc<Gateway>, peers: &Peers, request: Rpc) -> Rpc {
    let held = |gw: &Gateway| Rpc::ScheduleHeld {
        version: gw.schedule.version.load(Ordering::Acquire),
    };
    match request {
        Rpc::Gossip { signed } => {
            if gw.schedule.is_down(Channel::Gossip) {
                return Rpc::Failed {
                    message: "the gossip channel is down at this gateway".into(),
                };
            }
            let _ = gw.peers.set(peers.clone());
            match offer(gw, &signed, Channel::Gossip) {
                Ok(Offer::Applied) => {
                    tokio::spawn(fan_out(gw.clone(), peers.clone(), signed));
                    held(gw)
                }
                Ok(_) => held(gw),
                Err(e) => Rpc::Failed {
                    message: format!("refused: {e}"),
                },
            }
        }
        Rpc::ChannelFault { channel, down } => match Channel::parse(&channel) {
            Some(c) => {
                gw.schedule.set_down(c, down);
                crate::log_line!(
                    "gateway {}: timeline channel {channel} {}",
                    gw.id,
                    if down { "down" } else { "up" }
                );
                held(gw)
            }
            None => Rpc::Failed {
                message: format!("no channel `{channel}`; use push, pull or gossip"),
            },
        },
        other => Rpc::Failed {
            message: format!("a gateway's peer port does not take {other:?}"),
        },
    }
}

/// Passes a version to [`FANOUT`] random peers.
async fn fan_out(gw: Arc<Gateway>, peers: Peers, signed: SignedSchedule) {
    if gw.schedule.is_down(Channel::Gossip) {
        return;
    }
    let targets = peers.random(FANOUT).await;
    let calls = targets.into_iter().map(|addr| {
        let signed = signed.clone();
        let key = peers.key.clone();
        async move {
            let mut p = Peer::new(&addr, key);
            let _ = p.call(Rpc::Gossip { signed }, Duration::from_secs(1)).await;
        }
    });
    futures_util::future::join_all(calls).await;
}

/// Every [`GOSSIP_EVERY`], offers the version held to one random peer.
async fn gossip_on(gw: Arc<Gateway>, peers: Peers) {
    let _ = gw.peers.set(peers.clone());
    let mut tick = tokio::time::interval(GOSSIP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if gw.schedule.is_down(Channel::Gossip) {
            continue;
        }
        let Some(signed) = gw.schedule.signed() else {
            continue;
        };
        if let Some(addr) = peers.random(1).await.pop() {
            let mut p = Peer::new(&addr, peers.key.clone());
            let _ = p.call(Rpc::Gossip { signed }, Duration::from_secs(1)).await;
        }
    }
}

async fn sample(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        gw.schedule.sample(unix_ms());
    }
}
