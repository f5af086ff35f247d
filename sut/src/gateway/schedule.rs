//! The schedule version this gateway runs on, and what taking a newer one does: checked
//! against the operator's public key, kept on the gateway's own disk, the shards a
//! raised budget or a new round needs loaded, then handed to the shake core. Every
//! channel ([`super::channels`]) offers versions here and nowhere else.
//!
//! Each version applied is also recorded on disk (`gateway-N.timeline.jsonl`: version,
//! first channel, when, and how many shakes this gateway decided on the older version
//! after the operator signed the newer one), which is what a run's report reads.

use super::state::Gateway;
use crate::seeds;
use shellkit::clock::unix_ms;
use std::io::Write;
use std::sync::atomic::Ordering;
use sut_core::live_timeline::{Channel, Offer};
use sut_wire::schedule::{Applied, Schedule, ScheduleError, SignedSchedule};
use sut_wire::timeline::Timeline;

/// Offers a version that came over `channel`: checked, and applied when newer.
pub(crate) fn offer(
    gw: &Gateway,
    signed: &SignedSchedule,
    channel: Channel,
) -> Result<Offer, ScheduleError> {
    let live = &gw.schedule;
    let schedule = match live.public.verify(signed) {
        Ok(s) => s,
        Err(e) => {
            live.metrics.offered(channel, "refused");
            return Err(e);
        }
    };
    let version = schedule.version;
    let result = {
        let Ok(mut held) = live.live.lock() else {
            return Ok(Offer::Older);
        };
        let result = held.0.offer(schedule.clone());
        if result == Offer::Applied {
            held.1 = Some(signed.clone());
        }
        result
    };
    live.metrics.offered(channel, result.name());
    if result == Offer::Applied {
        if channel != Channel::Disk {
            if let Err(e) = crate::files::write_atomic(&live.file, &signed.to_json()) {
                crate::log_line!(
                    "gateway {}: cannot keep version {version} on disk: {e}",
                    gw.id
                );
            }
        }
        take(gw, &schedule, channel);
    }
    Ok(result)
}

/// Loads the shards of the version to start on: the one kept on disk when it is newer
/// than the first timeline, else the first timeline's.
pub(crate) fn start(gw: &Gateway) -> Result<(), super::GatewayError> {
    if let Some(kept) = gw.schedule.kept() {
        if offer(gw, &kept, Channel::Disk).ok() == Some(Offer::Applied) {
            return Ok(());
        }
    }
    let first = gw.schedule.first.clone();
    let show_ms = gw.show_ms();
    if let Ok(mut core) = gw.core.lock() {
        if let Some(e) = load_seeds(gw, &mut core, &first, show_ms)
            .into_iter()
            .next()
        {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Makes `schedule` the one shakes are decided on.
fn take(gw: &Gateway, schedule: &Schedule, channel: Channel) {
    let live = &gw.schedule;
    let now = unix_ms();
    live.clock_offset_ms
        .store(schedule.clock_offset_ms, Ordering::Release);
    let show_ms = gw.show_ms();
    if let Ok(mut core) = gw.core.lock() {
        for e in load_seeds(gw, &mut core, &schedule.timeline, show_ms) {
            crate::log_line!("gateway {}: version {}: {e}", gw.id, schedule.version);
        }
        core.set_schedule(schedule.version, schedule.timeline.clone(), show_ms);
    }
    live.version.store(schedule.version, Ordering::Release);
    live.metrics.version.set(schedule.version as i64);
    gw.metrics.set_rates(&schedule.timeline, gw.gateways);
    if channel == Channel::Disk {
        // Applied before this restart, and recorded then.
        return;
    }
    let decided = live.decided.load(Ordering::Relaxed);
    let stale = live
        .history
        .lock()
        .map(|h| h.since(schedule.signed_unix_ms, now, decided))
        .unwrap_or(0);
    let stale = if schedule.signed_unix_ms > 0 {
        stale
    } else {
        0
    };
    live.metrics.stale.inc_by(stale);
    let record = Applied {
        gateway: gw.id,
        version: schedule.version,
        change: schedule.change.clone(),
        channel: channel.name().to_string(),
        signed_unix_ms: schedule.signed_unix_ms,
        applied_unix_ms: now,
        stale_shakes: stale,
    };
    let line = serde_json::to_string(&record).unwrap_or_default();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&live.log)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        crate::log_line!(
            "gateway {}: cannot record version {}: {e}",
            gw.id,
            schedule.version
        );
    }
    crate::log_line!(
        "gateway {} on timeline version {} ({}) by {}, {} ms after signing",
        gw.id,
        schedule.version,
        schedule.change,
        channel.name(),
        now - schedule.signed_unix_ms
    );
}

/// Loads what `timeline` issues beyond the shards the core holds: a new round's
/// shard, a raised budget's batches. A batch not (yet) on disk leaves the round
/// issuing what it has, and is said; a shard that cannot be read is returned.
pub(crate) fn load_seeds(
    gw: &Gateway,
    core: &mut sut_core::shake::ShakeCore,
    timeline: &Timeline,
    show_ms: i64,
) -> Vec<seeds::SeedFileError> {
    let live = &gw.schedule;
    let mut errors = Vec::new();
    let Ok(mut seeded) = live.seeded.lock() else {
        return errors;
    };
    for round in &timeline.rounds {
        let loaded = if core.has_round(round.id) {
            let from = seeded.get(&round.id).copied().unwrap_or(0);
            if round.envelopes <= from {
                continue;
            }
            seeds::load_batches(live.seeds_dir(), round.id, gw.id, from, round.envelopes).map(
                |(more, reach)| {
                    core.extend_round(round.id, &more);
                    reach
                },
            )
        } else {
            let base = live.first_budget(round.id);
            seeds::load_round(live.seeds_dir(), round.id, gw.id, base, round.envelopes).map(
                |(shard, reach)| {
                    let leased = gw.leases_at_start.get(&round.id).copied().unwrap_or(0);
                    core.load_round(shard, leased, show_ms);
                    reach
                },
            )
        };
        match loaded {
            Ok(reach) => {
                seeded.insert(round.id, reach);
                if reach < round.envelopes {
                    crate::log_line!(
                        "gateway {}: round {} is seeded to {} of its {} envelopes; it issues what is seeded",
                        gw.id, round.id, reach, round.envelopes
                    );
                }
            }
            Err(e) => errors.push(e),
        }
        gw.metrics.set_budget(round.id, core.shard_len(round.id));
    }
    errors
}
