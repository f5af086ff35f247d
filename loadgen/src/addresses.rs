//! Addresses as profiles and command lines give them (`host:port`), resolved.

use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves each `host:port` to its first socket address; the error names the first
/// that does not resolve (`WHAT `ADDR` does not resolve`).
pub fn resolve(names: &[String], what: &str) -> Result<Vec<SocketAddr>, String> {
    names
        .iter()
        .map(|n| {
            n.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("{what} `{n}` does not resolve"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_or_are_named() {
        let ok = resolve(&["127.0.0.1:7110".into()], "gateway address").unwrap();
        assert_eq!(ok, vec![SocketAddr::from(([127, 0, 0, 1], 7110))]);
        let e = resolve(&["127.0.0.1:1".into(), "no-port".into()], "gateway address");
        assert_eq!(e, Err("gateway address `no-port` does not resolve".into()));
    }
}
