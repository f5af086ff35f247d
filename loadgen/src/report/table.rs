//! The end-of-run table, section by section.

use super::{audit_passed, promises_kept, OpReport, RunReport};
use crate::counts;
use std::fmt::Write;

impl RunReport {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== {} == {:.1} s, {} users",
            self.profile, self.duration_s, self.users
        );
        if let Some(id) = &self.identity {
            id.lines(&mut out);
        }
        let _ = writeln!(out);
        self.op_lines(&mut out);
        self.replies_lines(&mut out);
        self.resources_lines(&mut out);
        self.notes_lines(&mut out);
        self.limits_lines(&mut out);
        self.faults_lines(&mut out);
        self.checks_lines(&mut out);
        out
    }

    /// Each operation's counts and latencies, the shakes split by whether they won.
    fn op_lines(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "count", "errors", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        // Each operation, and the shakes split by whether they won under `shake`.
        let mut rows: Vec<(&str, &OpReport)> = Vec::new();
        for (name, r) in &self.ops {
            rows.push((name, r));
            if *name == "shake" {
                rows.push(("  won", &self.shake_wins));
                rows.push(("  not won", &self.shake_not_won));
            }
        }
        for (name, r) in rows {
            if r.count == 0 && r.errors == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<10} {:>9} {:>7} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name,
                r.count,
                r.errors,
                r.rate_per_s,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.p999_ms,
                r.max_ms
            );
        }
    }

    /// What the shakes were answered, the tiers, the opens promised, the generator's lag,
    /// the sessions and the transports.
    fn replies_lines(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nshake outcomes: {}",
            counts::line(&self.shake_outcomes)
        );
        let tiers: Vec<String> = self
            .tiers_seen
            .iter()
            .map(|(k, v)| format!("tier {k}: {v}"))
            .collect();
        let _ = writeln!(
            out,
            "throttle tiers seen (shake replies): {}",
            if tiers.is_empty() {
                "none".into()
            } else {
                tiers.join(", ")
            }
        );
        let total_s: f64 = self.tier_seconds.values().sum();
        if total_s > 0.0 {
            let shares: Vec<String> = self
                .tier_seconds
                .iter()
                .map(|(k, v)| format!("tier {k} {:.1} %", v / total_s * 100.0))
                .collect();
            let requests = self.ops.get("shake").map_or(0, |o| o.count);
            let _ = writeln!(
                out,
                "time at each tier (user-seconds): {}; {} tier changes; {} shakes wanted, sent as {} requests",
                shares.join(", "),
                self.tier_transitions,
                self.desired_shakes,
                requests
            );
        }
        let _ = writeln!(
            out,
            "opens promised: {} cents; connection drops: {}; error rate {:.4}%",
            self.opened_cents,
            self.connection_drops,
            self.error_rate * 100.0
        );
        if !self.split_outcomes.is_empty() {
            let _ = writeln!(
                out,
                "split envelopes: {}; grabs promised: {} cents",
                counts::line(&self.split_outcomes),
                self.grabbed_cents
            );
        }
        let _ = writeln!(
            out,
            "generator send lag (already inside the latencies): p50 {:.3} ms, p99 {:.3} ms",
            self.send_lag_p50_ms, self.send_lag_p99_ms
        );
        let sessions: u64 = self.sessions_by_gateway.iter().sum();
        let _ = writeln!(
            out,
            "sessions: {} users connected, {} sessions over {} gateways (fewest {}, most {}), workers: {}",
            self.users_connected,
            sessions,
            self.sessions_by_gateway.len(),
            self.sessions_by_gateway.iter().min().unwrap_or(&0),
            self.sessions_by_gateway.iter().max().unwrap_or(&0),
            self.requests_by_worker.len()
        );
        crate::transport_report::TransportReport::lines(&self.transports, out);
        for line in &self.network {
            let _ = writeln!(out, "network: {line}");
        }
    }

    /// What holding the connections cost, when the run measured it.
    fn resources_lines(&self, out: &mut String) {
        if let Some(r) = &self.resources {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let _ = writeln!(
                out,
                "resources: {} connections held from {:.0} s to {:.0} s, reached at {:.0} connections/s",
                r.peak.connected, r.hold_from.at_s, r.hold_to.at_s, r.ramp_connections_per_s
            );
            let _ = writeln!(
                out,
                "  loadgen   {:>3} processes, PSS {:>9.1} MiB = {:>6.0} B/connection (all of it)",
                r.peak.loadgen.processes,
                mib(r.peak.loadgen.rss_bytes),
                r.loadgen_bytes_per_connection
            );
            let hosts = r.hosts.join(", ");
            match r.gateway_cpu_cores {
                Some(cpu) => {
                    let _ = writeln!(
                        out,
                        "  gateways  {:>3} processes, PSS {:>9.1} MiB = {:>6.0} B/connection (over {:.1} MiB idle)",
                        r.peak.gateways.processes,
                        mib(r.peak.gateways.rss_bytes),
                        r.gateway_bytes_per_connection.unwrap_or_default(),
                        mib(r.before.gateways.rss_bytes)
                    );
                    let _ = writeln!(
                        out,
                        "  CPU while holding ({:.0} s to {:.0} s): loadgen {:.1} %, gateways {:.1} %, backend {:.1} % of one core",
                        r.hold_from.at_s,
                        r.hold_to.at_s,
                        r.loadgen_cpu_cores * 100.0,
                        cpu * 100.0,
                        r.backend_cpu_cores.unwrap_or_default() * 100.0
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  gateways, backend: not measured (the system under test runs elsewhere; see its own /metrics)"
                    );
                    let _ = writeln!(
                        out,
                        "  CPU while holding ({:.0} s to {:.0} s): loadgen {:.1} % of one core",
                        r.hold_from.at_s,
                        r.hold_to.at_s,
                        r.loadgen_cpu_cores * 100.0
                    );
                }
            }
            match r.kernel_bytes_per_connection {
                Some(per) => {
                    let _ = writeln!(
                        out,
                        "  kernel    slab {:>9.1} MiB = {:>6.0} B/connection (over {:.1} MiB before; hosts: {hosts})",
                        mib(r.peak.slab_bytes),
                        per,
                        mib(r.before.slab_bytes)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  kernel    slab: not measurable (it shrank from {:.1} to {:.1} MiB: other work on hosts {hosts})",
                        mib(r.before.slab_bytes),
                        mib(r.peak.slab_bytes)
                    );
                }
            }
        }
    }

    /// How the run went: overrides, origin, an abort or interruption, the cluster, errors
    /// and thresholds.
    fn notes_lines(&self, out: &mut String) {
        if !self.overrides.is_empty() {
            let _ = writeln!(out, "overrides: {}", self.overrides.join(", "));
        }
        self.origin.lines(out);
        if let Some(why) = &self.aborted {
            let _ = writeln!(out, "ABORTED: threshold {why}");
        }
        if self.interrupted {
            let _ = writeln!(out, "INTERRUPTED: the figures cover the run until Ctrl-C");
        }
        if let Some(c) = &self.cluster {
            c.lines(out);
        }
        if !self.errors_by_kind.is_empty() {
            let _ = writeln!(out, "errors: {}", counts::line(&self.errors_by_kind));
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds:");
            for t in &self.thresholds {
                let mark = if t.passed { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "  {mark} {:<28} observed {}", t.threshold, t.observed);
            }
        }
    }

    /// The per-user limits as the run saw them, and the hostile users.
    fn limits_lines(&self, out: &mut String) {
        if let Some(l) = &self.limits {
            if l.adversarial_share > 0.0 {
                let _ = writeln!(
                    out,
                    "\nlimits: honest users over the limit {} (must be 0); adversarial users (drop or replay cookies, hop gateways) {} = {:.1} %, of whom {} got past the limits ({:.2} %), {} hops",
                    l.honest_over_limit,
                    l.adversarial_users,
                    l.adversarial_share * 100.0,
                    l.adversarial_over_limit,
                    l.adversarial_over_limit as f64 * 100.0 / l.adversarial_users.max(1) as f64,
                    l.hops
                );
            } else if l.honest_over_limit > 0 || !l.honest_issued_undelivered.is_empty() {
                let _ = writeln!(
                    out,
                    "\nlimits: honest users over the limit {} (must be 0)",
                    l.honest_over_limit
                );
            }
            if !l.honest_issued_undelivered.is_empty() {
                let _ = writeln!(
                    out,
                    "  honest users recorded past the limits whose clients never received it (issued as their gateway crashed): {:?}",
                    l.honest_issued_undelivered
                );
            }
            if l.honest_over_limit > 0 {
                let _ = writeln!(out, "  FAIL: an honest user got more than the limits allow");
            }
        }
        if let Some(h) = &self.hostile {
            let _ = write!(out, "\n{}", h.lines());
            if let Some(l) = &self.limits {
                let _ = writeln!(
                    out,
                    "  hostile users past the limits by the servers' records: {}",
                    l.hostile_over_limit
                );
            }
        }
    }

    /// The faults `sut up` injected, and whether every part came back.
    fn faults_lines(&self, out: &mut String) {
        if !self.faults.is_empty() {
            let _ = writeln!(out, "\nfaults (what sut up did, seconds into the run):");
            for f in &self.faults {
                let _ = writeln!(
                    out,
                    "  {:>7.1} s  {:<10} {:<8} pid {}",
                    f.at_s,
                    f.part,
                    f.event,
                    f.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
                );
            }
            if !crate::faults::all_came_back(&self.faults) {
                let _ = writeln!(out, "  FAIL: a part that went down did not come back");
            }
        }
    }

    /// The live timeline, pre-push, and the audit with the promises it checks.
    fn checks_lines(&self, out: &mut String) {
        crate::live_timeline::write_summary(out, &self.timeline, &self.shake_versions);
        if let Some(p) = &self.pre_push {
            p.write_summary(out);
        }
        if let Some(a) = &self.audit {
            let _ = writeln!(out);
            let _ = write!(out, "{a}");
            if let Some(l) = &self.limits {
                if !a.passed() && audit_passed(Some(a), Some(l)) {
                    let _ = writeln!(
                        out,
                        "the audit's only findings are users over the limit that `limits:` explains ({} adversarial, {} honest whose clients never received the excess); every honest client got what the limits allow: not a failure",
                        l.adversarial_over_limit,
                        l.honest_issued_undelivered.len()
                    );
                }
            }
            let kept = promises_kept(
                a,
                self.promises.as_ref(),
                self.opened_cents,
                self.grabbed_cents,
            );
            let _ = writeln!(
                out,
                "opens users were told succeeded: {} cents, grabs: {} cents; credited by payment: {} and {} cents: {}",
                self.opened_cents,
                self.grabbed_cents,
                a.credited_cents,
                a.split.grab_credited_cents,
                if kept {
                    "every promise kept"
                } else {
                    "FAIL: promised money was not credited"
                }
            );
            if let Some(p) = &self.promises {
                let _ = writeln!(out, "{p}");
            }
        }
    }
}
