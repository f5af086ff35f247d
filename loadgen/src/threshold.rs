//! Pass/fail thresholds, written as `SUBJECT: STAT CMP VALUE`:
//! - `shake: p99 < 5ms`, `open: max <= 1s`, `connect: p99.9 < 100ms`, `hello: mean < 2ms`
//!   (operations: connect, hello, shake, open, heartbeat, share, grab; stats: pNN, pNN.N, max, mean)
//! - `errors: rate < 0.1%` (errors ÷ requests), `errors: count == 0`
//! - `memory: growth < 64MiB`: how much the memory (PSS) of every process of the run, the
//!   load generator's and the spawned system's, grew while the peak of users was held; a
//!   leak in a soak shows here first
//! - `shake: rate > 1000/s` (answered requests per second of the run so far),
//!   `connect: count >= 3000` (answered requests)
//!
//! A threshold is a string, or `{ threshold: "...", abort_on_fail: true, grace: 10s }`:
//! one that aborts is checked every second once `grace` has passed, and stops the run
//! the first second it does not hold (exit code 4).

use crate::resources::ResourceReport;
use crate::stats::{Op, Summary};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Percentile(f64),
    Max,
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subject {
    Latency(Op, Stat),
    ErrorRate,
    ErrorCount,
    /// Bytes of memory gained over the hold at the peak.
    MemoryGrowth,
    /// Answered requests of an operation per second of the run.
    Rate(Op),
    /// Answered requests of an operation.
    Count(Op),
    /// A pre-push figure (see [`crate::pre_push::report::Figure`]).
    PrePush(crate::pre_push::figure::Figure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Cmp {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Cmp::Lt => observed < limit,
            Cmp::Le => observed <= limit,
            Cmp::Gt => observed > limit,
            Cmp::Ge => observed >= limit,
            Cmp::Eq => observed == limit,
        }
    }
}

/// One threshold. Latencies are kept in milliseconds, rates as fractions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ThresholdSpec")]
pub struct Threshold {
    pub source: String,
    pub subject: Subject,
    pub cmp: Cmp,
    pub limit: f64,
    /// Stop the run the first second this does not hold (after `grace`).
    pub abort_on_fail: bool,
    /// How long into the run before an aborting threshold is checked.
    pub grace: Duration,
}

/// A threshold as a profile writes it: the rule alone, or with when to abort.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ThresholdSpec {
    /// `SUBJECT: STAT CMP VALUE`, e.g. `shake: p99 < 100ms`.
    Rule(String),
    Full(FullThreshold),
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FullThreshold {
    /// `SUBJECT: STAT CMP VALUE`.
    pub threshold: String,
    /// Stop the run the first second the threshold does not hold (exit code 4).
    #[serde(default)]
    pub abort_on_fail: bool,
    /// How long into the run before it may abort (the ramp's figures are not the
    /// run's) [default: 0s].
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub grace: Option<Duration>,
}

impl TryFrom<ThresholdSpec> for Threshold {
    type Error = String;
    fn try_from(spec: ThresholdSpec) -> Result<Self, String> {
        match spec {
            ThresholdSpec::Rule(source) => Threshold::parse(&source),
            ThresholdSpec::Full(f) => {
                let mut t = Threshold::parse(&f.threshold)?;
                if f.grace.is_some() && !f.abort_on_fail {
                    return Err(format!(
                        "threshold `{}`: `grace` only matters with `abort_on_fail: true`",
                        f.threshold
                    ));
                }
                t.abort_on_fail = f.abort_on_fail;
                t.grace = f.grace.unwrap_or_default();
                Ok(t)
            }
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

const OPS_HELP: &str = "connect, hello, shake, open, heartbeat, share, grab, errors or memory";

impl Threshold {
    pub fn parse(source: &str) -> Result<Threshold, String> {
        let (subject, rest) = source.split_once(':').ok_or_else(|| {
            format!("threshold `{source}`: write SUBJECT: STAT CMP VALUE, e.g. `shake: p99 < 5ms`")
        })?;
        let subject = subject.trim();
        let mut words = rest.split_whitespace();
        let (Some(stat), Some(cmp), Some(value), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(format!(
                "threshold `{source}`: after `{subject}:` write STAT CMP VALUE, e.g. `p99 < 5ms`"
            ));
        };
        let cmp = match cmp {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "==" => Cmp::Eq,
            other => {
                return Err(format!(
                    "threshold `{source}`: unknown comparison `{other}`; use <, <=, >, >= or =="
                ))
            }
        };
        if let Some(parsed) = crate::pre_push::figure::parse_subject(subject, stat, value, source) {
            let (figure, limit) = parsed?;
            return Ok(Threshold::new(source, Subject::PrePush(figure), cmp, limit));
        }
        let (subject, limit) = if subject == "memory" {
            if stat != "growth" {
                return Err(format!(
                    "threshold `{source}`: memory takes `growth`, e.g. `memory: growth < 64MiB`, not `{stat}`"
                ));
            }
            let bytes: bytesize::ByteSize = value.parse().map_err(|_| {
                format!("threshold `{source}`: `{value}` is not a size; write e.g. 64MiB, 512KiB or 1GiB")
            })?;
            (Subject::MemoryGrowth, bytes.as_u64() as f64)
        } else if subject == "errors" {
            match stat {
                "rate" => (Subject::ErrorRate, parse_rate(value, source)?),
                "count" => (
                    Subject::ErrorCount,
                    value.parse::<u64>().map_err(|_| {
                        format!("threshold `{source}`: `{value}` is not a whole count")
                    })? as f64,
                ),
                other => {
                    return Err(format!(
                        "threshold `{source}`: errors take `rate` or `count`, not `{other}`"
                    ))
                }
            }
        } else {
            let op = Op::from_name(subject).ok_or_else(|| {
                format!("threshold `{source}`: unknown operation `{subject}`; use {OPS_HELP}")
            })?;
            if stat == "rate" {
                let n = value.strip_suffix("/s").unwrap_or(value);
                let rate = n.parse::<f64>().ok().filter(|r| *r >= 0.0).ok_or_else(|| {
                    format!("threshold `{source}`: `{value}` is not a rate; write requests per second, e.g. 1000/s")
                })?;
                return Ok(Threshold::new(source, Subject::Rate(op), cmp, rate));
            }
            if stat == "count" {
                let n = value.parse::<u64>().map_err(|_| {
                    format!("threshold `{source}`: `{value}` is not a whole count, e.g. 3000")
                })?;
                return Ok(Threshold::new(source, Subject::Count(op), cmp, n as f64));
            }
            let stat = parse_stat(stat, source)?;
            let limit = humantime::parse_duration(value).map_err(|_| {
                format!("threshold `{source}`: `{value}` is not a duration; write e.g. 5ms, 250us or 1s")
            })?;
            (Subject::Latency(op, stat), duration_ms(limit))
        };
        Ok(Threshold::new(source, subject, cmp, limit))
    }

    fn new(source: &str, subject: Subject, cmp: Cmp, limit: f64) -> Threshold {
        Threshold {
            source: source.to_string(),
            subject,
            cmp,
            limit,
            abort_on_fail: false,
            grace: Duration::ZERO,
        }
    }

    /// The observed value (ms, fraction, count, per second or bytes) and whether the
    /// threshold holds, `elapsed_s` into the run. Memory is known once the run has held
    /// its peak (`resources`); before that it is observed as 0 growth.
    pub fn evaluate(
        &self,
        summary: &Summary,
        resources: Option<&ResourceReport>,
        elapsed_s: f64,
    ) -> (f64, bool) {
        let observed = match self.subject {
            Subject::Latency(op, stat) => {
                let h = &summary.ops[op as usize].latency;
                let us = match stat {
                    _ if h.is_empty() => 0,
                    Stat::Percentile(p) => h.value_at_quantile(p / 100.0),
                    Stat::Max => h.max(),
                    Stat::Mean => h.mean() as u64,
                };
                us as f64 / 1000.0
            }
            Subject::ErrorRate => summary.error_rate(),
            Subject::ErrorCount => summary.errors() as f64,
            Subject::MemoryGrowth => resources.map(|r| r.memory_growth_bytes()).unwrap_or(0.0),
            Subject::Count(op) => summary.count(op) as f64,
            Subject::Rate(op) => summary.count(op) as f64 / elapsed_s.max(1e-9),
            Subject::PrePush(f) => f.observe(&summary.pre_push),
        };
        (observed, self.cmp.holds(observed, self.limit))
    }

    /// Formats an observed value in the threshold's unit.
    pub fn format_value(&self, v: f64) -> String {
        match self.subject {
            Subject::Latency(..) => format!("{v:.3}ms"),
            Subject::ErrorRate => format!("{:.4}%", v * 100.0),
            Subject::ErrorCount => format!("{v}"),
            Subject::MemoryGrowth => format!("{:.1}MiB", v / 1_048_576.0),
            Subject::Rate(_) => format!("{v:.1}/s"),
            Subject::Count(_) => format!("{v}"),
            Subject::PrePush(f) => f.format(v),
        }
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn parse_stat(stat: &str, source: &str) -> Result<Stat, String> {
    match stat {
        "max" => Ok(Stat::Max),
        "mean" => Ok(Stat::Mean),
        s if s.starts_with('p') => {
            let p: f64 = s[1..].parse().map_err(|_| {
                format!("threshold `{source}`: `{s}` is not a percentile; write p50, p99 or p99.9")
            })?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "threshold `{source}`: percentile {p} is outside 0..100"
                ));
            }
            Ok(Stat::Percentile(p))
        }
        other => Err(format!(
            "threshold `{source}`: unknown statistic `{other}`; use pNN (p99, p99.9), max or mean"
        )),
    }
}

fn parse_rate(value: &str, source: &str) -> Result<f64, String> {
    let bad = || format!("threshold `{source}`: `{value}` is not a rate; write e.g. 0.1% or 0.001");
    let rate = match value.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map_err(|_| bad())? / 100.0,
        None => value.parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "threshold `{source}`: a rate lies between 0% and 100%"
        ));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_and_error_thresholds() {
        let t = Threshold::parse("shake: p99.9 < 5ms").unwrap();
        assert_eq!(
            t.subject,
            Subject::Latency(Op::Shake, Stat::Percentile(99.9))
        );
        assert_eq!(t.limit, 5.0);
        let t = Threshold::parse("errors: rate < 0.1%").unwrap();
        assert_eq!(t.subject, Subject::ErrorRate);
        assert!((t.limit - 0.001).abs() < 1e-12);
        assert_eq!(Threshold::parse("errors: count == 0").unwrap().limit, 0.0);
        let t = Threshold::parse("memory: growth < 64MiB").unwrap();
        assert_eq!(t.subject, Subject::MemoryGrowth);
        assert_eq!(t.limit, 64.0 * 1_048_576.0);
    }

    #[test]
    fn rates_counts_and_aborts() {
        let t = Threshold::parse("shake: rate > 1000/s").unwrap();
        assert_eq!(t.subject, Subject::Rate(Op::Shake));
        let mut s = Summary::default();
        for _ in 0..3_000 {
            s.record(Op::Shake, 1_000);
        }
        assert_eq!(t.evaluate(&s, None, 2.0), (1_500.0, true));
        assert_eq!(t.evaluate(&s, None, 4.0), (750.0, false));
        let c = Threshold::parse("shake: count >= 3000").unwrap();
        assert!(c.evaluate(&s, None, 1.0).1);
        let full: Threshold = serde_yaml::from_str(
            "{ threshold: 'errors: rate < 1%', abort_on_fail: true, grace: 10s }",
        )
        .unwrap();
        assert!(full.abort_on_fail);
        assert_eq!(full.grace, Duration::from_secs(10));
        let plain: Threshold = serde_yaml::from_str("'errors: rate < 1%'").unwrap();
        assert!(!plain.abort_on_fail);
        let e = serde_yaml::from_str::<Threshold>("{ threshold: 'errors: rate < 1%', grace: 5s }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only matters with `abort_on_fail: true`"), "{e}");
        let e = serde_yaml::from_str::<Threshold>("'shook: p99 < 1ms'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown operation `shook`"), "{e}");
    }

    #[test]
    fn bad_thresholds_say_what_to_write() {
        for (src, hint) in [
            ("shook: p99 < 5ms", "unknown operation `shook`"),
            ("shake: p99 ~ 5ms", "unknown comparison"),
            ("shake: p999x < 5ms", "not a percentile"),
            ("shake: p99 < fast", "not a duration"),
            ("errors: rate < 200%", "between 0% and 100%"),
            ("errors: p99 < 1ms", "rate` or `count"),
            ("shake p99 < 5ms", "SUBJECT: STAT CMP VALUE"),
            ("memory: p99 < 5MiB", "memory takes `growth`"),
            ("memory: growth < lots", "not a size"),
            ("shake: rate > fast", "not a rate"),
            ("connect: count >= 3k", "not a whole count"),
        ] {
            let e = Threshold::parse(src).unwrap_err();
            assert!(e.contains(hint), "{src}: {e}");
        }
    }
}

#[cfg(test)]
mod pre_push_tests {
    use super::*;
    use crate::pre_push::stats::PrePushStats;

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
