//! `loadgen compare BASELINE.json CURRENT.json`: what moved between two runs' summaries,
//! judged against tolerances.
//!
//! A tolerance is `[OP.]STAT=LIMIT`: `p99=10%` (every operation's p99 may grow by 10 %
//! at most), `shake.p50=5%`, `rate=5%` (throughput may fall by 5 % at most),
//! `errors=0.1%` (the error rate may rise by 0.1 percentage points at most). Stats:
//! p50, p90, p99, p99.9, max, rate, errors.

use serde_json::Value;
use std::fmt::Write;
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CompareError {
    #[error("tolerance `{0}`: write [OP.]STAT=LIMIT, e.g. p99=10% or shake.rate=5%")]
    Form(String),
    #[error(
        "tolerance `{0}`: unknown statistic `{1}`; use p50, p90, p99, p99.9, max, rate or errors"
    )]
    Stat(String, String),
    #[error("tolerance `{0}`: unknown operation `{1}`; use connect, hello, shake, open, heartbeat, share or grab")]
    Op(String, String),
    #[error("tolerance `{0}`: `{1}` is not a percentage, e.g. 10%")]
    Limit(String, String),
    #[error("{0} is not a loadgen summary (no `ops`): give the summary.json of a run")]
    NotASummary(String),
}

/// What a tolerance bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// A latency field of the op's row (`p99_ms`...): may grow by the limit, relative.
    Latency(&'static str),
    /// `rate_per_s`: may fall by the limit, relative.
    Rate,
    /// The run's error rate: may rise by the limit, in percentage points.
    Errors,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    pub source: String,
    /// `None`: every operation.
    pub op: Option<String>,
    pub stat: Stat,
    /// A fraction (10 % = 0.1).
    pub limit: f64,
}

const OPS: [&str; 7] = [
    "connect",
    "hello",
    "shake",
    "open",
    "heartbeat",
    "share",
    "grab",
];

impl FromStr for Tolerance {
    type Err = CompareError;
    fn from_str(source: &str) -> Result<Tolerance, CompareError> {
        let form = || CompareError::Form(source.to_string());
        let (key, limit) = source.split_once('=').ok_or_else(form)?;
        let (op, stat) = match key.trim().split_once('.') {
            // `p99.9` alone is a stat, not an op.
            Some((op, stat)) if OPS.contains(&op) => (Some(op.to_string()), stat),
            Some((op, _)) if !op.starts_with('p') => {
                return Err(CompareError::Op(source.into(), op.into()))
            }
            _ => (None, key.trim()),
        };
        let stat = match stat {
            "p50" => Stat::Latency("p50_ms"),
            "p90" => Stat::Latency("p90_ms"),
            "p99" => Stat::Latency("p99_ms"),
            "p99.9" => Stat::Latency("p999_ms"),
            "max" => Stat::Latency("max_ms"),
            "rate" => Stat::Rate,
            "errors" => Stat::Errors,
            other => return Err(CompareError::Stat(source.into(), other.into())),
        };
        if op.is_some() && stat == Stat::Errors {
            return Err(CompareError::Form(source.into()));
        }
        let bad = || CompareError::Limit(source.into(), limit.trim().into());
        let limit = limit
            .trim()
            .strip_suffix('%')
            .ok_or_else(bad)?
            .parse::<f64>()
            .ok()
            .filter(|v| *v >= 0.0)
            .ok_or_else(bad)?
            / 100.0;
        Ok(Tolerance {
            source: source.to_string(),
            op,
            stat,
            limit,
        })
    }
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub what: String,
    pub baseline: f64,
    pub current: f64,
    /// The tolerance that judged it, and whether it held.
    pub judged: Option<(String, bool)>,
}

impl Row {
    /// The change, relative (or in percentage points for the error rate).
    fn change(&self) -> String {
        if self.what == "error rate" {
            return format!("{:+.3} pp", (self.current - self.baseline) * 100.0);
        }
        if self.baseline == 0.0 {
            return if self.current == 0.0 {
                "=".into()
            } else {
                "new".into()
            };
        }
        format!("{:+.1} %", (self.current / self.baseline - 1.0) * 100.0)
    }
}

pub struct Comparison {
    pub rows: Vec<Row>,
    pub tolerances: usize,
}

impl Comparison {
    pub fn regressed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.judged.as_ref().is_some_and(|(_, ok)| !ok))
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:>12} {:>12} {:>11}  judged by",
            "", "baseline", "current", "change"
        );
        for r in &self.rows {
            let verdict = match &r.judged {
                Some((t, true)) => format!("ok    {t}"),
                Some((t, false)) => format!("WORSE {t}"),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<22} {:>12.3} {:>12.3} {:>11}  {verdict}",
                r.what,
                r.baseline,
                r.current,
                r.change()
            );
        }
        let regressed = self.regressed();
        if self.tolerances == 0 {
            let _ = writeln!(
                out,
                "no tolerances given (--max-regression): nothing judged"
            );
        } else if regressed.is_empty() {
            let _ = writeln!(out, "no regression past the tolerances");
        } else {
            let _ = writeln!(
                out,
                "REGRESSED: {} figures past their tolerance",
                regressed.len()
            );
        }
        out
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Compares two summaries (`summary.json`) under `tolerances`.
pub fn compare(
    (base_name, base): (&str, &Value),
    (cur_name, cur): (&str, &Value),
    tolerances: &[Tolerance],
) -> Result<Comparison, CompareError> {
    for (name, v) in [(base_name, base), (cur_name, cur)] {
        if !v["ops"].is_object() {
            return Err(CompareError::NotASummary(name.to_string()));
        }
    }
    let judge = |op: Option<&str>, stat: Stat, b: f64, c: f64| {
        tolerances
            .iter()
            .filter(|t| t.stat == stat && (t.op.is_none() || t.op.as_deref() == op))
            // The most specific tolerance (one naming the operation) wins.
            .max_by_key(|t| t.op.is_some())
            .map(|t| {
                let ok = match stat {
                    Stat::Latency(_) => c <= b * (1.0 + t.limit) || b == 0.0,
                    Stat::Rate => c >= b * (1.0 - t.limit),
                    Stat::Errors => c <= b + t.limit,
                };
                (t.source.clone(), ok)
            })
    };
    let mut rows = Vec::new();
    for op in OPS {
        let (b, c) = (&base["ops"][op], &cur["ops"][op]);
        if number(&b["count"]) == 0.0 && number(&c["count"]) == 0.0 {
            continue;
        }
        let mut push = |field: &'static str, label: &str, stat: Stat| {
            let (bv, cv) = (number(&b[field]), number(&c[field]));
            rows.push(Row {
                what: format!("{op} {label}"),
                baseline: bv,
                current: cv,
                judged: judge(Some(op), stat, bv, cv),
            });
        };
        push("rate_per_s", "rate/s", Stat::Rate);
        for (field, label) in [
            ("p50_ms", "p50 ms"),
            ("p90_ms", "p90 ms"),
            ("p99_ms", "p99 ms"),
            ("p999_ms", "p99.9 ms"),
            ("max_ms", "max ms"),
        ] {
            push(field, label, Stat::Latency(field));
        }
    }
    let (be, ce) = (number(&base["error_rate"]), number(&cur["error_rate"]));
    rows.push(Row {
        what: "error rate".into(),
        baseline: be,
        current: ce,
        judged: judge(None, Stat::Errors, be, ce),
    });
    Ok(Comparison {
        rows,
        tolerances: tolerances.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(shake_p99: f64, shake_rate: f64, error_rate: f64) -> Value {
        json!({
            "ops": {
                "shake": { "count": 1000, "rate_per_s": shake_rate, "p50_ms": 1.0, "p90_ms": 2.0,
                           "p99_ms": shake_p99, "p999_ms": 9.0, "max_ms": 20.0 },
                "open": { "count": 100, "rate_per_s": 10.0, "p50_ms": 2.0, "p90_ms": 3.0,
                          "p99_ms": 4.0, "p999_ms": 5.0, "max_ms": 6.0 },
                "grab": { "count": 0, "rate_per_s": 0.0 }
            },
            "error_rate": error_rate
        })
    }

    fn tol(list: &[&str]) -> Vec<Tolerance> {
        list.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_regression_past_its_tolerance_is_caught_and_one_within_is_not() {
        let base = summary(5.0, 1000.0, 0.0);
        let worse = summary(6.0, 940.0, 0.002);
        let t = tol(&["p99=10%", "rate=5%", "errors=0.1%"]);
        let c = compare(("a", &base), ("b", &worse), &t).unwrap();
        let bad: Vec<&str> = c.regressed().iter().map(|r| r.what.as_str()).collect();
        assert_eq!(bad, ["shake rate/s", "shake p99 ms", "error rate"]);
        assert!(c.table().contains("REGRESSED: 3"));
        // Within every tolerance: nothing regressed.
        let close = summary(5.4, 960.0, 0.0005);
        let c = compare(("a", &base), ("b", &close), &t).unwrap();
        assert!(c.regressed().is_empty(), "{}", c.table());
        // An operation's own tolerance overrides the general one.
        let t = tol(&["p99=10%", "shake.p99=25%"]);
        let c = compare(("a", &base), ("b", &worse), &t).unwrap();
        assert!(c.regressed().is_empty(), "{}", c.table());
        // Operations with no requests in either run are left out.
        assert!(!c.table().contains("grab"));
    }

    #[test]
    fn bad_tolerances_and_files_say_what_to_write() {
        for (src, want) in [
            ("p99", "write [OP.]STAT=LIMIT"),
            ("p98=10%", "unknown statistic `p98`"),
            ("shook.p99=10%", "unknown operation `shook`"),
            ("p99=10", "not a percentage"),
            ("shake.errors=1%", "write [OP.]STAT=LIMIT"),
        ] {
            let e = src.parse::<Tolerance>().unwrap_err().to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
        assert_eq!(
            "p99.9=5%".parse::<Tolerance>().unwrap().stat,
            Stat::Latency("p999_ms")
        );
        let e = compare(("x.json", &json!({})), ("y", &summary(1.0, 1.0, 0.0)), &[]);
        assert!(matches!(e, Err(CompareError::NotASummary(n)) if n == "x.json"));
    }
}
