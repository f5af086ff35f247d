//! The resource servers' own counts, read from their `/metrics` at the end of a run
//! (before the system stops), beside what the phones counted: bytes, answers by
//! status, and responses corrupted on purpose against tampered copies refused.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// What the servers said they did, summed over them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerCounts {
    /// Servers whose `/metrics` answered, of those the run manifest lists.
    pub answered: usize,
    pub servers: usize,
    pub bytes_served: u64,
    pub answers: BTreeMap<String, u64>,
    pub corrupted: u64,
}

/// Reads every resource server's `/metrics` (name, address) within a few seconds.
pub fn read(metrics: &[(String, String)]) -> ServerCounts {
    let mut c = ServerCounts::default();
    for (_, addr) in metrics.iter().filter(|(n, _)| n.starts_with("resources-")) {
        c.servers += 1;
        let Some(text) = scrape(addr) else { continue };
        c.answered += 1;
        add(&mut c, &text);
    }
    c
}

/// Adds one scrape's families into `c`.
fn add(c: &mut ServerCounts, text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let v = v as u64;
        if series == "sut_resource_bytes_served_total" {
            c.bytes_served += v;
        } else if series == "sut_resource_corrupted_total" {
            c.corrupted += v;
        } else if let Some(status) = series
            .strip_prefix("sut_resource_requests_total{status=\"")
            .and_then(|s| s.strip_suffix("\"}"))
        {
            *c.answers.entry(status.to_string()).or_default() += v;
        }
    }
}

/// [`read`], off the caller's runtime thread.
pub async fn at_end(metrics: &[(String, String)]) -> Option<ServerCounts> {
    let metrics = metrics.to_vec();
    tokio::task::spawn_blocking(move || read(&metrics))
        .await
        .ok()
}

fn scrape(addr: &str) -> Option<String> {
    let addr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_adds_up_by_family() {
        let mut c = ServerCounts::default();
        let text = "# HELP x\nsut_resource_bytes_served_total 100\nsut_resource_requests_total{status=\"200\"} 3\nsut_resource_requests_total{status=\"304\"} 1\nsut_resource_corrupted_total 2\nsut_resource_bandwidth_bytes 5\n";
        add(&mut c, text);
        add(&mut c, text);
        assert_eq!(c.bytes_served, 200);
        assert_eq!(c.answers["200"], 6);
        assert_eq!(c.answers["304"], 2);
        assert_eq!(c.corrupted, 4);
        assert_eq!(
            read(&[("resources-0".into(), "127.0.0.1:1".into())]).answered,
            0
        );
    }
}
