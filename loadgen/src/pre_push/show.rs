//! When the show begins, and the phones' coverage then ("before the show").

use crate::stats::Summary;
use std::path::Path;
use std::sync::Mutex;

/// When the show's first round begins (Unix ms), by the run manifest in `data`.
pub fn show_begins_ms(data: &Path) -> Option<i64> {
    let path = sut_wire::manifest::path(data);
    let text = std::fs::read_to_string(&path).ok()?;
    let m = sut_wire::manifest::Manifest::parse(&text, &path).ok()?;
    let first = m.timeline.rounds.iter().map(|r| r.start).min()?;
    Some(m.show_start_ms + first.as_millis() as i64)
}

/// Once the show has begun (`now_ms` past `show_ms`), records the coverage then as
/// the run's `before_show`, once.
pub fn mark_show(stats: &Mutex<Summary>, show_ms: i64, now_ms: i64) {
    if now_ms < show_ms {
        return;
    }
    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
    if s.pre_push.before_show.is_none() && s.pre_push.online > 0 {
        s.pre_push.before_show = Some(s.pre_push.coverage());
    }
}
