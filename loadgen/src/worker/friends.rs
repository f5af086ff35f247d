//! The worker's side of split envelopes: each user's seeded friend list, and the chat
//! that carries a share to those friends.
//!
//! A user's friends come from its friend circle in the system's relation chain
//! (`sut_core::friends`), narrowed to the users this worker simulates: the chat message of
//! a share (outside the shake protocol, as in the seed) is then delivered in-process,
//! while each friend's grab goes over its own long connection to its own gateway.

use crate::segment::Segment;
use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;

pub struct Friends {
    per_share: usize,
    seed: u64,
    segment: Segment,
    users: u64,
    grab_delay: Duration,
    /// Each simulated user's slot in the worker; empty when nobody shares.
    slots: HashMap<u64, u32>,
    /// Shares on their way to friends: (friend's slot, share id, when it grabs).
    pub mail: Vec<(u32, u64, Duration)>,
}

impl Friends {
    pub fn new(profile: &crate::profile::Profile, segment: Segment) -> Friends {
        let split = &profile.behaviour.split;
        Friends {
            per_share: if split.share_probability > 0.0 {
                usize::from(split.friends)
            } else {
                0
            },
            seed: profile.seed,
            segment,
            users: profile.users,
            grab_delay: split.grab_delay,
            slots: HashMap::new(),
            mail: Vec::new(),
        }
    }

    /// `user` is simulated here, at `slot`.
    pub fn enroll(&mut self, user: u64, slot: u32) {
        if self.per_share > 0 {
            self.slots.insert(user, slot);
        }
    }

    /// The friends `user` shares to: a seeded pick of its circle among this worker's
    /// users, the same every time.
    pub fn of(&self, user: u64) -> Vec<u64> {
        let mut circle: Vec<u64> = sut_core::friends::friends_of(user)
            .filter(|f| *f < self.users && self.segment.contains(*f) && self.slots.contains_key(f))
            .collect();
        let salt = sut_core::spread::spread(user ^ self.seed);
        circle.sort_by_key(|f| sut_core::spread::spread(f ^ salt));
        circle.truncate(self.per_share);
        circle
    }

    /// `user`'s share was accepted at `now`: tell its friends, each of whom grabs at a
    /// seeded time within twice the reaction time.
    pub fn announce(&mut self, user: u64, share_id: u64, now: Duration, rng: &mut impl Rng) {
        for f in self.of(user) {
            if let Some(slot) = self.slots.get(&f) {
                let due = now + self.grab_delay.mul_f64(2.0 * rng.random::<f64>());
                self.mail.push((*slot, share_id, due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn friends(per_share: usize, segment: Segment, users: u64) -> Friends {
        let mut f = Friends {
            per_share,
            seed: 7,
            segment,
            users,
            grab_delay: Duration::from_secs(1),
            slots: HashMap::new(),
            mail: Vec::new(),
        };
        for (slot, u) in segment.users(users).enumerate() {
            f.enroll(u, slot as u32);
        }
        f
    }

    #[test]
    fn friend_lists_are_seeded_in_circle_and_in_worker() {
        let seg = Segment { index: 1, count: 4 };
        let f = friends(3, seg, 2_000);
        for user in seg.users(2_000).take(200) {
            let list = f.of(user);
            assert_eq!(list.len(), 3);
            assert_eq!(list, f.of(user), "the same list each time");
            for friend in list {
                assert!(sut_core::friends::are_friends(user, friend));
                assert!(seg.contains(friend));
            }
        }
    }

    #[test]
    fn announcing_mails_each_friend_within_twice_the_delay() {
        let mut f = friends(5, Segment::ALL, 1_000);
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(3);
        f.announce(10, 99, Duration::from_secs(3), &mut rng);
        assert_eq!(f.mail.len(), 5);
        for (_, id, due) in &f.mail {
            assert_eq!(*id, 99);
            assert!(*due >= Duration::from_secs(3) && *due <= Duration::from_secs(5));
        }
    }

    #[test]
    fn nobody_shares_when_splits_are_off() {
        let f = friends(0, Segment::ALL, 1_000);
        assert!(f.of(10).is_empty());
        assert!(f.slots.is_empty());
    }
}
