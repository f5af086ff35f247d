//! What a run reports of pre-push: coverage before the show and over time, bytes and
//! peak bandwidth, retries, tampered copies refused and shown, and greetings' hits and
//! misses; and the threshold subjects `coverage:` and `resources:`.

use super::stats::PrePushStats;
use crate::report::Second;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The pre-push section of a run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrePushReport {
    /// Users online and covered in the last second any were online.
    pub online: u64,
    pub covered: u64,
    /// Covered over online users at the end, and when the show began (None: the show
    /// never began during the run).
    pub coverage: f64,
    pub before_show: Option<f64>,
    pub newest_manifest: u64,
    pub bytes: u64,
    /// The most bytes phones received in one second, and in which second.
    pub peak_bytes_per_s: u64,
    pub peak_at_s: f64,
    pub requests: BTreeMap<String, u64>,
    pub retries: u64,
    pub resumed: u64,
    pub items_verified: u64,
    pub tampered_refused: u64,
    pub tampered_kept: u64,
    pub tampered_shown: u64,
    pub wrong_size: u64,
    pub manifests_adopted: u64,
    pub items_kept_on_update: u64,
    pub manifests_refused: u64,
    pub greeting_hits: u64,
    pub greeting_misses: u64,
    /// Coverage over the run: (second, covered, online).
    pub coverage_series: Vec<(f64, u64, u64)>,
    /// Bytes phones received in each second: (second, bytes).
    pub bytes_series: Vec<(f64, u64)>,
}

impl PrePushReport {
    /// From the run's totals and its seconds; `None` when no phone pre-downloaded.
    pub fn build(s: &PrePushStats, series: &[Second]) -> Option<PrePushReport> {
        if !s.active() {
            return None;
        }
        let (peak_bytes_per_s, peak_at_s) = series
            .iter()
            .filter_map(|sec| sec.pre_push.as_ref().map(|p| (p.bytes, sec.t_s)))
            .fold((0, 0.0), |best, x| if x.0 > best.0 { x } else { best });
        // Users go offline as their windows end: the coverage "at the end" is the last
        // second any were online.
        let (covered, online) = series
            .iter()
            .rev()
            .filter_map(|sec| sec.pre_push.as_ref())
            .find(|p| p.online > 0)
            .map_or((s.covered, s.online), |p| (p.covered, p.online));
        Some(PrePushReport {
            online,
            covered,
            coverage: if online == 0 {
                0.0
            } else {
                covered as f64 / online as f64
            },
            before_show: s.before_show,
            newest_manifest: s.newest_manifest,
            bytes: s.bytes,
            peak_bytes_per_s,
            peak_at_s,
            requests: s.requests.clone(),
            retries: s.retries,
            resumed: s.resumed,
            items_verified: s.items_verified,
            tampered_refused: s.tampered_refused,
            tampered_kept: s.tampered_kept,
            tampered_shown: s.tampered_shown,
            wrong_size: s.wrong_size,
            manifests_adopted: s.manifests_adopted,
            items_kept_on_update: s.items_kept_on_update,
            manifests_refused: s.manifests_refused,
            greeting_hits: s.greeting_hits,
            greeting_misses: s.greeting_misses,
            coverage_series: series
                .iter()
                .filter_map(|sec| {
                    sec.pre_push
                        .as_ref()
                        .map(|p| (sec.t_s, p.covered, p.online))
                })
                .collect(),
            bytes_series: series
                .iter()
                .filter_map(|sec| sec.pre_push.as_ref().map(|p| (sec.t_s, p.bytes)))
                .collect(),
        })
    }

    /// The summary's lines.
    pub fn write_summary(&self, out: &mut String) {
        let pct = |v: f64| format!("{:.1}%", v * 100.0);
        let _ = writeln!(out, "pre-push (resources):");
        let _ = writeln!(
            out,
            "  coverage: {} of {} online users held every item of manifest v{} at the end ({}); before the show: {}",
            self.covered,
            self.online,
            self.newest_manifest,
            pct(self.coverage),
            self.before_show.map_or("the show did not begin".into(), pct)
        );
        let greetings = self.greeting_hits + self.greeting_misses + self.tampered_shown;
        let _ = writeln!(
            out,
            "  greetings: {} hits, {} misses (would fetch at show time), {} shown from a tampered copy, of {greetings}",
            self.greeting_hits, self.greeting_misses, self.tampered_shown
        );
        let _ = writeln!(
            out,
            "  received {:.1} MiB, peak {:.1} MiB/s at {:.0} s; {} items verified, {} resumed, {} retries",
            self.bytes as f64 / 1_048_576.0,
            self.peak_bytes_per_s as f64 / 1_048_576.0,
            self.peak_at_s,
            self.items_verified,
            self.resumed,
            self.retries
        );
        let _ = writeln!(
            out,
            "  tampered copies: {} refused and fetched again, {} kept (phones not verifying), {} wrong sizes; {} manifests refused",
            self.tampered_refused, self.tampered_kept, self.wrong_size, self.manifests_refused
        );
        let _ = writeln!(
            out,
            "  manifests adopted {}, held items an update kept {}; answers {:?}",
            self.manifests_adopted, self.items_kept_on_update, self.requests
        );
    }

    /// The HTML report's section.
    pub fn html(&self) -> String {
        let mut s = String::from("<h2>Pre-push (resources)</h2>\n<table>\n");
        let pct = |v: f64| format!("{:.1}%", v * 100.0);
        let rows: Vec<(&str, String)> = vec![
            (
                "coverage before the show",
                self.before_show
                    .map_or("the show did not begin".into(), pct),
            ),
            (
                "coverage at the end",
                format!(
                    "{} ({} of {})",
                    pct(self.coverage),
                    self.covered,
                    self.online
                ),
            ),
            (
                "greetings: hits / misses / tampered shown",
                format!(
                    "{} / {} / {}",
                    self.greeting_hits, self.greeting_misses, self.tampered_shown
                ),
            ),
            (
                "bytes received",
                format!("{:.1} MiB", self.bytes as f64 / 1_048_576.0),
            ),
            (
                "peak bandwidth",
                format!(
                    "{:.1} MiB/s at {:.0} s",
                    self.peak_bytes_per_s as f64 / 1_048_576.0,
                    self.peak_at_s
                ),
            ),
            (
                "items verified / resumed / retries",
                format!(
                    "{} / {} / {}",
                    self.items_verified, self.resumed, self.retries
                ),
            ),
            (
                "tampered copies refused / kept",
                format!("{} / {}", self.tampered_refused, self.tampered_kept),
            ),
            (
                "manifest versions adopted / items kept by updates",
                format!("{} / {}", self.manifests_adopted, self.items_kept_on_update),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        s.push_str("</table>\n");
        use crate::html_charts::{line, line_chart};
        let covered = self
            .coverage_series
            .iter()
            .filter(|(_, _, online)| *online > 0)
            .map(|(t, c, o)| (*t, 100.0 * *c as f64 / *o as f64))
            .collect();
        s.push_str(&line_chart(
            "Phones holding every item of the newest manifest",
            "seconds into the run",
            "% of online phones",
            &[line("covered", covered)],
        ));
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let received = self
            .bytes_series
            .iter()
            .map(|(t, b)| (*t, mib(*b)))
            .collect();
        s.push_str(&line_chart(
            "Bytes phones received each second",
            "seconds into the run",
            "MiB/s",
            &[line("received", received)],
        ));
        s
    }
}

/// One second's pre-push figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrePushSecond {
    pub online: u64,
    pub covered: u64,
    /// Bytes phones received in this second.
    pub bytes: u64,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::Threshold;

    fn stats() -> PrePushStats {
        PrePushStats {
            online: 100,
            covered: 95,
            before_show: Some(0.92),
            greeting_hits: 9,
            greeting_misses: 1,
            bytes: 1,
            ..PrePushStats::default()
        }
    }

    fn holds(rule: &str, s: &PrePushStats) -> bool {
        let t = Threshold::parse(rule).unwrap();
        let summary = crate::stats::Summary {
            pre_push: s.clone(),
            ..Default::default()
        };
        t.evaluate(&summary, None, 1.0).1
    }

    #[test]
    fn coverage_and_tamper_thresholds_pass_and_fail_on_their_figures() {
        let mut s = stats();
        assert!(holds("coverage: before_show >= 90%", &s));
        assert!(!holds("coverage: before_show >= 95%", &s));
        assert!(holds("coverage: greeting_hits >= 90%", &s));
        assert!(holds("resources: tampered_shown == 0", &s));
        assert!(!holds("resources: misses == 0", &s));
        s.tampered_shown = 1;
        assert!(!holds("resources: tampered_shown == 0", &s));
        // A show that never began proves no coverage.
        s.before_show = None;
        assert!(!holds("coverage: before_show >= 1%", &s));
    }

    #[test]
    fn bad_coverage_rules_say_what_to_write() {
        let e = Threshold::parse("coverage: later >= 90%").unwrap_err();
        assert!(e.contains("before_show or greeting_hits"), "{e}");
        let e = Threshold::parse("coverage: before_show >= lots").unwrap_err();
        assert!(e.contains("not a share"), "{e}");
        let e = Threshold::parse("resources: tampered_shown == none").unwrap_err();
        assert!(e.contains("whole count"), "{e}");
    }
}
