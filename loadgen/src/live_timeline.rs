//! The live timeline in a profile: programme changes an operator makes while the load
//! runs, and what the run shows of each: when every gateway applied it, which channel
//! brought it first, how many shakes were decided on the version it replaced.
//!
//! ```yaml
//! timeline_changes:
//!   - { at: 20s, change: "move 2 -10s" }     # round 2 ten seconds earlier
//!   - { at: 35s, change: "budget 3 6000" }   # round 3's budget raised
//! faults:
//!   - { channel_down: push, at: 5s, down_for: 60s }   # the push channel cut
//!   - { kill: config-1, at: 5s, down_for: 60s }       # a config service down
//! ```
//!
//! Each change is a control line for `sut up` (`timeline move 2 -10s`), so a run can
//! change only a system it started. The figures come from the files the system keeps:
//! the versions the operator's tool recorded and each gateway's applied log.

use crate::faults::{Action, Step};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use sut_core::programme_change::Change;

/// One change of the profile's `timeline_changes:` list.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineChange {
    /// When, counted from the run's start.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub at: Duration,
    /// The operator's command, as `sut timeline` takes it: `move 2 -10s`, `move 2 now`,
    /// `budget 3 6000`, `rate 1 300`, `cancel 2`, `clock -250ms`.
    pub change: String,
}

/// Checks a change's words; `i` is its place in the list, for messages.
pub fn check(i: usize, c: &TimelineChange) -> Result<(), String> {
    let words: Vec<&str> = c.change.split_whitespace().collect();
    if words.first() == Some(&"replace") {
        return Err(format!(
            "timeline_changes[{i}]: `replace` needs a file the running system reads; run `sut timeline replace FILE --data DIR` by hand instead"
        ));
    }
    Change::parse(&words)
        .map(|_| ())
        .map_err(|e| format!("timeline_changes[{i}].change: {e}"))
}

/// The control steps the changes make.
pub fn steps(changes: &[TimelineChange]) -> Vec<Step> {
    changes
        .iter()
        .map(|c| Step {
            at: c.at,
            action: Action::Control(format!("timeline {}", c.change.trim())),
        })
        .collect()
}

/// What one change did, as the gateways recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeReport {
    pub version: u64,
    pub change: String,
    /// When the operator's tool signed it, in seconds from the run's start.
    pub signed_at_s: f64,
    pub gateways: u16,
    /// Gateways on this version or a later one by the end.
    pub applied: u16,
    /// Time from signing to applying, over the gateways that applied it.
    pub p50_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Gateways by the channel that brought the version first (`later` when a gateway
    /// skipped it for a newer one).
    pub first_channel: BTreeMap<String, u16>,
    /// Shakes decided on an older version after this one was signed, over gateways.
    pub stale_shakes: u64,
}

/// Reads every change the run's system recorded (`data`), with `start_at` the run's
/// start (Unix ms).
pub fn report(data: &Path, gateways: u16, start_at: i64) -> Vec<ChangeReport> {
    let applied = sut_wire::schedule::read_applied(data, gateways);
    sut_wire::schedule::recorded_versions(data)
        .into_iter()
        .map(|v| {
            let mut lags = Vec::new();
            let mut first_channel: BTreeMap<String, u16> = BTreeMap::new();
            for g in 0..gateways {
                // The first version at or past this one the gateway applied.
                let Some(a) = applied
                    .iter()
                    .filter(|a| a.gateway == g && a.version >= v.version)
                    .min_by_key(|a| a.applied_unix_ms)
                else {
                    continue;
                };
                lags.push((a.applied_unix_ms - v.signed_unix_ms).max(0) as f64);
                let channel = if a.version == v.version {
                    a.channel.clone()
                } else {
                    "later".to_string()
                };
                *first_channel.entry(channel).or_default() += 1;
            }
            lags.sort_by(f64::total_cmp);
            ChangeReport {
                version: v.version,
                change: v.change.clone(),
                signed_at_s: (v.signed_unix_ms - start_at) as f64 / 1000.0,
                gateways,
                applied: lags.len() as u16,
                p50_ms: (!lags.is_empty()).then(|| lags[(lags.len() - 1) / 2]),
                max_ms: lags.last().copied(),
                first_channel,
                stale_shakes: applied
                    .iter()
                    .filter(|a| a.version == v.version)
                    .map(|a| a.stale_shakes)
                    .sum(),
            }
        })
        .collect()
}

impl ChangeReport {
    /// Gateways by the channel that brought the version first, `push 3, gossip 1`
    /// (empty when none took it).
    fn first_by(&self) -> String {
        let channels: Vec<String> = self
            .first_channel
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        channels.join(", ")
    }

    /// One line for the summary.
    pub fn line(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
        let first = self.first_by();
        format!(
            "v{} at {:.1} s ({}): on {}/{} gateways, p50 {}, max {}; first by {}; {} shakes decided on the older version",
            self.version,
            self.signed_at_s,
            self.change,
            self.applied,
            self.gateways,
            ms(self.p50_ms),
            ms(self.max_ms),
            if first.is_empty() { "none" } else { &first },
            self.stale_shakes
        )
    }
}

/// Decided shakes by version, `v1 14280, v2 12000`.
fn by_version(versions: &BTreeMap<u64, u64>) -> String {
    let parts: Vec<String> = versions.iter().map(|(v, n)| format!("v{v} {n}")).collect();
    parts.join(", ")
}

/// The summary's live timeline section: each change, then the clients' shakes by the
/// version they were decided on (shown when the run changed the timeline).
pub fn write_summary(out: &mut String, changes: &[ChangeReport], versions: &BTreeMap<u64, u64>) {
    use std::fmt::Write;
    if changes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nlive timeline (when each gateway applied each version, from signing):"
    );
    for c in changes {
        let _ = writeln!(out, "  {}", c.line());
    }
    let _ = writeln!(
        out,
        "  decided shakes by the version their reply named: {}",
        by_version(versions)
    );
}

/// The HTML report's live timeline section (empty when the run changed nothing).
pub fn html(changes: &[ChangeReport], versions: &BTreeMap<u64, u64>) -> String {
    use std::fmt::Write;
    if changes.is_empty() {
        return String::new();
    }
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut out = String::from(
        "<h2>Live timeline</h2><p>Each programme change the operator made during the run: when it was signed, how many gateways applied it (or a later version), the time from signing to applying over gateways, the channel that brought it first, and the shakes gateways decided on the version it replaced after it was signed.</p><table><tr><th>version</th><th>change</th><th>signed at</th><th>gateways</th><th>p50 ms</th><th>max ms</th><th>first by</th><th>stale shakes</th></tr>",
    );
    for c in changes {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.1} s</td><td class=\"num\">{}/{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            c.version,
            esc(&c.change),
            c.signed_at_s,
            c.applied,
            c.gateways,
            ms(c.p50_ms),
            ms(c.max_ms),
            esc(&c.first_by()),
            c.stale_shakes
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<p>Decided shakes by the version their reply named: {}</p>",
        esc(&by_version(versions))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sut_wire::schedule::{Applied, OperatorKey, Schedule};
    use sut_wire::timeline::Timeline;

    fn applied(gateway: u16, version: u64, channel: &str, at: i64, stale: u64) -> String {
        serde_json::to_string(&Applied {
            gateway,
            version,
            change: String::new(),
            channel: channel.into(),
            signed_unix_ms: 0,
            applied_unix_ms: at,
            stale_shakes: stale,
        })
        .unwrap()
    }

    #[test]
    fn convergence_is_read_per_version_from_the_gateways_logs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let key = OperatorKey::from_pkcs8(&OperatorKey::generate_pkcs8().unwrap(), "k").unwrap();
        std::fs::create_dir_all(data.join("timeline")).unwrap();
        for (v, at) in [(2u64, 10_000i64), (3, 20_000)] {
            let s = Schedule {
                version: v,
                signed_unix_ms: at,
                change: format!("change {v}"),
                clock_offset_ms: 0,
                timeline: Timeline::parse("rounds: []\n", "t").unwrap(),
            };
            std::fs::write(
                data.join(format!("timeline/v{v:06}.json")),
                key.sign(&s).to_json(),
            )
            .unwrap();
        }
        // Gateway 0 took both; gateway 1 only version 3; gateway 2 neither.
        let g0 = [
            applied(0, 2, "push", 10_040, 5),
            applied(0, 3, "gossip", 20_900, 1),
        ];
        std::fs::write(data.join("gateway-0.timeline.jsonl"), g0.join("\n")).unwrap();
        std::fs::write(
            data.join("gateway-1.timeline.jsonl"),
            applied(1, 3, "pull", 20_200, 7) + "\n{torn",
        )
        .unwrap();
        let r = report(data, 3, 5_000);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].version, r[0].applied, r[0].signed_at_s), (2, 2, 5.0));
        assert_eq!(
            r[0].max_ms,
            Some(10_200.0),
            "gateway 1 reached it by version 3"
        );
        assert_eq!(r[0].first_channel.get("later"), Some(&1));
        assert_eq!(r[0].stale_shakes, 5);
        assert_eq!(
            (r[1].applied, r[1].p50_ms, r[1].max_ms),
            (2, Some(200.0), Some(900.0))
        );
        assert_eq!(r[1].stale_shakes, 8);
        assert!(r[1].line().contains("on 2/3 gateways"), "{}", r[1].line());
    }

    #[test]
    fn bad_changes_name_their_place() {
        let c = |s: &str| TimelineChange {
            at: Duration::ZERO,
            change: s.into(),
        };
        assert!(check(0, &c("move 2 -10s")).is_ok());
        let e = check(3, &c("move 2 10")).unwrap_err();
        assert!(
            e.contains("timeline_changes[3].change") && e.contains("add a unit"),
            "{e}"
        );
        assert!(check(1, &c("replace x.yaml"))
            .unwrap_err()
            .contains("by hand"));
    }
}
