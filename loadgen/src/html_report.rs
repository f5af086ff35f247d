//! The end-of-run report as one self-contained HTML file: the verdict, the tables of the
//! printed summary and plots drawn as inline SVG (no script, no network), so it can be
//! mailed, attached to a CI job or opened years later.
//!
//! Plots (drawn by [`crate::html_charts`]): users connected against the stages'
//! target; throughput; errors by operation and every operation's latency, second by
//! second; each operation's whole latency distribution (percentile against latency, as
//! HdrHistogram plots it, so the tail is visible); clients per throttle tier over time;
//! shake outcomes.

use crate::html_charts::{
    bar_chart, distribution_chart, line, line_chart, over_time, stacked_chart, Line,
};
use crate::report::RunReport;
use std::fmt::Write;

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

fn figure(out: &mut String, svg: String, caption: &str) {
    let _ = write!(
        out,
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    );
}

/// The whole page.
pub fn render(report: &RunReport) -> String {
    let s = &report.series;
    let mut body = String::new();
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let _ = write!(
        body,
        "<header><h1>{} <span class=\"badge {}\">{verdict}</span></h1><p>{:.1} s, {} users, {} requests, error rate {:.4} %, {} connection drops. Latency is measured from the <em>intended</em> send time (coordinated omission corrected); the generator's own send lag was p50 {:.3} ms, p99 {:.3} ms and is inside every figure.</p></header>",
        esc(&report.profile),
        verdict.to_lowercase(),
        report.duration_s,
        report.users,
        report.requests,
        report.error_rate * 100.0,
        report.connection_drops,
        report.send_lag_p50_ms,
        report.send_lag_p99_ms,
    );

    if let Some(id) = &report.identity {
        let m = &id.machine;
        let _ = write!(
            body,
            "<p class=\"id\">Run <code>{}</code>, {} &middot; loadgen {} ({}) &middot; seed {} &middot; {} ({} cores, {:.1} GiB, {} open files, Linux {})<br><code>{}</code></p><details><summary>The profile as run ({})</summary><pre>{}</pre></details>",
            esc(&id.run_id),
            esc(&id.started_at),
            esc(&id.version),
            esc(&id.commit),
            id.seed,
            esc(&m.hostname),
            m.cores,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.open_files,
            esc(&m.kernel),
            esc(&id.command_line.join(" ")),
            esc(&id.profile_path),
            esc(&id.profile_text)
        );
    }
    if !report.overrides.is_empty() {
        let _ = write!(
            body,
            "<p>Overrides: {}.</p>",
            esc(&report.overrides.join(", "))
        );
    }
    if let Some(why) = &report.aborted {
        let _ = write!(
            body,
            "<p><strong>Aborted</strong>: threshold {} (exit code {}).</p>",
            esc(why),
            report.exit_code
        );
    }
    if report.interrupted {
        body.push_str(
            "<p><strong>Interrupted</strong>: the figures cover the run until Ctrl-C.</p>",
        );
    }
    body.push_str("<h2>Thresholds and audit</h2>");
    if report.thresholds.is_empty() {
        body.push_str("<p>The profile sets no thresholds.</p>");
    } else {
        body.push_str("<table><tr><th>threshold</th><th>observed</th><th></th></tr>");
        for t in &report.thresholds {
            let (class, word) = if t.passed {
                ("ok", "ok")
            } else {
                ("fail", "BREACHED")
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"{class}\">{word}</td></tr>",
                esc(&t.threshold),
                esc(&t.observed)
            );
        }
        body.push_str("</table>");
    }
    match &report.audit {
        Some(a) => {
            let _ = write!(body, "<pre class=\"audit\">{}</pre>", esc(&a.to_string()));
            if let Some(l) = &report.limits {
                let _ = write!(
                    body,
                    "<p>Limits: honest users whose clients received more than the limits allow: {} (must be 0). Adversarial users past the limits (by the servers' records): {} of {}. Honest users recorded past the limits whose clients never received it (issued as their gateway crashed): {}. Only the first kind fails a run.</p>",
                    l.honest_over_limit,
                    l.adversarial_over_limit,
                    l.adversarial_users,
                    l.honest_issued_undelivered.len()
                );
            }
            let kept = crate::report::promises_kept(
                a,
                report.promises.as_ref(),
                report.opened_cents,
                report.grabbed_cents,
            );
            let (class, word) = if kept {
                ("ok", "every promise kept")
            } else {
                ("fail", "promised money was not credited")
            };
            let _ = write!(
                body,
                "<p>Opens users were told succeeded: {} cents, grabs of split parts: {} cents; credited by payment: {} and {} cents: <span class=\"{class}\">{word}</span>.</p>",
                report.opened_cents, report.grabbed_cents, a.credited_cents, a.split.grab_credited_cents
            );
            if let Some(p) = &report.promises {
                let _ = write!(
                    body,
                    "<p>User by user: {} users were told {} cents; told more than credited: {} users, {} cents (must be 0); credited but never told (replies lost for good): {} users, {} cents. Cheaters' repeated opens and grabs told their original answer: {}, told anything else: {} (must be 0).</p>",
                    p.users_told, p.told_cents, p.users_short, p.short_cents, p.users_untold, p.untold_cents, p.repeats_kept, p.repeats_broken
                );
            }
            if !report.split_outcomes.is_empty() {
                body.push_str("<p>Split envelopes, how shares and grabs ended (refusals for what a user did are outcomes, not errors):</p><table><tr><th>request/result</th><th>count</th></tr>");
                for (k, v) in &report.split_outcomes {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td class=\"num\">{v}</td></tr>",
                        esc(k)
                    );
                }
                body.push_str("</table>");
            }
        }
        None => body.push_str("<p>No audit: the run drove a system it did not start.</p>"),
    }

    if !report.faults.is_empty() {
        body.push_str("<h2>Faults</h2><p>Parts of the system under test the profile took down and brought back while the load ran; the audit above judges the system after all of them.</p><table><tr><th>at</th><th>part</th><th>event</th><th>pid</th></tr>");
        for f in &report.faults {
            let _ = write!(
                body,
                "<tr><td class=\"num\">{:.1} s</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                f.at_s,
                esc(&f.part),
                esc(&f.event),
                f.pid.map(|p| p.to_string()).unwrap_or_default()
            );
        }
        body.push_str("</table>");
    }

    body.push_str(&crate::live_timeline::html(
        &report.timeline,
        &report.shake_versions,
    ));

    if let Some(p) = &report.pre_push {
        body.push_str(&crate::pre_push::html::html(p));
    }

    if let Some(h) = &report.hostile {
        body.push_str(&h.html(report.limits.as_ref().map(|l| l.hostile_over_limit)));
    }

    body.push_str("<h2>Operations</h2><table><tr><th>op</th><th>count</th><th>errors</th><th>rate/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
    for (name, r) in &report.ops {
        if r.count == 0 && r.errors == 0 {
            continue;
        }
        let _ = write!(
            body,
            "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td></tr>",
            r.count, r.errors, r.rate_per_s, r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms
        );
    }
    body.push_str("</table>");
    crate::transport_report::TransportReport::html(&report.transports, &mut body);
    if !report.network.is_empty() {
        body.push_str("<h2>Network</h2><ul>");
        for line in &report.network {
            let _ = write!(body, "<li>{}</li>", html_escape::encode_text(line));
        }
        body.push_str("</ul>");
    }

    body.push_str("<h2>Over time</h2>");
    figure(
        &mut body,
        line_chart(
            "Users connected",
            "seconds into the run",
            "users",
            &[
                line("connected", over_time(s, |x| x.connected as f64)),
                line("stages' target", over_time(s, |x| x.target as f64)),
            ],
        ),
        "Simulated users holding a long connection against what the profile's stages asked for.",
    );
    figure(
        &mut body,
        line_chart(
            "Throughput",
            "seconds into the run",
            "per second",
            &[
                line("shakes decided", over_time(s, |x| x.shakes as f64)),
                line("come back later", over_time(s, |x| x.come_back_later as f64)),
                line("opens", over_time(s, |x| x.opens as f64)),
                line("errors", over_time(s, |x| x.errors as f64)),
            ],
        ),
        "Answered requests each second. \"Come back later\" is a throttled gateway answering without deciding.",
    );
    let failing: Vec<Line> = crate::stats::OPS
        .iter()
        .filter(|op| {
            s.iter()
                .any(|x| x.ops.get(op.name()).is_some_and(|o| o.errors > 0))
        })
        .map(|op| {
            let name = op.name();
            line(
                name,
                over_time(s, move |x| x.ops.get(name).map_or(0.0, |o| o.errors as f64)),
            )
        })
        .collect();
    if !failing.is_empty() {
        figure(
            &mut body,
            line_chart("Errors by operation", "seconds into the run", "per second", &failing),
            "Requests that failed each second, by operation (the summary's errors by kind say how).",
        );
    }
    for op in crate::stats::OPS {
        let name = op.name();
        if !s.iter().any(|x| x.ops.contains_key(name)) {
            continue;
        }
        let stat = |f: fn(&crate::report::OpSecond) -> f64| {
            over_time(s, move |x| x.ops.get(name).map_or(0.0, f))
        };
        figure(
            &mut body,
            line_chart(
                &format!("{name} latency, second by second"),
                "seconds into the run",
                "ms",
                &[
                    line("p50", stat(|o| o.p50_ms)),
                    line("p99", stat(|o| o.p99_ms)),
                    line("p99.9", stat(|o| o.p999_ms)),
                ],
            ),
            &format!(
                "Percentiles of the {name} requests answered in each second (0 where none were)."
            ),
        );
    }
    let tiers: std::collections::BTreeSet<u8> = s
        .iter()
        .flat_map(|x| x.clients_by_tier.keys().copied())
        .collect();
    let layers: Vec<Line> = tiers
        .iter()
        .map(|t| {
            line(
                format!("tier {t}"),
                over_time(s, |x| x.clients_by_tier.get(t).copied().unwrap_or(0) as f64),
            )
        })
        .collect();
    figure(
        &mut body,
        stacked_chart("Clients per throttle tier", "users", &layers),
        "Connected users by the throttle tier their gateway last gave them: 0 is normal, higher tiers ask clients to shake less often, the top one to come back later.",
    );

    body.push_str("<h2>Distributions</h2>");
    figure(
        &mut body,
        distribution_chart(report),
        "Each operation's latency at every percentile of the whole run (both axes stretch the tail: read p99 at 99%, p99.9 at 99.9%).",
    );
    let outcomes: Vec<(String, u64)> = report
        .shake_outcomes
        .iter()
        .map(|(k, v)| (k.replace('_', " "), *v))
        .collect();
    figure(
        &mut body,
        bar_chart("Shake outcomes", &outcomes),
        "What every shake reply said over the run.",
    );

    if let Some(r) = &report.resources {
        crate::html_cost::resources_table(&mut body, r);
    }
    if let Some(c) = &report.cluster {
        let _ = write!(
            body,
            "<h2>Agents</h2><pre>{}</pre>",
            esc(&{
                let mut t = String::new();
                c.lines(&mut t);
                t
            })
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} - load test report</title><style>{STYLE}</style></head><body>{body}<footer>Made by loadgen. The latency figures come from HdrHistogram; the interval log beside this file (latency.hlog) holds them second by second.</footer></body></html>\n",
        esc(&report.profile)
    )
}

const STYLE: &str = "body{font-family:sans-serif;max-width:920px;margin:2em auto;color:#222;line-height:1.4}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
pre{white-space:pre-wrap;overflow-wrap:anywhere}.id{color:#555;font-size:.9em}\
.badge{padding:.1em .5em;border-radius:.3em;color:#fff;font-size:.8em}.badge.pass{background:#2a2}.badge.fail{background:#c22}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #eee;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#2a2}.fail{color:#c22;font-weight:bold}\
pre.audit{background:#f6f6f6;padding:.8em;overflow-x:auto}figure{margin:1.2em 0}figcaption{color:#555;font-size:.9em}\
.warn{color:#c22}footer{margin-top:2em;color:#777;font-size:.85em}";
