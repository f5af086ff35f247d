//! The live schedule state a gateway holds: the version decided on (with its signed
//! form, kept on disk), which channels an injected fault cut, how far each round is
//! seeded, and the decided-shake history stale counts come from. Applying a version is
//! [`super::schedule`]'s.

use super::metrics::ScheduleMetrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use sut_core::live_timeline::{Channel, DecidedHistory, LiveTimeline};
use sut_wire::schedule::{applied_log, OperatorPublic, SignedSchedule};
use sut_wire::timeline::Timeline;

/// Samples of the decided-shake count kept for stale counts: 20 s at one per 50 ms.
const HISTORY: usize = 400;

/// The live schedule a gateway holds.
pub(crate) struct LiveSchedule {
    pub public: OperatorPublic,
    pub(super) live: Mutex<(LiveTimeline, Option<SignedSchedule>)>,
    /// The version held, for replies that do not lock the core.
    pub version: AtomicU64,
    pub clock_offset_ms: AtomicI64,
    /// Channels taken down by an injected fault.
    down: [AtomicBool; 3],
    /// The first timeline (its budgets are the first shards').
    pub(super) first: Timeline,
    pub(super) seeds: PathBuf,
    /// Envelopes seeded so far per round, over all gateways.
    pub(super) seeded: Mutex<HashMap<u32, u64>>,
    pub decided: AtomicU64,
    pub(super) history: Mutex<DecidedHistory>,
    /// The signed version held, on disk (read back at start).
    pub(super) file: PathBuf,
    pub(super) log: PathBuf,
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

    /// The newest schedule this gateway holds (being applied, or applied).
    pub fn current(&self) -> sut_wire::schedule::Schedule {
        match self.live.lock() {
            Ok(l) => l.0.current().clone(),
            Err(p) => p.into_inner().0.current().clone(),
        }
    }

    /// The newest version this gateway holds (being applied, or applied).
    pub fn held_version(&self) -> u64 {
        self.live.lock().map_or(0, |l| l.0.version())
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
