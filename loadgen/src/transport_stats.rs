//! A run's figures split by transport (TCP, QUIC), kept when its users mix them: each
//! operation's latency and errors, and the connection levels, so that one summary
//! shows what QUIC costs against TCP over the same run.

use crate::op_stats::{self, ops_from_wire, ops_to_wire, Op, OpsStats, WireError};
use crate::transport::Transport;
use serde::{Deserialize, Serialize};

/// One transport's part of a run.
#[derive(Debug, Clone, Default)]
pub struct TransportStats {
    pub ops: OpsStats,
    /// Users connected now over this transport (a level).
    pub connected: u64,
    /// Connections lost other than by the user's own choice.
    pub drops: u64,
    /// Users that established a session over this transport.
    pub users_connected: u64,
    /// Sessions online when their user's network changed, and those of them lost
    /// (dropped afterwards, or, over TCP, at once: the user reconnects).
    pub network_changes: u64,
    pub sessions_lost_to_change: u64,
    /// Datagrams the gateways sent to a client's new address after its network
    /// changed: the QUIC connections migrated.
    pub datagrams_to_new_address: u64,
}

/// [`TransportStats`] on its way from a worker: histograms in HdrHistogram's V2 format.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireTransportStats {
    ops: Vec<(Vec<u8>, u64)>,
    connected: u64,
    drops: u64,
    users_connected: u64,
    network_changes: u64,
    sessions_lost_to_change: u64,
    datagrams_to_new_address: u64,
}

impl TransportStats {
    pub fn count(&self, op: Op) -> u64 {
        self.ops[op as usize].latency.len()
    }

    pub fn errors(&self) -> u64 {
        op_stats::errors(&self.ops)
    }

    pub fn requests(&self) -> u64 {
        op_stats::requests(&self.ops)
    }

    pub fn merge(&mut self, other: &TransportStats) {
        op_stats::merge(&mut self.ops, &other.ops);
        self.connected += other.connected;
        self.drops += other.drops;
        self.users_connected += other.users_connected;
        self.network_changes += other.network_changes;
        self.sessions_lost_to_change += other.sessions_lost_to_change;
        self.datagrams_to_new_address += other.datagrams_to_new_address;
    }

    /// Starts the next interval; `connected` is a level and stays.
    pub fn clear_interval(&mut self) {
        op_stats::clear(&mut self.ops);
        self.drops = 0;
        self.users_connected = 0;
        self.network_changes = 0;
        self.sessions_lost_to_change = 0;
        self.datagrams_to_new_address = 0;
    }

    pub fn to_wire(&self) -> Result<WireTransportStats, WireError> {
        Ok(WireTransportStats {
            ops: ops_to_wire(&self.ops)?,
            connected: self.connected,
            drops: self.drops,
            users_connected: self.users_connected,
            network_changes: self.network_changes,
            sessions_lost_to_change: self.sessions_lost_to_change,
            datagrams_to_new_address: self.datagrams_to_new_address,
        })
    }

    pub fn from_wire(w: WireTransportStats) -> Result<TransportStats, WireError> {
        Ok(TransportStats {
            ops: ops_from_wire(w.ops)?,
            connected: w.connected,
            drops: w.drops,
            users_connected: w.users_connected,
            network_changes: w.network_changes,
            sessions_lost_to_change: w.sessions_lost_to_change,
            datagrams_to_new_address: w.datagrams_to_new_address,
        })
    }
}

/// Every transport's figures, in [`Transport::ALL`] order; empty when a run does not
/// split them (all its users on one transport).
pub fn split() -> Vec<TransportStats> {
    Transport::ALL
        .iter()
        .map(|_| TransportStats::default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    /// What a QUIC user records lands in the QUIC part and the totals; the part goes
    /// over the wire and merges exactly, and its connected level survives an interval.
    #[test]
    fn a_users_figures_land_in_its_transports_part_and_travel_exactly() {
        let mut s = Summary {
            by_transport: split(),
            ..Summary::default()
        };
        s.recording = Transport::Quic;
        for v in [10, 200, 3_000] {
            s.record(Op::Shake, v);
        }
        s.error(Op::Shake, "timeout");
        s.transport_part().unwrap().connected = 2;
        s.recording = Transport::Tcp;
        s.record(Op::Shake, 50);
        let quic = &s.by_transport[Transport::Quic as usize];
        assert_eq!((quic.count(Op::Shake), quic.errors()), (3, 1));
        assert_eq!(s.by_transport[Transport::Tcp as usize].count(Op::Shake), 1);
        assert_eq!(s.count(Op::Shake), 4);

        let back = Summary::from_wire(
            postcard::from_bytes(&postcard::to_stdvec(&s.to_wire().unwrap()).unwrap()).unwrap(),
        )
        .unwrap();
        let mut merged = Summary::default();
        merged.merge(&back);
        merged.merge(&back);
        let q = &merged.by_transport[Transport::Quic as usize];
        assert_eq!((q.count(Op::Shake), q.errors(), q.connected), (6, 2, 4));
        assert_eq!(
            q.ops[Op::Shake as usize].latency.max(),
            quic.ops[Op::Shake as usize].latency.max()
        );
        s.clear_interval();
        let quic = &s.by_transport[Transport::Quic as usize];
        assert_eq!((quic.requests(), quic.connected), (0, 2));
    }

    /// A run on one transport keeps no split: nothing is recorded twice.
    #[test]
    fn without_a_split_nothing_is_recorded_twice() {
        let mut s = Summary {
            recording: Transport::Quic,
            ..Summary::default()
        };
        s.record(Op::Open, 5);
        assert!(s.by_transport.is_empty());
        assert!(s.transport_part().is_none());
    }
}
