//! When each simulated user is connected, from the profile's stages.
//!
//! The stages draw a piecewise-linear curve of connected users from 0. User `i`
//! (0-based) is connected while the curve is above `i`: on a ramp up the lower
//! indices connect first, on a ramp down the higher ones leave first.

use crate::profile::Stage;
use std::time::Duration;

/// The spans (from the run's start) during which `user` holds its connection.
pub fn user_windows(stages: &[Stage], user: u64) -> Vec<(Duration, Duration)> {
    let mut windows = Vec::new();
    let mut level = 0u64;
    let mut t0 = Duration::ZERO;
    let mut open: Option<Duration> = None;
    for stage in stages {
        let target = stage.target;
        if target > level && (level..target).contains(&user) {
            let frac = (user - level) as f64 / (target - level) as f64;
            open = Some(t0 + stage.duration.mul_f64(frac));
        } else if target < level && (target..level).contains(&user) {
            let frac = (level - user) as f64 / (level - target) as f64;
            if let Some(start) = open.take() {
                windows.push((start, t0 + stage.duration.mul_f64(frac)));
            }
        }
        level = target;
        t0 += stage.duration;
    }
    if let Some(start) = open {
        windows.push((start, t0));
    }
    windows
}

/// Users the curve asks to be connected at `t`.
pub fn target_at(stages: &[Stage], t: Duration) -> u64 {
    let mut level = 0u64;
    let mut t0 = Duration::ZERO;
    for stage in stages {
        if t < t0 + stage.duration {
            let frac = (t - t0).as_secs_f64() / stage.duration.as_secs_f64();
            let curve = level as f64 + (stage.target as f64 - level as f64) * frac;
            // As the windows have it: rising, user u is on from the moment the curve
            // reaches u (users 0..=floor); falling, until it does (users below ceil).
            return match stage.target.cmp(&level) {
                std::cmp::Ordering::Greater => (curve.floor() as u64 + 1).min(stage.target),
                std::cmp::Ordering::Less => curve.ceil() as u64,
                std::cmp::Ordering::Equal => level,
            };
        }
        level = stage.target;
        t0 += stage.duration;
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64, target: u64) -> Stage {
        Stage {
            duration: Duration::from_secs(secs),
            target,
        }
    }

    #[test]
    fn ramp_hold_ramp_down() {
        let stages = [s(10, 100), s(20, 100), s(10, 0)];
        let w0 = user_windows(&stages, 0);
        assert_eq!(w0, vec![(Duration::ZERO, Duration::from_secs(40))]);
        let w99 = user_windows(&stages, 99);
        assert_eq!(w99[0].0, Duration::from_secs_f64(9.9));
        assert_eq!(w99[0].1, Duration::from_secs_f64(30.1));
        assert!(user_windows(&stages, 100).is_empty());
    }

    #[test]
    fn the_curve_and_the_windows_agree() {
        let stages = [s(5, 50), s(5, 20), s(5, 80), s(5, 0)];
        for tenth in 0..200 {
            let t = Duration::from_millis(tenth * 100 + 50);
            let connected = (0..80)
                .filter(|u| {
                    user_windows(&stages, *u)
                        .iter()
                        .any(|(a, b)| *a <= t && t < *b)
                })
                .count() as i64;
            let want = target_at(&stages, t) as i64;
            assert_eq!(connected, want, "t={t:?}");
        }
    }
}
