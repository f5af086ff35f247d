//! The open-file limit, which sizes everything at scale here: every process may hold at
//! most 20,000 files (a hard limit root cannot raise), so a million connections means
//! many processes, each sized to what its limit allows.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Files a process keeps for itself beyond its connections: listeners, the database,
/// epoll and timer descriptors, logs, pipes, with room to spare.
pub const RESERVED: u64 = 256;

/// Raises the soft open-file limit to the hard one and returns it. A process that cannot
/// read its limit gets 1024, the usual default.
pub fn raise_to_hard_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Connections one process can hold under `limit` open files.
pub fn connection_capacity(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED).max(1)
}

/// Processes needed to hold `connections`, each filled to at most `fill` (0..=1) of its
/// capacity: users spread over processes by hash, so the fullest gets more than the mean.
pub fn processes_for(connections: u64, limit: u64, fill: f64) -> u64 {
    let per = ((connection_capacity(limit) as f64) * fill.clamp(0.1, 1.0)).floor() as u64;
    connections.div_ceil(per.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_needs_dozens_of_processes() {
        assert_eq!(connection_capacity(20_000), 19_744);
        // 1M at 90 % of 19,744 per process.
        assert_eq!(processes_for(1_000_000, 20_000, 0.9), 57);
        assert_eq!(processes_for(3_000, 20_000, 0.9), 1);
        assert_eq!(processes_for(0, 20_000, 0.9), 1);
        assert_eq!(processes_for(10, 100, 1.0), 10);
    }
}
