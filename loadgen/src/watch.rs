//! What a run watches each second: the progress line, what the run costs the machine,
//! the live figures `/metrics` reads, and the thresholds that stop a run when they fail.

use crate::generators::Generators;
use crate::profile::Profile;
use crate::progress::Progress;
use crate::prom::Live;
use crate::resources::{Sampler, Tracker};
use crate::segment::Segment;
use crate::stages::target_at;
use crate::stats::Summary;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The segment's peak of connected users, and how many of them count as connected
/// at the peak (the hostile users connect on their own and are not counted).
fn peak_and_reach(profile: &Profile, segment: Segment) -> (u64, u64) {
    let peak_target = segment.len(profile.peak_users());
    let hostile_users = segment
        .users(profile.users)
        .filter(|u| {
            profile
                .behaviour
                .hostile
                .attack_of(*u, profile.seed)
                .is_some()
        })
        .count() as u64;
    let reach = peak_target.saturating_sub(hostile_users);
    (peak_target, reach)
}

/// What the run watches each second: the progress line, what it costs the machine,
/// and the live figures `/metrics` reads.
pub struct Watch {
    /// The thresholds that stop the run when they fail.
    aborting: Vec<crate::threshold::Threshold>,
    sampler: Sampler,
    pub tracker: Tracker,
    pub live: Arc<Live>,
    segment: Segment,
    peak_target: u64,
    reach: u64,
}

impl Watch {
    pub fn new(
        fleet: &Generators,
        sut_pid: Option<u32>,
        live: Arc<Live>,
        profile: &Profile,
        segment: Segment,
    ) -> Watch {
        let mut sampler = Sampler::new(fleet.pids(), sut_pid);
        let mut tracker = Tracker::default();
        let mut before = sampler.sample(Duration::ZERO, 0);
        fleet.add_usage(&mut before);
        tracker.before(before);
        let (peak_target, reach) = peak_and_reach(profile, segment);
        Watch {
            aborting: profile
                .thresholds
                .iter()
                .filter(|t| t.abort_on_fail)
                .cloned()
                .collect(),
            sampler,
            tracker,
            live,
            segment,
            peak_target,
            reach,
        }
    }

    /// One second of the run, `elapsed` into it; returns the first aborting threshold
    /// that no longer holds, with what was observed.
    pub fn second(
        &mut self,
        elapsed: Duration,
        stats: &Mutex<Summary>,
        progress: &mut Progress,
        fleet: &Generators,
        stages: &[crate::profile::Stage],
        hostile: Option<&crate::hostile::attacker::Hostile>,
    ) -> Option<String> {
        let snapshot = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let target = self.segment.len(target_at(stages, elapsed));
        eprintln!(
            "{}{}",
            progress.line(&snapshot, elapsed, target),
            fleet.progress()
        );
        let mut sample = self.sampler.sample(elapsed, snapshot.connected);
        self.tracker.hosts = fleet.add_usage(&mut sample);
        self.tracker
            .add(sample, target, self.peak_target, self.reach);
        let live = &self.live;
        live.target_users
            .store(target, std::sync::atomic::Ordering::Relaxed);
        *live.agents.lock().unwrap_or_else(|p| p.into_inner()) = fleet.agent_states();
        let resources = self.tracker.report();
        *live.resources.lock().unwrap_or_else(|p| p.into_inner()) = resources.clone();
        live.elapsed_ms.store(
            elapsed.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(h) = hostile {
            let now = h.figures.lock().map(|f| f.clone()).unwrap_or_default();
            *live.hostile.lock().unwrap_or_else(|p| p.into_inner()) = now;
        }
        self.aborting
            .iter()
            .filter(|t| elapsed >= t.grace)
            .find_map(|t| {
                let (observed, holds) =
                    t.evaluate(&snapshot, resources.as_ref(), elapsed.as_secs_f64());
                (!holds).then(|| {
                    format!(
                        "`{}` failed at {:.0} s (observed {})",
                        t.source,
                        elapsed.as_secs_f64(),
                        t.format_value(observed)
                    )
                })
            })
    }
}
