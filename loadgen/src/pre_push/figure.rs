//! The pre-push figures a threshold can hold a run to: `coverage: before_show >= 90%`,
//! `coverage: greeting_hits >= 90%`, `resources: tampered_shown == 0`,
//! `resources: misses == 0`.

use super::stats::PrePushStats;

/// A figure a threshold can hold pre-push to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// `coverage: before_show >= 90%`
    BeforeShow,
    /// `coverage: greeting_hits >= 90%`
    GreetingHits,
    /// `resources: tampered_shown == 0`
    TamperedShown,
    /// `resources: misses == 0`
    Misses,
}

/// Parses `SUBJECT: STAT CMP VALUE` when SUBJECT is `coverage` or `resources`.
pub fn parse_subject(
    subject: &str,
    stat: &str,
    value: &str,
    source: &str,
) -> Option<Result<(Figure, f64), String>> {
    let share = |v: &str| -> Result<f64, String> {
        let n = v
            .strip_suffix('%')
            .and_then(|p| p.parse::<f64>().ok())
            .map(|p| p / 100.0);
        n.or_else(|| v.parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("threshold `{source}`: `{v}` is not a share; write e.g. 90%"))
    };
    let count = |v: &str| -> Result<f64, String> {
        v.parse::<u64>()
            .map(|n| n as f64)
            .map_err(|_| format!("threshold `{source}`: `{v}` is not a whole count, e.g. 0"))
    };
    Some(match (subject, stat) {
        ("coverage", "before_show") => share(value).map(|v| (Figure::BeforeShow, v)),
        ("coverage", "greeting_hits") => share(value).map(|v| (Figure::GreetingHits, v)),
        ("coverage", other) => Err(format!(
            "threshold `{source}`: coverage takes before_show or greeting_hits, not `{other}`"
        )),
        ("resources", "tampered_shown") => count(value).map(|v| (Figure::TamperedShown, v)),
        ("resources", "misses") => count(value).map(|v| (Figure::Misses, v)),
        ("resources", other) => Err(format!(
            "threshold `{source}`: resources takes tampered_shown or misses, not `{other}`"
        )),
        _ => return None,
    })
}

impl Figure {
    pub fn observe(self, s: &PrePushStats) -> f64 {
        match self {
            Figure::BeforeShow => s.before_show.unwrap_or(0.0),
            Figure::GreetingHits => s.hit_rate().unwrap_or(0.0),
            Figure::TamperedShown => s.tampered_shown as f64,
            Figure::Misses => s.greeting_misses as f64,
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Figure::BeforeShow | Figure::GreetingHits => {
                format!("{:.1}%", v * 100.0)
            }
            Figure::TamperedShown | Figure::Misses => format!("{v}"),
        }
    }
}
