//! Loss for TCP users, where the run has the rights: the QUIC path emulates weak
//! networks itself ([`crate::network`]), but a TCP connection's packets are the
//! kernel's. With root and `nft`, a run whose one network condition covers every user
//! drops the same share of TCP packets to and from the gateways' ports, each way, with
//! an nftables table of its own that it deletes when it ends (and that a later run
//! deletes if this one was killed). Delay, jitter, bandwidth and reordering need netem,
//! which this kernel does not have: they stay QUIC-only, and the summary says so.

use crate::network::Condition;
use std::io::Write;
use std::process::{Command, Stdio};

/// What became of the profile's loss for TCP users.
#[derive(Debug)]
pub enum TcpLoss {
    /// Applied: the table to delete at the end (taken once deleted), and the summary's
    /// line.
    Applied { table: Option<String>, line: String },
    /// Not applied, and why (the summary's line).
    NotApplied(String),
    /// Nothing to apply (no loss, or no TCP users).
    None,
}

/// The table a run's rules live in (one per parent process).
fn table_name() -> String {
    format!("shakebench_{}", std::process::id())
}

/// The nftables ruleset that drops `percent` of TCP packets each way on `ports`.
pub fn ruleset(table: &str, ports: &[u16], percent: f64) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let per_10k = (percent * 100.0).round() as u32;
    format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    tcp dport {{ {ports} }} numgen random mod 10000 < {per_10k} drop\n    tcp sport {{ {ports} }} numgen random mod 10000 < {per_10k} drop\n  }}\n}}\n",
        ports = list.join(", ")
    )
}

/// Applies the profile's loss to TCP users' packets when it can: exactly one condition,
/// covering every user, with loss; root; `nft` on PATH; gateways on this machine.
pub fn apply(conditions: &[Condition], tcp_users: bool, gateways: &[String]) -> TcpLoss {
    let lossy: Vec<&Condition> = conditions.iter().filter(|c| c.loss_percent > 0.0).collect();
    if lossy.is_empty() || !tcp_users {
        return TcpLoss::None;
    }
    let not = |why: &str| {
        TcpLoss::NotApplied(format!(
            "TCP users' packets were NOT lost: {why}; loss applies to QUIC users only"
        ))
    };
    if conditions.len() != 1 || conditions[0].share < 1.0 {
        return not("nftables can only drop a share of every TCP packet, and the profile's conditions cover part of the users");
    }
    if !nix::unistd::geteuid().is_root() {
        return not("nftables rules need root");
    }
    let mut ports = Vec::new();
    for g in gateways {
        let Ok(addr) = g.parse::<std::net::SocketAddr>() else {
            return not(&format!("gateway address `{g}` is not an IP:port"));
        };
        if !addr.ip().is_loopback() {
            return not("the gateways are on another host (rules here would not see their packets' other direction)");
        }
        ports.push(addr.port());
    }
    let c = lossy[0];
    let table = table_name();
    // A table left by a run with this pid that was killed: gone first.
    let _ = nft(&format!("delete table inet {table}\n"));
    match nft(&ruleset(&table, &ports, c.loss_percent)) {
        Ok(()) => TcpLoss::Applied {
            line: format!(
                "TCP users: loss {} % each way applied by nftables (table inet {table}, gateway ports {}); delay, jitter, bandwidth and reordering are QUIC-only (no netem here)",
                c.loss_percent,
                ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            ),
            table: Some(table),
        },
        Err(e) => not(&format!("nft failed: {e}")),
    }
}

impl TcpLoss {
    /// The summary's line about TCP loss, if there is one.
    pub fn line(&self) -> Option<&str> {
        match self {
            TcpLoss::Applied { line, .. } | TcpLoss::NotApplied(line) => Some(line),
            TcpLoss::None => None,
        }
    }

    /// Deletes the rules (at the end of the run, or when dropped before it), once.
    pub fn remove(&mut self) {
        if let TcpLoss::Applied { table, .. } = self {
            if let Some(table) = table.take() {
                let _ = nft(&format!("delete table inet {table}\n"));
            }
        }
    }
}

impl Drop for TcpLoss {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft ({e}); install the nftables package"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_drops_the_share_each_way_on_the_gateway_ports() {
        let r = ruleset("t", &[7110, 7111], 2.0);
        assert!(r.contains("tcp dport { 7110, 7111 } numgen random mod 10000 < 200 drop"));
        assert!(r.contains("tcp sport { 7110, 7111 } numgen random mod 10000 < 200 drop"));
    }

    #[test]
    fn part_of_the_users_cannot_be_singled_out() {
        let c: Condition =
            serde_yaml::from_str("{ name: w, share: 0.5, loss_percent: 2 }").unwrap();
        let got = apply(&[c], true, &["127.0.0.1:7110".into()]);
        assert!(
            matches!(&got, TcpLoss::NotApplied(l) if l.contains("part of the users")),
            "{got:?}"
        );
        let none: Condition = serde_yaml::from_str("{ name: w, delay: 10ms }").unwrap();
        assert!(matches!(apply(&[none], true, &[]), TcpLoss::None));
    }
}
