//! The live progress line, and the same figures kept second by second for the
//! report's series and the interval log.

use crate::hlog::HlogWriter;
use crate::report::Second;
use crate::stats::{Op, Summary, OPS};
use std::collections::BTreeMap;
use std::time::Duration;

/// The live progress line, and the same figures kept second by second for the report
/// and the interval log: rates are per second since the previous line.
#[derive(Default)]
pub struct Progress {
    last_shakes: u64,
    last_opens: u64,
    last_errors: u64,
    /// Pre-push bytes received up to the last line.
    last_pre_push_bytes: u64,
    last_outcomes: BTreeMap<String, u64>,
    last_tiers: BTreeMap<u8, u64>,
    /// Each operation's errors so far at the previous line.
    last_op_errors: [u64; OPS.len()],
    /// Each operation's cumulative histogram at the previous line.
    last_hists: Option<Vec<hdrhistogram::Histogram<u64>>>,
    last_at: Duration,
    pub series: Vec<Second>,
    pub hlog: Option<HlogWriter>,
}

impl Progress {
    /// A progress line that also writes each second to `hlog`.
    pub fn new(hlog: HlogWriter) -> Progress {
        Progress {
            hlog: Some(hlog),
            ..Progress::default()
        }
    }

    pub fn line(&mut self, s: &Summary, elapsed: Duration, target: u64) -> String {
        let shakes = s.count(Op::Shake);
        let opens = s.count(Op::Open);
        // This second's histogram of every operation: the cumulative one less the last.
        let windows: Vec<hdrhistogram::Histogram<u64>> = OPS
            .iter()
            .map(|op| {
                let mut w = s.ops[*op as usize].latency.clone();
                if let Some(prev) = self.last_hists.as_ref().and_then(|h| h.get(*op as usize)) {
                    let _ = w.subtract(prev);
                }
                w
            })
            .collect();
        let q = |op: Op, p: f64| {
            let w = &windows[op as usize];
            if w.is_empty() {
                0.0
            } else {
                w.value_at_quantile(p) as f64 / 1000.0
            }
        };
        let p99 = q(Op::Shake, 0.99);
        let delta = |now: &BTreeMap<u8, u64>, before: &BTreeMap<u8, u64>| -> BTreeMap<u8, u64> {
            now.iter()
                .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        let outcome_delta = |k: &str| {
            s.outcomes.get(k).copied().unwrap_or(0)
                - self.last_outcomes.get(k).copied().unwrap_or(0)
        };
        // The line shows this second's figures only; running totals are labelled so.
        let (envelope, greeting, nothing) = (
            outcome_delta("envelope"),
            outcome_delta("greeting"),
            outcome_delta("nothing"),
        );
        let errors = s.errors() - self.last_errors;
        let tiers = delta(&s.tiers, &self.last_tiers);
        self.series.push(Second {
            t_s: elapsed.as_secs_f64(),
            connected: s.connected,
            target,
            shakes: shakes - self.last_shakes,
            come_back_later: outcome_delta("come_back_later"),
            shake_p50_ms: q(Op::Shake, 0.5),
            shake_p99_ms: p99,
            shake_p999_ms: q(Op::Shake, 0.999),
            opens: opens - self.last_opens,
            open_p50_ms: q(Op::Open, 0.5),
            open_p99_ms: q(Op::Open, 0.99),
            errors,
            replies_by_tier: tiers.clone(),
            clients_by_tier: s.clients_by_tier.clone(),
            ops: OPS
                .iter()
                .filter(|op| {
                    let i = **op as usize;
                    !windows[i].is_empty() || s.ops[i].errors > self.last_op_errors[i]
                })
                .map(|op| {
                    let i = *op as usize;
                    let figures = crate::report::OpSecond {
                        count: windows[i].len(),
                        errors: s.ops[i].errors - self.last_op_errors[i],
                        p50_ms: q(*op, 0.5),
                        p99_ms: q(*op, 0.99),
                        p999_ms: q(*op, 0.999),
                    };
                    (op.name().to_string(), figures)
                })
                .collect(),
            pre_push: s
                .pre_push
                .active()
                .then(|| crate::pre_push::stats::PrePushSecond {
                    online: s.pre_push.online,
                    covered: s.pre_push.covered,
                    bytes: s.pre_push.bytes - self.last_pre_push_bytes.min(s.pre_push.bytes),
                }),
        });
        self.last_pre_push_bytes = s.pre_push.bytes;
        self.last_errors = s.errors();
        self.last_outcomes = s.outcomes.clone();
        self.last_tiers = s.tiers.clone();
        let line = format!(
            "[{:>4.0}s] users {}/{} | shakes {}/s (envelope {} greeting {} nothing {}) | shake p99 {:.2}ms | opens {}/s | errors {}/s | drops {} in all | replies by tier {:?}",
            elapsed.as_secs_f64(),
            s.connected,
            target,
            shakes - self.last_shakes,
            envelope,
            greeting,
            nothing,
            p99,
            opens - self.last_opens,
            errors,
            s.drops,
            tiers,
        );
        self.last_shakes = shakes;
        self.last_opens = opens;
        for op in OPS {
            self.last_op_errors[op as usize] = s.ops[op as usize].errors;
        }
        if let Some(hlog) = &self.hlog {
            let length = elapsed.saturating_sub(self.last_at);
            for (op, w) in OPS.iter().zip(windows) {
                hlog.interval(op.name(), self.last_at, length, w);
            }
        }
        self.last_at = elapsed;
        self.last_hists = Some(
            OPS.iter()
                .map(|op| s.ops[*op as usize].latency.clone())
                .collect(),
        );
        line
    }
}
