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
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use sut_core::live_timeline::{Channel, Offer};
use sut_wire::schedule::{Applied, Schedule, ScheduleError, SignedSchedule};
use sut_wire::timeline::Timeline;

/// Offers a version that came over `channel`: checked, and when newer, held at once
/// and applied by a task of its own ([`apply`]), whose disk reads and writes run off
/// the gateway's event loop: a slow disk never stalls a shake. Versions from the
/// gateway's own disk at start are applied here and now ([`start`]).
pub(crate) fn offer(
    gw: &Arc<Gateway>,
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
    if result == Offer::Applied && channel != Channel::Disk {
        let at = unix_ms();
        tokio::spawn(apply(gw.clone(), schedule, signed.clone(), channel, at));
    }
    Ok(result)
}

/// Loads the shards of the version to start on: the one kept on disk when it is newer
/// than the first timeline, else the first timeline's. At start, before any client,
/// so its reads may block.
pub(crate) fn start(gw: &Arc<Gateway>) -> Result<(), super::GatewayError> {
    if let Some(kept) = gw.schedule.kept() {
        // Taken only when newer than the first timeline.
        let _ = offer(gw, &kept, Channel::Disk);
    }
    let held = gw.schedule.current();
    mark_applied(gw, &held);
    let (version, timeline) = (held.version, held.timeline);
    let wanted = seeds_wanted(gw, &timeline);
    let mut read = read_seeds(gw.schedule.seeds_dir(), gw.id, wanted);
    if let Some(at) = read.iter().position(|r| r.is_err()) {
        if let Err(e) = read.swap_remove(at) {
            return Err(e.into());
        }
    }
    install(gw, version, &timeline, read);
    Ok(())
}

/// Applies a version this gateway now holds: the seed shards it needs read, and its
/// record written, on the blocking pool; the core switched on the loop.
async fn apply(
    gw: Arc<Gateway>,
    schedule: Schedule,
    signed: SignedSchedule,
    channel: Channel,
    at: i64,
) {
    let wanted = seeds_wanted(&gw, &schedule.timeline);
    let dir = gw.schedule.seeds_dir().to_path_buf();
    let id = gw.id;
    let read = tokio::task::spawn_blocking(move || read_seeds(&dir, id, wanted))
        .await
        .unwrap_or_default();
    for e in read.iter().filter_map(|r| r.as_ref().err()) {
        crate::log_line!("gateway {}: version {}: {e}", gw.id, schedule.version);
    }
    mark_applied(&gw, &schedule);
    install(&gw, schedule.version, &schedule.timeline, read);
    let record = applied_record(&gw, &schedule, channel, at);
    crate::log_line!(
        "gateway {} on timeline version {} ({}) by {}, {} ms after signing",
        gw.id,
        schedule.version,
        schedule.change,
        channel.name(),
        at - schedule.signed_unix_ms
    );
    let live = &gw.schedule;
    let (file, log) = (live.file.clone(), live.log.clone());
    let _ = tokio::task::spawn_blocking(move || keep(&file, &log, &signed, &record)).await;
}

/// Marks `schedule` the version applied, with its clock correction and rates, unless
/// a newer one was applied already.
fn mark_applied(gw: &Gateway, schedule: &Schedule) {
    let live = &gw.schedule;
    if live.version.fetch_max(schedule.version, Ordering::AcqRel) <= schedule.version {
        live.clock_offset_ms
            .store(schedule.clock_offset_ms, Ordering::Release);
        live.metrics.version.set(schedule.version as i64);
        gw.metrics.set_rates(&schedule.timeline, gw.gateways);
    }
}

/// What this version applied as, with the shakes decided since it was signed.
fn applied_record(gw: &Gateway, schedule: &Schedule, channel: Channel, at: i64) -> Applied {
    let live = &gw.schedule;
    let decided = live.decided.load(Ordering::Relaxed);
    let stale = match schedule.signed_unix_ms {
        0 => 0,
        signed => live
            .history
            .lock()
            .map(|h| h.since(signed, at, decided))
            .unwrap_or(0),
    };
    live.metrics.stale.inc_by(stale);
    Applied {
        gateway: gw.id,
        version: schedule.version,
        change: schedule.change.clone(),
        channel: channel.name().to_string(),
        signed_unix_ms: schedule.signed_unix_ms,
        applied_unix_ms: at,
        stale_shakes: stale,
    }
}

/// Keeps the version on the gateway's disk (a restart resumes on it) and appends its
/// record to the applied log.
fn keep(file: &Path, log: &Path, signed: &SignedSchedule, record: &Applied) {
    if let Err(e) = crate::files::write_atomic(file, &signed.to_json()) {
        crate::log_line!(
            "gateway {}: cannot keep version {}: {e}",
            record.gateway,
            record.version
        );
    }
    let line = serde_json::to_string(record).unwrap_or_default();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        crate::log_line!(
            "gateway {}: cannot record version {}: {e}",
            record.gateway,
            record.version
        );
    }
}

/// Seeds a round needs beyond what the core holds: up to `upto` of its envelopes over
/// all gateways.
#[derive(Debug, Clone)]
struct Wanted {
    round: u32,
    upto: u64,
    need: Need,
}

#[derive(Debug, Clone)]
enum Need {
    /// The round's whole shard (a round new to this gateway); `base` is its budget in
    /// the first timeline, `leased` the lease end its store held at start.
    Round { base: Option<u64>, leased: u64 },
    /// More envelopes of a round it holds (a raised budget), from `from` on.
    More { from: u64 },
}

/// What a read of seeds brought for a round, and how far its envelopes reach.
struct Read {
    round: u32,
    upto: u64,
    reach: u64,
    got: Got,
}

enum Got {
    Round {
        shard: sut_core::seed_shard::SeedShard,
        leased: u64,
    },
    More {
        from: u64,
        envelopes: Vec<sut_core::seed_shard::SeedEnvelope>,
    },
}

/// The seeds `timeline` needs beyond what the core holds now.
fn seeds_wanted(gw: &Gateway, timeline: &Timeline) -> Vec<Wanted> {
    let live = &gw.schedule;
    let (Ok(core), Ok(seeded)) = (gw.core.lock(), live.seeded.lock()) else {
        return Vec::new();
    };
    timeline
        .rounds
        .iter()
        .filter_map(|r| {
            let need = if !core.has_round(r.id) {
                Need::Round {
                    base: live.first_budget(r.id),
                    leased: gw.leases_at_start.get(&r.id).copied().unwrap_or(0),
                }
            } else {
                let from = seeded.get(&r.id).copied().unwrap_or(0);
                if r.envelopes <= from {
                    return None;
                }
                Need::More { from }
            };
            Some(Wanted {
                round: r.id,
                upto: r.envelopes,
                need,
            })
        })
        .collect()
}

/// Reads the wanted seeds (blocking file reads).
fn read_seeds(
    dir: &Path,
    gateway: u16,
    wanted: Vec<Wanted>,
) -> Vec<Result<Read, seeds::SeedFileError>> {
    wanted
        .into_iter()
        .map(|Wanted { round, upto, need }| {
            let (got, reach) = match need {
                Need::Round { base, leased } => {
                    let (shard, reach) = seeds::load_round(dir, round, gateway, base, upto)?;
                    (Got::Round { shard, leased }, reach)
                }
                Need::More { from } => {
                    let (envelopes, reach) = seeds::load_batches(dir, round, gateway, from, upto)?;
                    (Got::More { from, envelopes }, reach)
                }
            };
            Ok(Read {
                round,
                upto,
                reach,
                got,
            })
        })
        .collect()
}

/// Puts what was read into the core (unless another apply did meanwhile) and switches
/// it to `version`'s timeline when that is newer than the one it decides on.
fn install(
    gw: &Gateway,
    version: u64,
    timeline: &Timeline,
    read: Vec<Result<Read, seeds::SeedFileError>>,
) {
    let live = &gw.schedule;
    let show_ms = gw.show_ms();
    let (Ok(mut core), Ok(mut seeded)) = (gw.core.lock(), live.seeded.lock()) else {
        return;
    };
    for Read {
        round,
        upto,
        reach,
        got,
    } in read.into_iter().flatten()
    {
        match got {
            Got::Round { shard, leased } => {
                if core.has_round(round) {
                    continue;
                }
                core.load_round(shard, leased, show_ms);
            }
            Got::More { from, envelopes } => {
                if seeded.get(&round).copied().unwrap_or(0) != from {
                    continue;
                }
                core.extend_round(round, &envelopes);
            }
        }
        seeded.insert(round, reach);
        if reach < upto {
            crate::log_line!(
                "gateway {}: round {round} is seeded to {reach} of its {upto} envelopes; it issues what is seeded",
                gw.id
            );
        }
        gw.metrics.set_budget(round, core.shard_len(round));
    }
    if version > core.version() {
        core.set_schedule(version, timeline.clone(), show_ms);
    }
}
