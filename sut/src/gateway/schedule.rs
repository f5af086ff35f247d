//! The schedule version this gateway runs on, and what taking a newer one does: checked
//! against the operator's public key, kept on the gateway's own disk, the shards a
//! raised budget or a new round needs loaded, then handed to the shake core. Every
//! channel ([`super::channels`]) offers versions here and nowhere else.
//!
//! Each version applied is also recorded on disk (`gateway-N.timeline.jsonl`: version,
//! first channel, when, and how many shakes this gateway decided on the older version
//! after the operator signed the newer one), which is what a run's report reads.

use super::metrics::ScheduleMetrics;
use super::state::Gateway;
use crate::seeds;
use shellkit::clock::unix_ms;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use sut_core::live_timeline::{Channel, DecidedHistory, LiveTimeline, Offer};
use sut_wire::schedule::{
    applied_log, Applied, OperatorPublic, Schedule, ScheduleError, SignedSchedule,
};
use sut_wire::timeline::Timeline;

/// Samples of the decided-shake count kept for stale counts: 20 s at one per 50 ms.
const HISTORY: usize = 400;

/// The live schedule a gateway holds.
pub(crate) struct LiveSchedule {
    pub public: OperatorPublic,
    live: Mutex<(LiveTimeline, Option<SignedSchedule>)>,
    /// The version held, for replies that do not lock the core.
    pub version: AtomicU64,
    pub clock_offset_ms: AtomicI64,
    /// Channels taken down by an injected fault.
    down: [AtomicBool; 3],
    /// The first timeline (its budgets are the first shards').
    first: Timeline,
    seeds: PathBuf,
    /// Envelopes seeded so far per round, over all gateways.
    seeded: Mutex<HashMap<u32, u64>>,
    pub decided: AtomicU64,
    history: Mutex<DecidedHistory>,
    /// The signed version held, on disk (read back at start).
    file: PathBuf,
    log: PathBuf,
    pub metrics: ScheduleMetrics,
}

fn index(c: Channel) -> Option<usize> {
    Channel::LIVE.iter().position(|l| *l == c)
}

impl LiveSchedule {
    pub fn new(
        first: &Timeline,
        public: OperatorPublic,
        data: &Path,
        gateway: u16,
        metrics: ScheduleMetrics,
    ) -> Self {
        let start = crate::schedule_files::first_schedule(first);
        metrics.version.set(start.version as i64);
        LiveSchedule {
            public,
            version: AtomicU64::new(start.version),
            clock_offset_ms: AtomicI64::new(0),
            live: Mutex::new((LiveTimeline::new(start), None)),
            down: Default::default(),
            first: first.clone(),
            seeds: data.join("seeds"),
            seeded: Mutex::new(HashMap::new()),
            decided: AtomicU64::new(0),
            history: Mutex::new(DecidedHistory::new(HISTORY)),
            file: data.join(format!("gateway-{gateway}.schedule.json")),
            log: applied_log(data, gateway),
            metrics,
        }
    }

    /// The version this gateway kept on disk before a restart, if any and if it
    /// verifies.
    pub fn kept(&self) -> Option<SignedSchedule> {
        let bytes = std::fs::read(&self.file).ok()?;
        let signed = SignedSchedule::from_json(&bytes).ok()?;
        self.public.verify(&signed).ok().map(|_| signed)
    }

    pub fn is_down(&self, c: Channel) -> bool {
        index(c).is_some_and(|i| self.down[i].load(Ordering::Acquire))
    }

    pub fn set_down(&self, c: Channel, down: bool) {
        if let Some(i) = index(c) {
            self.down[i].store(down, Ordering::Release);
            self.metrics.channel_down(c, down);
        }
    }

    /// The signed version held (none while on the first timeline).
    pub fn signed(&self) -> Option<SignedSchedule> {
        self.live.lock().ok()?.1.clone()
    }

    pub fn sample(&self, now_ms: i64) {
        if let Ok(mut h) = self.history.lock() {
            h.sample(now_ms, self.decided.load(Ordering::Relaxed));
        }
    }

    /// The first timeline's budget of a round (what its first shard holds).
    pub fn first_budget(&self, round: u32) -> Option<u64> {
        self.first.round(round).map(|r| r.envelopes)
    }

    /// The version held and its countdown at `show_ms`.
    pub fn countdown(&self, show_ms: i64) -> (u64, u32) {
        self.live
            .lock()
            .map(|l| {
                let s = l.0.current();
                (s.version, s.timeline.countdown_ms(show_ms))
            })
            .unwrap_or((0, sut_wire::timeline::NO_ROUND_LEFT))
    }

    pub fn seeds_dir(&self) -> &Path {
        &self.seeds
    }
}

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
