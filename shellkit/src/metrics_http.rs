//! `/metrics` over HTTP for every process: one registry, encoded at scrape time in the
//! format the scraper asks for.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
/// The OpenMetrics media type, which Prometheus asks for first.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format, for everything else (curl, promtool, older scrapers).
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites the OpenMetrics text the registry encodes into the classic Prometheus text
/// format (0.0.4): there a counter's HELP and TYPE name the `_total` sample itself, and
/// there is no `# UNIT` or `# EOF`. Served to scrapers that do not ask for OpenMetrics,
/// so that `promtool check metrics` reads every family with its help and type.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, mut tail) = rest.split_once(' ').unwrap_or((rest, ""));
                // Types the classic format lacks; a HELP text is left as it is.
                if prefix == "# TYPE "
                    && matches!(tail, "unknown" | "info" | "stateset" | "gaugehistogram")
                {
                    tail = "untyped";
                }
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                // Counters' `_created` samples have no place in the classic format.
                let sample_name = line.split(['{', ' ']).next().unwrap_or("");
                let created = sample_name
                    .strip_suffix("_created")
                    .is_some_and(|base| counters.contains(base));
                if !created {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Encodes `registry` in the format the scraper's `Accept` header asks for.
pub fn exposition(
    registry: &Registry,
    accept: &str,
) -> Result<(&'static str, String), std::fmt::Error> {
    let mut body = String::new();
    encode(&mut body, registry)?;
    if accept.contains("application/openmetrics-text") {
        Ok((OPENMETRICS, body))
    } else {
        Ok((TEXT, openmetrics_to_text(&body)))
    }
}

/// Binds `addr` and serves the registry on `/metrics` until the runtime ends.
pub async fn serve(addr: &str, registry: Arc<Registry>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move {
                let accept = headers
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                match exposition(&registry, accept) {
                    Ok((content_type, body)) => {
                        ([(CONTENT_TYPE, content_type)], body).into_response()
                    }
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "encode failed",
                    )
                        .into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn classic_text_names_counters_by_their_total_sample() {
        let mut registry = Registry::default();
        let shakes: Family<Vec<(&'static str, String)>, Counter> = Family::default();
        let _ = shakes.get_or_create(&vec![("reason", "envelope".to_string())]);
        registry.register("sut_shakes", "Shakes", shakes);
        let g: Gauge = Gauge::default();
        registry.register("sut_depth", "Depth", g);
        let (content_type, text) = exposition(&registry, "*/*").unwrap();
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(text.contains("# HELP sut_shakes_total Shakes.\n"), "{text}");
        assert!(text.contains("# TYPE sut_shakes_total counter\n"), "{text}");
        assert!(
            text.contains("sut_shakes_total{reason=\"envelope\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE sut_depth gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let (content_type, om) =
            exposition(&registry, "application/openmetrics-text;version=1.0.0").unwrap();
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(
            om.contains("# TYPE sut_shakes counter") && om.ends_with("# EOF\n"),
            "{om}"
        );
    }
}
