//! The gateway's load signal, measured: queueing delay in the event loop and the
//! process's CPU use, one window at a time, fed to the [`TierController`] whose tier
//! every reply then carries.
//!
//! Queueing delay is measured as DAGOR does it in spirit: how late work starts after it
//! could have. A probe asks the runtime to wake it after a short sleep; on a
//! single-threaded runtime it can only run once everything queued before it has run,
//! so its lateness is what a frame arriving then waits before its handling begins.
//! Probing costs a wake-up per probe, so a gateway handling little probes rarely: one of
//! dozens of idle gateways on a machine should stay asleep.
//!
//! A probe is also late when the gateway's thread was ready but waited for a core that
//! other processes held: the machine was busy, not this gateway's loop (dozens of
//! gateways and the load generator share two cores here; a ramp of connections fills
//! them). That wait is the kernel's to report (`/proc/thread-self/schedstat`), and it
//! counts only as much as the gateway itself is busy
//! ([`TierController::own_lateness`]): the tier answers this gateway's own queueing,
//! which shedding shakes can relieve.

use super::state::Gateway;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use sut_core::admission::Admission;
use sut_core::throttle_tier::{LoadSample, TierController, TierPolicy};
use tokio::time::Instant;

/// One decision per window.
const WINDOW: Duration = Duration::from_millis(250);
/// Probe period while busy; while nearly idle (at tier 0, admitting all) a window is
/// one probe a second.
const PROBE_BUSY: Duration = Duration::from_millis(5);
const PROBE_IDLE: Duration = Duration::from_secs(1);
/// Frames a second above which the gateway counts as busy.
const BUSY_FRAMES_PER_S: f64 = 200.0;

/// Time this thread has spent ready to run but waiting for a core, as the kernel counts
/// it; `None` where the kernel does not say (then no probe's lateness is excused).
struct CoreWait {
    file: Option<File>,
}

impl CoreWait {
    /// Opened from the thread it measures: the runtime's, where the watcher runs.
    fn open() -> CoreWait {
        CoreWait {
            file: File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    fn total(&self) -> Option<Duration> {
        let mut buf = [0u8; 96];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        waited(std::str::from_utf8(&buf[..n]).ok()?)
    }
}

/// The wait on the run queue in a schedstat line: `run_ns wait_ns timeslices`.
fn waited(schedstat: &str) -> Option<Duration> {
    let ns = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Admission as the load watcher drives it: on the tier policy's thresholds.
pub(super) fn admission() -> Admission {
    let policy = TierPolicy::standard(0);
    Admission::new(policy.delay_high, policy.delay_low)
}

/// Measures each window, decides the tier and publishes it (and the measurements as
/// metrics). With tiers switched off the measurements still go out and the tier stays 0.
pub(super) async fn watch(gw: Arc<Gateway>, enabled: bool) {
    let mut controller = TierController::new(TierPolicy::standard(gw.top_tier));
    let mut last_cpu = shellkit::cpu::process_seconds();
    let mut last_frames = gw.frames.load(Ordering::Relaxed);
    let mut probe = PROBE_IDLE;
    let core_wait = CoreWait::open();
    let mut last_stale = gw.stale.load(Ordering::Relaxed);
    loop {
        let start = Instant::now();
        let window = if probe == PROBE_IDLE {
            PROBE_IDLE
        } else {
            WINDOW
        };
        let (mut late_sum, mut probes) = (Duration::ZERO, 0u32);
        while start.elapsed() < window {
            let due = Instant::now() + probe;
            if enabled {
                // Sessions read this to tell how far behind the loop is (see
                // `sut_core::throttle_tier::STALE_AFTER`).
                let due_us = (gw.started.elapsed() + probe).as_micros() as u64;
                gw.probe_due_us.store(due_us, Ordering::Release);
            }
            let waited_before = core_wait.total();
            tokio::time::sleep_until(due).await;
            let late = Instant::now().saturating_duration_since(due);
            let waited = core_wait
                .total()
                .zip(waited_before)
                .map(|(after, before)| after.saturating_sub(before));
            let lateness = controller.own_lateness(late, waited);
            late_sum += lateness;
            probes += 1;
            if enabled {
                let now = gw.started.elapsed();
                if let Ok(mut admission) = gw.admission.lock() {
                    admission.probe(now, lateness);
                }
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu_now = shellkit::cpu::process_seconds();
        let stale = gw.stale.load(Ordering::Relaxed);
        let frames = gw.frames.load(Ordering::Relaxed);
        let queue_delay = controller.window_delay(
            late_sum / probes.max(1),
            stale - last_stale,
            frames - last_frames,
        );
        let (counts, admitting) = match gw.admission.lock() {
            Ok(mut admission) => (
                admission.window(gw.started.elapsed(), queue_delay),
                admission.rate().is_some(),
            ),
            Err(_) => (Default::default(), false),
        };
        let sample = LoadSample {
            queue_delay,
            cpu: (cpu_now - last_cpu) / elapsed.max(1e-6),
            turned_away: counts.turned_away_share(),
        };
        last_stale = stale;
        last_cpu = cpu_now;
        let settled = controller.tier() == 0 && !admitting;
        let busy = (frames - last_frames) as f64 / elapsed.max(1e-6) > BUSY_FRAMES_PER_S;
        probe = if busy || !settled {
            PROBE_BUSY
        } else {
            PROBE_IDLE
        };
        last_frames = frames;
        let decided = controller.observe(sample);
        let tier = if enabled { decided } else { 0 };
        gw.metrics.admitted.set(1.0 - sample.turned_away);
        let before = gw.tier.swap(tier, Ordering::AcqRel);
        if before != tier {
            crate::log_line!(
                "gateway {} tier {before} -> {tier} (queueing delay {:.1} ms, cpu {:.0} %)",
                gw.id,
                sample.queue_delay.as_secs_f64() * 1e3,
                controller.cpu() * 100.0
            );
        }
        gw.metrics.tier.set(tier as i64);
        gw.metrics.queue_delay.set(sample.queue_delay.as_secs_f64());
        gw.metrics.cpu.set(controller.cpu());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_a_core_is_read_from_schedstat() {
        assert_eq!(
            waited("78035579 281699 22\n"),
            Some(Duration::from_nanos(281699))
        );
        assert_eq!(waited("78035579"), None);
        assert_eq!(waited(""), None);
        assert_eq!(waited("1 x 2"), None);
    }

    #[test]
    fn this_kernel_reports_the_wait() {
        // Read from a test thread: present on Linux with scheduler statistics.
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            assert!(CoreWait::open().total().is_some());
        }
    }
}
