//! Grafana dashboards, checked before anyone opens them: a panel whose query names a
//! metric or an operation that does not exist would only show up as an empty panel at
//! run time, so `loadgen validate DASHBOARD.json` (and the tests) refuse it here.
//!
//! What is checked: panel ids are unique; every panel and query takes its datasource
//! from the `datasource` variable; every `sut_*`/`loadgen_*` metric a query names is
//! one the processes expose (the catalogs in [`crate::prom::METRICS`] and
//! [`sut_wire::metric_names::CATALOG`], which the dashboard proof test holds against real
//! scrapes), with a suffix its type has (`_bucket`, `_sum`, `_count` for histograms);
//! every `op` a query matches is an operation of the load generator; every `$variable`
//! is defined or one of Grafana's own.

use crate::stats::Op;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use thiserror::Error;

/// Grafana's own variables, and what the proof test puts in their place.
pub const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "15s"),
    ("__interval", "5s"),
    ("__range", "5m"),
];

/// One query of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub panel_id: u64,
    pub title: String,
    pub expr: String,
}

/// A dashboard that passed every check.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub title: String,
    pub queries: Vec<PanelQuery>,
    /// Each template variable's value for a concrete query: the `all` value of a
    /// multi-value variable, else its current value.
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum DashboardError {
    #[error("cannot read dashboard {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("dashboard {path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("dashboard {path}:\n  {}", problems.join("\n  "))]
    Invalid { path: String, problems: Vec<String> },
}

impl Dashboard {
    pub fn load(path: &Path) -> Result<Dashboard, DashboardError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DashboardError::Read {
            path: shown.clone(),
            source,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|source| DashboardError::Json {
            path: shown.clone(),
            source,
        })?;
        Dashboard::check(&json).map_err(|problems| DashboardError::Invalid {
            path: shown,
            problems,
        })
    }

    /// Every problem found, or the dashboard's queries.
    pub fn check(json: &Value) -> Result<Dashboard, Vec<String>> {
        let mut problems = Vec::new();
        let title = json["title"].as_str().unwrap_or("").to_string();
        if title.is_empty() {
            problems.push("`title`: give the dashboard a title".to_string());
        }
        let variables = variables(json, &mut problems);
        let mut panels = Vec::new();
        collect_panels(&json["panels"], &mut panels);
        if panels.is_empty() {
            problems.push("`panels`: the dashboard has no panels".to_string());
        }
        let mut ids = HashSet::new();
        let mut queries = Vec::new();
        for p in panels {
            let Some(id) = p["id"].as_u64() else {
                problems.push(format!(
                    "panel `{}`: every panel needs a numeric `id`",
                    p["title"].as_str().unwrap_or("?")
                ));
                continue;
            };
            let title = p["title"].as_str().unwrap_or("").to_string();
            let at = format!("panel {id} `{title}`");
            if !ids.insert(id) {
                problems.push(format!("{at}: id {id} is used twice; ids must be unique"));
            }
            if p["type"] == "row" {
                continue;
            }
            if !uses_datasource_variable(&p["datasource"]) {
                problems.push(format!(
                    "{at}: `datasource` must be {{\"type\": \"prometheus\", \"uid\": \"${{datasource}}\"}}"
                ));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: the panel has no queries (`targets`)"));
            }
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or("").to_string();
                let ref_id = t["refId"].as_str().unwrap_or("?");
                let at = format!("{at} query {ref_id}");
                if expr.trim().is_empty() {
                    problems.push(format!("{at}: empty `expr`"));
                    continue;
                }
                if !t["datasource"].is_null() && !uses_datasource_variable(&t["datasource"]) {
                    problems.push(format!(
                        "{at}: `datasource` must be the `datasource` variable"
                    ));
                }
                for m in check_expr(&expr, &variables) {
                    problems.push(format!("{at}: {m}"));
                }
                queries.push(PanelQuery {
                    panel_id: id,
                    title: title.clone(),
                    expr,
                });
            }
        }
        check_annotations(json, &variables, &mut problems);
        if problems.is_empty() {
            Ok(Dashboard {
                title,
                queries,
                variables,
            })
        } else {
            Err(problems)
        }
    }

    /// `expr` with every variable replaced by a concrete value, ready for Prometheus.
    pub fn expand(&self, expr: &str) -> String {
        let mut out = expr.to_string();
        // Longest names first, so `$__rate_interval` is not read as `$__range...`.
        let mut all: Vec<(&str, &str)> = GRAFANA_VARIABLES.to_vec();
        all.extend(self.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (name, value) in all {
            out = out.replace(&format!("${{{name}}}"), value);
            out = out.replace(&format!("${name}"), value);
        }
        out
    }
}

/// Annotations (faults, stage changes) query Prometheus like panels do: the same
/// checks, by name. An annotation may rightly find nothing in a quiet run, so the proof
/// test runs them without asking for series.
fn check_annotations(
    json: &Value,
    variables: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let list = json["annotations"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for a in list {
        let name = a["name"].as_str().unwrap_or("?");
        let at = format!("annotation `{name}`");
        if !uses_datasource_variable(&a["datasource"]) {
            problems.push(format!(
                "{at}: `datasource` must be {{\"type\": \"prometheus\", \"uid\": \"${{datasource}}\"}}"
            ));
        }
        let expr = a["expr"].as_str().unwrap_or("");
        if expr.trim().is_empty() {
            problems.push(format!("{at}: empty `expr`"));
            continue;
        }
        for m in check_expr(expr, variables) {
            problems.push(format!("{at}: {m}"));
        }
    }
}

/// The annotations' queries, as (name, expr).
pub fn annotations(json: &Value) -> Vec<(String, String)> {
    json["annotations"]["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap_or("").to_string(),
                        a["expr"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        collect_panels(&p["panels"], out);
    }
}

fn uses_datasource_variable(ds: &Value) -> bool {
    ds["uid"]
        .as_str()
        .is_some_and(|u| u == "${datasource}" || u == "$datasource")
}

fn variables(json: &Value, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut has_datasource = false;
    for v in json["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("").to_string();
        match v["type"].as_str() {
            Some("datasource") => {
                has_datasource |= name == "datasource" && v["query"] == "prometheus";
            }
            _ => {
                let value = if v["includeAll"] == true {
                    v["allValue"].as_str().unwrap_or(".*").to_string()
                } else {
                    v["current"]["value"].as_str().unwrap_or("").to_string()
                };
                if value.is_empty() {
                    problems.push(format!(
                        "variable `{name}`: give it a `current` value or `includeAll` with an `allValue`"
                    ));
                }
                out.insert(name, value);
            }
        }
    }
    if !has_datasource {
        problems.push(
            "`templating`: add a variable named `datasource` of type `datasource` (query `prometheus`) so the dashboard works with any Prometheus".to_string(),
        );
    }
    out
}

/// Problems with one query: unknown metrics, operations and variables.
fn check_expr(expr: &str, variables: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in metric_names(expr) {
        if let Err(m) = known_metric(&name) {
            problems.push(m);
        }
    }
    for op in matched_ops(expr) {
        if !op.contains('$') && Op::from_name(&op).is_none() {
            problems.push(format!(
                "op `{op}` is not an operation; use connect, hello, shake, open or heartbeat"
            ));
        }
    }
    for var in variable_refs(expr) {
        let known =
            GRAFANA_VARIABLES.iter().any(|(n, _)| *n == var) || variables.contains_key(&var);
        if !known {
            problems.push(format!(
                "`${var}` is neither a variable of this dashboard nor one of Grafana's ($__rate_interval, $__interval, $__range)"
            ));
        }
    }
    problems
}

/// The `sut_*` and `loadgen_*` identifiers of a query, outside quoted strings.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            if c == '\\' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            quote = Some(c);
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = chars.peek().copied() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[start..end];
            let preceded_by_dollar = expr[..start].ends_with('$');
            if !preceded_by_dollar && (word.starts_with("sut_") || word.starts_with("loadgen_")) {
                names.push(word.to_string());
            }
        }
    }
    names
}

fn known_metric(name: &str) -> Result<(), String> {
    let catalog = crate::prom::METRICS.iter().map(|(n, t)| (*n, *t)).chain(
        sut_wire::metric_names::CATALOG
            .iter()
            .map(|(_, n, t)| (*n, *t)),
    );
    for (family, kind) in catalog {
        if name == family {
            return if kind == "histogram" {
                Err(format!(
                    "`{name}` is a histogram: query `{name}_bucket`, `{name}_sum` or `{name}_count`"
                ))
            } else {
                Ok(())
            };
        }
        if kind == "histogram"
            && ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family))
        {
            return Ok(());
        }
    }
    let hint = if name.starts_with("loadgen_") {
        "see loadgen/src/prom.rs METRICS"
    } else {
        "see wire/src/metric_names.rs CATALOG"
    };
    Err(format!("metric `{name}` does not exist ({hint})"))
}

/// The values an `op="..."` or `op=~"..."` matcher names (alternatives split on `|`).
fn matched_ops(expr: &str) -> Vec<String> {
    let mut ops = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("op") {
        let before_ok = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let after = rest[i + 2..].trim_start();
        rest = &rest[i + 2..];
        if !before_ok {
            continue;
        }
        let value = if let Some(v) = after.strip_prefix("=~") {
            v
        } else if let Some(v) = after.strip_prefix('=') {
            v
        } else {
            continue;
        };
        let value = value.trim_start();
        if let Some(v) = value.strip_prefix('"') {
            if let Some(end) = v.find('"') {
                ops.extend(v[..end].split('|').map(str::to_string));
            }
        }
    }
    ops
}

fn variable_refs(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let inner = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dashboard(expr: &str) -> Value {
        json!({
            "title": "t",
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "gateway", "type": "query", "includeAll": true, "allValue": ".*"}
            ]},
            "panels": [
                {"id": 1, "type": "row", "title": "r", "panels": []},
                {"id": 2, "type": "timeseries", "title": "p",
                 "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "targets": [{"refId": "A", "expr": expr}]}
            ]
        })
    }

    fn problems(expr: &str) -> Vec<String> {
        Dashboard::check(&dashboard(expr)).err().unwrap_or_default()
    }

    #[test]
    fn a_good_query_passes_and_expands() {
        let d = Dashboard::check(&dashboard(
            r#"histogram_quantile(0.99, sum by (le) (rate(loadgen_latency_seconds_bucket{op="shake"}[$__rate_interval]))) + sum(sut_gateway_connections{instance_name=~"$gateway"})"#,
        ))
        .unwrap();
        assert_eq!(d.queries.len(), 1);
        let e = d.expand(&d.queries[0].expr);
        assert!(e.contains("[15s]") && e.contains(r#"=~".*""#), "{e}");
    }

    #[test]
    fn unknown_metric_is_named_with_its_panel() {
        let p = problems("rate(sut_gateway_shakez_total[1m])");
        assert!(
            p.len() == 1
                && p[0].contains("panel 2 `p` query A")
                && p[0].contains("sut_gateway_shakez_total"),
            "{p:?}"
        );
    }

    #[test]
    fn histogram_without_suffix_and_unknown_op_are_refused() {
        let p = problems(r#"loadgen_latency_seconds{op="shook"}"#);
        assert!(p.iter().any(|m| m.contains("is a histogram")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("op `shook`")), "{p:?}");
        let p = problems(r#"loadgen_requests_total{op=~"shake|opne"}"#);
        assert!(p.len() == 1 && p[0].contains("op `opne`"), "{p:?}");
    }

    #[test]
    fn undefined_variable_duplicate_id_and_fixed_datasource_are_refused() {
        assert!(problems("sut_gateway_connections{instance_name=~\"$gw\"}")[0].contains("`$gw`"));
        let mut d = dashboard("sut_gateway_connections");
        d["panels"][1]["id"] = json!(1);
        d["panels"][1]["datasource"] = json!({"type": "prometheus", "uid": "abc"});
        let p = Dashboard::check(&d).unwrap_err();
        assert!(p.iter().any(|m| m.contains("used twice")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("`datasource` must be")),
            "{p:?}"
        );
    }

    #[test]
    fn names_inside_strings_are_not_metrics() {
        assert_eq!(
            metric_names(r#"sum by (op) (loadgen_requests_total{result="sut_not_a_metric"})"#),
            vec!["loadgen_requests_total".to_string()]
        );
    }

    #[test]
    fn an_annotation_naming_an_unknown_metric_is_refused() {
        let mut d = dashboard("sum(rate(loadgen_requests_total[1m]))");
        d["annotations"] = json!({"list": [{
            "name": "stage changes",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": "changes(loadgen_stages_total[1m]) > 0"
        }]});
        let e = Dashboard::check(&d).unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.contains("annotation `stage changes`")
                    && m.contains("loadgen_stages_total")),
            "{e:?}"
        );
    }

    #[test]
    fn shipped_dashboards_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let d = Dashboard::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    d.queries.len() >= 10,
                    "{}: {} queries",
                    path.display(),
                    d.queries.len()
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 2, "expected the load generator and system dashboards");
    }
}
