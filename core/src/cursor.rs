//! The issuance cursor over a seed shard, and its durable lease.
//!
//! The gateway may only issue an envelope whose index lies below a lease end that is
//! already on disk. After a crash the cursor resumes at the persisted lease end, so ids
//! between the last issue and the lease end are skipped (and later recycled), never
//! issued twice. Leases are taken a chunk at a time and renewed early, so the fsync of a
//! lease is off the shake's path in the normal case.

/// Where issuance stands in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceCursor {
    next: u64,
    leased_end: u64,
    total: u64,
    chunk: u64,
    lease_pending: bool,
}

impl IssuanceCursor {
    /// Resumes after whatever was leased before (0 for a fresh shard): everything below
    /// `leased_end` may have been issued by an earlier life of this gateway.
    pub fn resume(leased_end: u64, total: u64, chunk: u64) -> Self {
        let leased_end = leased_end.min(total);
        IssuanceCursor {
            next: leased_end,
            leased_end,
            total,
            chunk: chunk.max(1),
            lease_pending: false,
        }
    }

    /// The index the next issue would use, if the lease covers it.
    pub fn peek(&self) -> Option<u64> {
        (self.next < self.leased_end).then_some(self.next)
    }

    /// Uses the next leased index.
    pub fn take(&mut self) -> Option<u64> {
        let i = self.peek()?;
        self.next += 1;
        Some(i)
    }

    /// True once every envelope of the shard is issued or skipped.
    pub fn exhausted(&self) -> bool {
        self.next >= self.total
    }

    /// The lease end to persist now, if the remaining lease runs low and none is pending.
    /// The caller must persist it and then call [`Self::lease_granted`] (or
    /// [`Self::lease_failed`]).
    pub fn wanted_lease(&mut self) -> Option<u64> {
        if self.lease_pending || self.leased_end >= self.total {
            return None;
        }
        if self.leased_end - self.next > self.chunk / 2 {
            return None;
        }
        self.lease_pending = true;
        Some((self.leased_end + self.chunk).min(self.total))
    }

    /// The shard grew to `total` envelopes (a raised budget): leasing and issuing go on
    /// into the new ones.
    pub fn extend(&mut self, total: u64) {
        self.total = self.total.max(total);
    }

    pub fn lease_granted(&mut self, end: u64) {
        self.leased_end = self.leased_end.max(end.min(self.total));
        self.lease_pending = false;
    }

    pub fn lease_failed(&mut self) {
        self.lease_pending = false;
    }

    /// Indices issued by this life of the cursor so far and the lease end, for metrics.
    pub fn position(&self) -> (u64, u64) {
        (self.next, self.leased_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_issued_without_a_lease() {
        let mut c = IssuanceCursor::resume(0, 100, 10);
        assert_eq!(c.take(), None);
        assert_eq!(c.wanted_lease(), Some(10));
        // A second request while one is pending is not made.
        assert_eq!(c.wanted_lease(), None);
        c.lease_granted(10);
        for i in 0..10 {
            assert_eq!(c.take(), Some(i));
        }
        assert_eq!(c.take(), None);
    }

    #[test]
    fn leases_renew_early() {
        let mut c = IssuanceCursor::resume(0, 100, 10);
        let end = c.wanted_lease().unwrap();
        c.lease_granted(end);
        for _ in 0..4 {
            c.take();
        }
        assert_eq!(c.wanted_lease(), None, "6 left of 10: not yet");
        c.take();
        assert_eq!(c.wanted_lease(), Some(20));
    }

    #[test]
    fn restart_resumes_after_the_lease_never_before() {
        let mut c = IssuanceCursor::resume(0, 100, 10);
        c.lease_granted(10);
        c.take();
        c.take();
        // Crash: only the lease end (10) was durable.
        let mut after = IssuanceCursor::resume(10, 100, 10);
        assert_eq!(after.take(), None);
        let end = after.wanted_lease().unwrap();
        after.lease_granted(end);
        assert_eq!(after.take(), Some(10));
    }

    #[test]
    fn lease_is_capped_at_the_shard() {
        let mut c = IssuanceCursor::resume(95, 100, 10);
        assert_eq!(c.wanted_lease(), Some(100));
        c.lease_granted(100);
        for _ in 0..5 {
            assert!(c.take().is_some());
        }
        assert!(c.exhausted());
        assert_eq!(c.wanted_lease(), None);
    }
}
