//! What a run reports of pre-push: coverage before the show and over time, bytes and
//! peak bandwidth, retries, tampered copies refused and shown, and greetings' hits and
//! misses; and the threshold subjects `coverage:` and `resources:`.

use super::stats::PrePushSecond;
use super::stats::PrePushStats;
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
    /// The resource servers' own counts at the end (a system the run started).
    pub servers: Option<super::servers::ServerCounts>,
}

impl PrePushReport {
    /// From the run's totals and its seconds (each second's time and figures); `None`
    /// when no phone pre-downloaded.
    pub fn build(s: &PrePushStats, series: &[(f64, PrePushSecond)]) -> Option<PrePushReport> {
        if !s.active() {
            return None;
        }
        let (peak_bytes_per_s, peak_at_s) = series
            .iter()
            .map(|(t, p)| (p.bytes, *t))
            .fold((0, 0.0), |best, x| if x.0 > best.0 { x } else { best });
        // Users go offline as their windows end: the coverage "at the end" is the last
        // second any were online.
        let (covered, online) = series
            .iter()
            .rev()
            .map(|(_, p)| p)
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
                .map(|(t, p)| (*t, p.covered, p.online))
                .collect(),
            bytes_series: series.iter().map(|(t, p)| (*t, p.bytes)).collect(),
            servers: None,
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
        if let Some(c) = &self.servers {
            let _ = writeln!(
                out,
                "  the servers' own counts ({} of {} answered): served {:.1} MiB, answers {:?}, {} corrupted on purpose (phones refused {})",
                c.answered,
                c.servers,
                c.bytes_served as f64 / 1_048_576.0,
                c.answers,
                c.corrupted,
                self.tampered_refused
            );
            let _ = writeln!(
                out,
                "    (a server restarted during the run counts from its restart; a download cut short was counted by its server, not by a phone)"
            );
        }
    }
}
