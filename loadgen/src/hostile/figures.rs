//! What the hostile users did and saw, by attack: counted apart from the honest users,
//! merged from every connection, and reported in the summary, the JSON, the HTML report
//! and the metrics.

use super::Attack;
use crate::counts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one attack's users did and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackFigures {
    pub users: u64,
    pub connections: u64,
    /// Connect attempts the gateway refused or did not answer.
    pub connect_failures: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames the gateway sent back (replies and errors).
    pub frames_received: u64,
    /// Envelopes won (a racer's, over all its connections).
    pub envelopes: u64,
    /// Racers whose connections together received more than the limits allow.
    pub over_limit_users: u64,
    /// How connections ended: by the error code the gateway sent before closing, or
    /// `closed` (no word), `reset`, `write_failed`.
    pub ended: BTreeMap<String, u64>,
    /// Error frames that answered a request and left the connection open, by code.
    pub refused: BTreeMap<String, u64>,
}

impl AttackFigures {
    pub fn merge(&mut self, o: &AttackFigures) {
        self.users += o.users;
        self.connections += o.connections;
        self.connect_failures += o.connect_failures;
        self.frames_sent += o.frames_sent;
        self.bytes_sent += o.bytes_sent;
        self.frames_received += o.frames_received;
        self.envelopes += o.envelopes;
        self.over_limit_users += o.over_limit_users;
        for (k, v) in &o.ended {
            *self.ended.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
    }
}

/// Every attack's figures, by attack name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostileFigures {
    pub share: f64,
    pub by_attack: BTreeMap<String, AttackFigures>,
}

impl HostileFigures {
    pub fn users(&self) -> u64 {
        self.by_attack.values().map(|a| a.users).sum()
    }

    pub fn attack(&mut self, a: Attack) -> &mut AttackFigures {
        self.by_attack.entry(a.name().to_string()).or_default()
    }

    /// The text report's lines.
    pub fn lines(&self) -> String {
        let mut out = format!(
            "hostile users: {} ({:.1} % of users), kept apart: none of the latencies, errors or thresholds above are theirs\n",
            self.users(),
            self.share * 100.0
        );
        for (name, a) in &self.by_attack {
            let or_none = |line: String| if line.is_empty() { "-".into() } else { line };
            out.push_str(&format!(
                "  {name:<23} {} users, {} connections ({} refused), {} frames / {} sent, {} frames back; ended: {}; refused: {}{}\n",
                a.users,
                a.connections,
                a.connect_failures,
                a.frames_sent,
                bytesize::ByteSize(a.bytes_sent),
                a.frames_received,
                or_none(counts::line(&a.ended)),
                or_none(counts::line(&a.refused)),
                if name == "race" {
                    format!("; {} envelopes, {} racers past the limits", a.envelopes, a.over_limit_users)
                } else {
                    String::new()
                }
            ));
        }
        out
    }

    /// The HTML report's section.
    pub fn html(&self, racers_over_limit: Option<u64>) -> String {
        let esc = |t: &str| html_escape::encode_text(t).to_string();
        let mut body = format!(
            "<h2>Hostile users</h2><p>{} users ({:.1} %) attacked instead of playing; their figures are here alone: every latency, error and threshold elsewhere in this report is the honest users'.</p><table><tr><th>attack</th><th>users</th><th>connections</th><th>frames sent</th><th>bytes sent</th><th>frames back</th><th>how connections ended</th><th>refused</th></tr>",
            self.users(),
            self.share * 100.0
        );
        for (name, a) in &self.by_attack {
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                a.users,
                a.connections,
                a.frames_sent,
                a.bytes_sent,
                a.frames_received,
                esc(&counts::line(&a.ended)),
                esc(&counts::line(&a.refused))
            ));
        }
        body.push_str("</table>");
        if let Some(n) = racers_over_limit {
            body.push_str(&format!(
                "<p>Racers past the limits by the servers' records: {n}.</p>"
            ));
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_merge() {
        let mut a = AttackFigures {
            users: 1,
            ..Default::default()
        };
        a.ended.insert("frame_timeout".into(), 2);
        let mut b = a.clone();
        b.merge(&a);
        assert_eq!((b.users, b.ended["frame_timeout"]), (2, 4));
    }
}
