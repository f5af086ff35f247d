//! How the per-user limits held: the audit's users over the limit split into
//! adversarial and hostile cheaters (measured, excused) and honest users (a failure
//! when their clients received the excess).

use serde::Serialize;

/// How the per-user limits held against the profile's adversarial users.
#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    pub adversarial_share: f64,
    pub adversarial_users: u64,
    /// Adversarial users that got more than the limits allow (by the servers' records).
    pub adversarial_over_limit: u64,
    /// Honest users whose clients received more than the limits allow: must be 0.
    pub honest_over_limit: u64,
    /// Honest users the servers recorded past the limits although their clients never
    /// received it: an issue recorded just before its gateway crashed (or whose reply
    /// came after the client gave up) never reached the user, who then shook on with
    /// the cookie from before. Reported, not a failure: the user got what the limits
    /// allow, and an envelope never delivered is never opened, so no money moves.
    pub honest_issued_undelivered: Vec<u64>,
    /// Gateway hops the adversarial users made.
    pub hops: u64,
    /// Hostile users (`behaviour.hostile`) the servers recorded past the limits: the
    /// racers, who shake on every gateway at once. With strict limits, 0.
    pub hostile_over_limit: u64,
    #[serde(skip)]
    hostile: crate::hostile::HostileBehaviour,
    #[serde(skip)]
    pub seed: u64,
    /// Users whose clients received more than the limits allow.
    #[serde(skip)]
    received_over_limit: std::collections::BTreeSet<u64>,
}

impl LimitReport {
    /// Splits the audit's users over the limit into adversarial ones, honest ones whose
    /// clients received too much, and honest ones whose clients did not.
    pub fn new(
        seed: u64,
        share: f64,
        users: u64,
        over_limit: &[u64],
        received_over_limit: &[u64],
        hops: u64,
        hostile: &crate::hostile::HostileBehaviour,
    ) -> LimitReport {
        // A hostile user is counted as hostile alone, never as adversarial or honest.
        let is_hostile = |u: u64| hostile.attack_of(u, seed).is_some();
        let adversarial = |u: u64| crate::profile::is_adversarial(u, seed, share);
        let received: std::collections::BTreeSet<u64> =
            received_over_limit.iter().copied().collect();
        let cheats = over_limit
            .iter()
            .filter(|u| !is_hostile(**u) && adversarial(**u))
            .count() as u64;
        LimitReport {
            adversarial_share: share,
            adversarial_users: (0..users).filter(|u| adversarial(*u)).count() as u64,
            adversarial_over_limit: cheats,
            honest_over_limit: received.iter().filter(|u| !adversarial(**u)).count() as u64,
            honest_issued_undelivered: over_limit
                .iter()
                .copied()
                .filter(|u| !is_hostile(*u) && !adversarial(*u) && !received.contains(u))
                .collect(),
            hops,
            hostile_over_limit: over_limit.iter().filter(|u| is_hostile(**u)).count() as u64,
            hostile: hostile.clone(),
            seed,
            received_over_limit: received,
        }
    }

    pub fn is_adversarial(&self, user: u64) -> bool {
        crate::profile::is_adversarial(user, self.seed, self.adversarial_share)
    }

    fn is_hostile(&self, user: u64) -> bool {
        self.hostile.attack_of(user, self.seed).is_some()
    }

    /// Whether the audit's finding that `user` is over the limit is excused: a cheater
    /// (adversarial or hostile), or an honest user whose client never received more
    /// than the limits allow.
    pub fn excuses(&self, user: u64) -> bool {
        self.is_adversarial(user)
            || self.is_hostile(user)
            || !self.received_over_limit.contains(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_users_are_judged_by_what_their_clients_received() {
        // Seed 7 at 5 %: user 200 cheats, 720 is honest (see profile::is_adversarial).
        assert!(crate::profile::is_adversarial(200, 7, 0.05));
        assert!(!crate::profile::is_adversarial(720, 7, 0.05));
        let l = LimitReport::new(7, 0.05, 2000, &[200, 720], &[200], 0, &Default::default());
        assert_eq!(l.adversarial_over_limit, 1);
        assert_eq!(l.honest_over_limit, 0);
        assert_eq!(l.honest_issued_undelivered, vec![720]);
        assert!(l.excuses(200) && l.excuses(720));
        let l = LimitReport::new(7, 0.05, 2000, &[720], &[720], 0, &Default::default());
        assert_eq!(l.honest_over_limit, 1, "the client received it: a failure");
        assert!(!l.excuses(720));
    }
}
