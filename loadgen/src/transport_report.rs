//! The run's figures by transport as reports show them: the summary's `by transport:`
//! lines, `transports` in the JSON and the HTML report's table.

use crate::op_report::OpReport;
use crate::stats::{Summary, OPS};
use crate::transport::Transport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One transport's figures in the summary, the JSON and the HTML report.
#[derive(Debug, Clone, Serialize)]
pub struct TransportReport {
    pub users_connected: u64,
    pub connection_drops: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Sessions online when their user's network changed, and those that survived it.
    pub network_changes: u64,
    pub sessions_kept_through_change: u64,
    /// Datagrams the gateways sent to clients' new addresses (QUIC migrations).
    pub datagrams_to_new_address: u64,
    /// The operations its users made (those with any answer or error).
    pub ops: BTreeMap<&'static str, OpReport>,
}

impl TransportReport {
    /// Every transport of a run that split them.
    pub fn of_run(summary: &Summary, duration_s: f64) -> BTreeMap<&'static str, TransportReport> {
        summary
            .by_transport
            .iter()
            .zip(Transport::ALL)
            .filter(|(t, _)| t.requests() > 0 || t.users_connected > 0)
            .map(|(t, transport)| {
                let requests = t.requests();
                let report = TransportReport {
                    users_connected: t.users_connected,
                    connection_drops: t.drops,
                    requests,
                    errors: t.errors(),
                    error_rate: t.errors() as f64 / requests.max(1) as f64,
                    network_changes: t.network_changes,
                    sessions_kept_through_change: t
                        .network_changes
                        .saturating_sub(t.sessions_lost_to_change),
                    datagrams_to_new_address: t.datagrams_to_new_address,
                    ops: OPS
                        .iter()
                        .filter(|op| t.count(**op) + t.ops[**op as usize].errors > 0)
                        .map(|op| (op.name(), OpReport::of(&t.ops[*op as usize], duration_s)))
                        .collect(),
                };
                (transport.name(), report)
            })
            .collect()
    }

    /// The summary's lines for them: users, drops and errors, and the latency of the
    /// shake and the connection's own steps.
    pub fn lines(transports: &BTreeMap<&'static str, TransportReport>, out: &mut String) {
        if transports.is_empty() {
            return;
        }
        let _ = writeln!(out, "by transport:");
        for (name, t) in transports {
            let _ = write!(
                out,
                "  {name:<5} {} users, {} drops, {} requests, error rate {:.4}%",
                t.users_connected,
                t.connection_drops,
                t.requests,
                t.error_rate * 100.0
            );
            if t.network_changes > 0 {
                let _ = write!(
                    out,
                    "; network changed under {} sessions, {} kept",
                    t.network_changes, t.sessions_kept_through_change
                );
            }
            for op in ["connect", "hello", "shake", "open"] {
                if let Some(r) = t.ops.get(op) {
                    let _ = write!(out, "; {op} p50 {:.3} p99 {:.3} ms", r.p50_ms, r.p99_ms);
                }
            }
            let _ = writeln!(out);
        }
    }

    /// The HTML report's table of them: one row per transport and operation.
    pub fn html(transports: &BTreeMap<&'static str, TransportReport>, body: &mut String) {
        if transports.is_empty() {
            return;
        }
        body.push_str("<h2>By transport</h2><table><tr><th>transport</th><th>users</th><th>drops</th><th>error rate</th><th>op</th><th>count</th><th>errors</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
        for (name, t) in transports {
            for (k, (op, r)) in t.ops.iter().enumerate() {
                let head = if k == 0 {
                    format!(
                        "<td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.4} %</td>",
                        t.users_connected,
                        t.connection_drops,
                        t.error_rate * 100.0
                    )
                } else {
                    "<td></td><td></td><td></td><td></td>".to_string()
                };
                let _ = write!(
                    body,
                    "<tr>{head}<td>{op}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td></tr>",
                    r.count, r.errors, r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms
                );
            }
        }
        body.push_str("</table>");
        for (name, t) in transports {
            if t.network_changes > 0 {
                let _ = write!(
                    body,
                    "<p>{name}: the network changed under {} sessions; {} kept their session through it.</p>",
                    t.network_changes, t.sessions_kept_through_change
                );
            }
        }
    }
}
