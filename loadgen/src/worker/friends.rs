//! The worker's side of split envelopes: each user's seeded friend list, and the chat
//! that carries a share to those friends.
//!
//! A user's friends come from its friend circle in the system's relation chain
//! (`sut_core::friends`), narrowed to the users the run can reach: every honest user
//! that connects at some point, wherever it is simulated (a distributed run), or this
//! machine's segment (a `--segment` run without a coordinator). The chat message of a
//! share (outside the shake protocol, as in the seed) goes to a friend simulated in
//! this worker in-process; to any other as [`Mail`], which the parent hands to the
//! friend's worker, through the coordinator when it is on another machine. Each
//! friend's grab goes over its own long connection to its own gateway.

use crate::hostile::HostileBehaviour;
use crate::segment::Segment;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// A share's notice to a friend simulated in another worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub friend: u64,
    pub share_id: u64,
    /// When the friend grabs, ms into the run (every worker's run starts at the same
    /// common start).
    pub due_ms: u64,
}

pub struct Friends {
    per_share: usize,
    seed: u64,
    /// The users mail can reach.
    reach: Segment,
    /// Users that ever connect: ids below the stages' peak.
    connecting: u64,
    hostile: HostileBehaviour,
    grab_delay: Duration,
    /// Each simulated user's slot in the worker; empty when nobody shares.
    slots: HashMap<u64, u32>,
    /// Shares on their way to friends here: (friend's slot, share id, when it grabs).
    pub mail: Vec<(u32, u64, Duration)>,
    /// Shares on their way to friends elsewhere.
    pub outbox: Vec<Mail>,
    /// Mail that arrived for a user not simulated here (misrouted: never expected).
    pub strays: u64,
}

impl Friends {
    /// `reach`: the users this worker's mail can reach (see the module's notes).
    pub fn new(profile: &crate::profile::Profile, reach: Segment) -> Friends {
        let split = &profile.behaviour.split;
        Friends {
            per_share: if split.share_probability > 0.0 {
                usize::from(split.friends)
            } else {
                0
            },
            seed: profile.seed,
            reach,
            connecting: profile.peak_users(),
            hostile: profile.behaviour.hostile.clone(),
            grab_delay: split.grab_delay,
            slots: HashMap::new(),
            mail: Vec::new(),
            outbox: Vec::new(),
            strays: 0,
        }
    }

    /// Mail from another worker, for a user simulated here.
    pub fn receive(&mut self, mail: &[Mail]) {
        for m in mail {
            match self.slots.get(&m.friend) {
                Some(slot) => self
                    .mail
                    .push((*slot, m.share_id, Duration::from_millis(m.due_ms))),
                None => self.strays += 1,
            }
        }
    }

    /// `user` is simulated here, at `slot`.
    pub fn enroll(&mut self, user: u64, slot: u32) {
        if self.per_share > 0 {
            self.slots.insert(user, slot);
        }
    }

    /// The friends `user` shares to: a seeded pick of its circle among the honest users
    /// that connect within reach, the same every time and wherever it is simulated.
    pub fn of(&self, user: u64) -> Vec<u64> {
        let mut circle: Vec<u64> = sut_core::friends::friends_of(user)
            .filter(|f| {
                *f < self.connecting
                    && self.reach.contains(*f)
                    && self.hostile.attack_of(*f, self.seed).is_none()
            })
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
            let due = now + self.grab_delay.mul_f64(2.0 * rng.random::<f64>());
            match self.slots.get(&f) {
                Some(slot) => self.mail.push((*slot, share_id, due)),
                None => self.outbox.push(Mail {
                    friend: f,
                    share_id,
                    due_ms: due.as_millis() as u64,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker simulating `segment`, whose mail reaches `reach`.
    fn friends(per_share: usize, segment: Segment, reach: Segment, users: u64) -> Friends {
        let mut f = Friends {
            per_share,
            seed: 7,
            reach,
            connecting: users,
            hostile: HostileBehaviour::default(),
            grab_delay: Duration::from_secs(1),
            slots: HashMap::new(),
            mail: Vec::new(),
            outbox: Vec::new(),
            strays: 0,
        };
        for (slot, u) in segment.users(users).enumerate() {
            f.enroll(u, slot as u32);
        }
        f
    }

    #[test]
    fn friend_lists_are_seeded_in_circle_and_in_reach() {
        let reach = Segment { index: 1, count: 4 };
        let worker = reach.part(0, 2);
        let f = friends(3, worker, reach, 2_000);
        for user in worker.users(2_000).take(200) {
            let list = f.of(user);
            assert_eq!(list.len(), 3);
            assert_eq!(list, f.of(user), "the same list each time");
            for friend in list {
                assert!(sut_core::friends::are_friends(user, friend));
                assert!(reach.contains(friend));
            }
        }
    }

    #[test]
    fn lists_do_not_depend_on_where_the_user_is_simulated() {
        let alone = friends(3, Segment::ALL, Segment::ALL, 3_000);
        let shared = friends(3, Segment { index: 2, count: 5 }, Segment::ALL, 3_000);
        for user in (2..3_000).step_by(5).take(300) {
            assert_eq!(alone.of(user), shared.of(user));
        }
    }

    #[test]
    fn friends_elsewhere_get_mail_and_mail_finds_them() {
        let (seg_a, seg_b) = (
            Segment { index: 0, count: 2 },
            Segment { index: 1, count: 2 },
        );
        let mut a = friends(5, seg_a, Segment::ALL, 2_000);
        let mut b = friends(5, seg_b, Segment::ALL, 2_000);
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(3);
        a.announce(10, 99, Duration::from_secs(3), &mut rng);
        let list = a.of(10);
        let here = list.iter().filter(|f| seg_a.contains(**f)).count();
        assert_eq!(a.mail.len(), here);
        assert_eq!(a.outbox.len(), list.len() - here);
        assert!(a
            .outbox
            .iter()
            .all(|m| seg_b.contains(m.friend) && m.share_id == 99));
        b.receive(&a.outbox);
        assert_eq!(b.mail.len(), a.outbox.len());
        assert_eq!(b.strays, 0);
        // Mail for a user b does not simulate is counted, not delivered.
        b.receive(&[Mail {
            friend: 10,
            share_id: 1,
            due_ms: 0,
        }]);
        assert_eq!(b.strays, 1);
    }

    #[test]
    fn announcing_mails_each_friend_within_twice_the_delay() {
        let mut f = friends(5, Segment::ALL, Segment::ALL, 1_000);
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
        let f = friends(0, Segment::ALL, Segment::ALL, 1_000);
        assert!(f.of(10).is_empty());
        assert!(f.slots.is_empty());
    }
}
