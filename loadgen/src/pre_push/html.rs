//! The pre-push section of the HTML report: a table of the figures and charts of
//! coverage and bytes over the run.

use super::report::PrePushReport;
use std::fmt::Write;

/// The HTML report's section.
pub fn html(report: &PrePushReport) -> String {
    let mut s = String::from("<h2>Pre-push (resources)</h2>\n<table>\n");
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut rows: Vec<(&str, String)> = vec![
        (
            "coverage before the show",
            report
                .before_show
                .map_or("the show did not begin".into(), pct),
        ),
        (
            "coverage at the end",
            format!(
                "{} ({} of {})",
                pct(report.coverage),
                report.covered,
                report.online
            ),
        ),
        (
            "greetings: hits / misses / tampered shown",
            format!(
                "{} / {} / {}",
                report.greeting_hits, report.greeting_misses, report.tampered_shown
            ),
        ),
        (
            "bytes received",
            format!("{:.1} MiB", report.bytes as f64 / 1_048_576.0),
        ),
        (
            "peak bandwidth",
            format!(
                "{:.1} MiB/s at {:.0} s",
                report.peak_bytes_per_s as f64 / 1_048_576.0,
                report.peak_at_s
            ),
        ),
        (
            "items verified / resumed / retries",
            format!(
                "{} / {} / {}",
                report.items_verified, report.resumed, report.retries
            ),
        ),
        (
            "tampered copies refused / kept",
            format!("{} / {}", report.tampered_refused, report.tampered_kept),
        ),
        (
            "manifest versions adopted / items kept by updates",
            format!(
                "{} / {}",
                report.manifests_adopted, report.items_kept_on_update
            ),
        ),
    ];

    if let Some(c) = &report.servers {
        rows.push((
            "the servers' own counts",
            format!(
                "{} of {} answered: served {:.1} MiB, {} corrupted on purpose",
                c.answered,
                c.servers,
                c.bytes_served as f64 / 1_048_576.0,
                c.corrupted
            ),
        ));
    }
    for (k, v) in rows {
        let _ = writeln!(s, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    s.push_str("</table>\n");
    use crate::html_charts::{line, line_chart};
    let covered = report
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
    let received = report
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
