//! Split envelopes (share / grab / recycle): the envelope backend's rules, with no I/O.
//!
//! An opened sponsor envelope carries a pot of split parts. Its opener may share the
//! pot once, to friends; each friend grabs at most one part; the backend deals the
//! amounts by the double-mean method (each grab uniform in [1 cent, 2 x remaining /
//! parts left], capped so every later part still gets a cent; the last part takes the
//! rest). Whatever is not shared or not grabbed by the pot's expiry is recycled: it
//! goes back to the sponsor, recorded, never silently dropped. So for every pot,
//! `grabbed + recycled + still open = pot`, and no user grabs a pot twice.
//!
//! Time and randomness come from the caller (show time in ms, a roll in [0, 1)), so
//! the same calls give the same outcome: a retried request after a crash is answered
//! from what was recorded, never dealt again.
//!
//! Repeats get the original answer, as an idempotency key does in a payment API: a
//! friend grabbing a pot again is told the part it was dealt (and no money moves); an
//! opener sharing again to the same friends is told the share stands.
//!
//! The envelope backend keeps one [`Split`] per pot durably (see `envelope::split_store`)
//! and runs these rules on it inside its group-commit transactions.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use sut_wire::split::{Pot, SplitError};

/// How a pot is derived from its envelope: 2 to 5 parts, twice the opened amount (the
/// sponsor matches what the opener got), at least a cent per part.
pub fn pot_for(
    envelope_id: u64,
    owner: u64,
    amount_cents: u32,
    opened_ms: i64,
    ttl_ms: i64,
) -> Pot {
    let parts = 2 + (crate::spread::spread(envelope_id) % 4) as u32;
    Pot {
        envelope_id,
        owner,
        cents: (2 * u64::from(amount_cents)).max(u64::from(parts)),
        parts,
        expires_ms: opened_ms + ttl_ms,
    }
}

/// One grab's amount by the double-mean method. `parts_left >= 1`, `remaining >=
/// parts_left` (a cent each), `roll` in [0, 1). The last part takes all that remains.
pub fn deal(remaining: u64, parts_left: u32, roll: f64) -> u64 {
    let parts_left = u64::from(parts_left.max(1));
    if parts_left == 1 {
        return remaining;
    }
    // Leave at least a cent for each part after this one.
    let most = (2 * remaining / parts_left)
        .min(remaining - (parts_left - 1))
        .max(1);
    let roll = roll.clamp(0.0, 1.0 - f64::EPSILON);
    1 + ((roll * most as f64) as u64).min(most - 1)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Opened, not shared yet.
    Unshared,
    /// Shared to these friends.
    Shared { friends: Vec<u64> },
    /// Expired: what was left went back to the sponsor.
    Recycled { cents: u64, was_shared: bool },
}

/// A grab's answer: the part's amount and index in the pot; `repeat` when this friend
/// was dealt it before (no money moves a second time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grab {
    pub cents: u64,
    pub part: u32,
    pub repeat: bool,
}

/// One pot and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub pot: Pot,
    pub state: State,
    /// Grabs in order: (user, cents).
    pub grabs: Vec<(u64, u64)>,
}

impl Split {
    pub fn grabbed_cents(&self) -> u64 {
        self.grabs.iter().map(|(_, c)| c).sum()
    }

    pub fn recycled_cents(&self) -> u64 {
        match self.state {
            State::Recycled { cents, .. } => cents,
            _ => 0,
        }
    }

    /// What is still neither grabbed nor recycled.
    pub fn open_cents(&self) -> u64 {
        self.pot.cents - self.grabbed_cents() - self.recycled_cents()
    }

    /// This pot's violations of the split invariants (DESIGN.md section 4, invariant
    /// 3): never more out than in, recycled means settled, at most one part per grab
    /// and per user, no empty part.
    pub fn check(&self) -> Vec<String> {
        let id = self.pot.envelope_id;
        let s = self;
        let mut problems = Vec::new();
        let grabbed = s.grabbed_cents();
        if grabbed + s.recycled_cents() > s.pot.cents {
            problems.push(format!(
                "pot {id}: grabbed {grabbed} + recycled {} exceed {}",
                s.recycled_cents(),
                s.pot.cents
            ));
        }
        if matches!(s.state, State::Recycled { .. }) && grabbed + s.recycled_cents() != s.pot.cents
        {
            problems.push(format!(
                "pot {id}: recycled, yet grabbed + recycled != {}",
                s.pot.cents
            ));
        }
        if s.grabs.len() > s.pot.parts as usize {
            problems.push(format!(
                "pot {id}: {} grabs of {} parts",
                s.grabs.len(),
                s.pot.parts
            ));
        }
        if s.grabs.len() == s.pot.parts as usize && grabbed != s.pot.cents {
            problems.push(format!(
                "pot {id}: every part grabbed, yet {grabbed} of {} cents",
                s.pot.cents
            ));
        }
        let mut users: Vec<u64> = s.grabs.iter().map(|(u, _)| *u).collect();
        users.sort_unstable();
        users.dedup();
        if users.len() != s.grabs.len() {
            problems.push(format!("pot {id}: a user grabbed twice"));
        }
        if s.grabs.iter().any(|(_, c)| *c == 0) {
            problems.push(format!("pot {id}: a grab of 0 cents"));
        }
        problems
    }

    /// Whether its opener shared it (before or after it was recycled).
    pub fn was_shared(&self) -> bool {
        matches!(
            self.state,
            State::Shared { .. }
                | State::Recycled {
                    was_shared: true,
                    ..
                }
        )
    }

    /// A fresh pot, not shared yet.
    pub fn new(pot: Pot) -> Split {
        Split {
            pot,
            state: State::Unshared,
            grabs: Vec::new(),
        }
    }

    /// The opener shares the pot to `friends` (each must pass `is_friend`).
    pub fn share(
        &mut self,
        user: u64,
        friends: &[u64],
        now_ms: i64,
        is_friend: impl Fn(u64, u64) -> bool,
    ) -> Result<(), SplitError> {
        if self.pot.owner != user {
            return Err(SplitError::NotOwner);
        }
        let mut asked = friends.to_vec();
        asked.sort_unstable();
        asked.dedup();
        match &self.state {
            State::Recycled { .. } => return Err(SplitError::Recycled),
            // The same share again (a retry after a lost reply): it stands.
            State::Shared { friends } if *friends == asked => return Ok(()),
            State::Shared { .. } => return Err(SplitError::AlreadyShared),
            State::Unshared => {}
        }
        if now_ms >= self.pot.expires_ms {
            return Err(SplitError::Expired);
        }
        if friends.is_empty() {
            return Err(SplitError::NoFriends);
        }
        if friends.contains(&user) {
            return Err(SplitError::ShareToSelf);
        }
        if friends.iter().any(|f| !is_friend(user, *f)) {
            return Err(SplitError::NotFriend);
        }
        self.state = State::Shared { friends: asked };
        Ok(())
    }

    /// A friend grabs a part (`roll` in [0, 1)): the part dealt now, or the part this
    /// friend was dealt before (a repeat, answered whatever happened to the pot since).
    pub fn grab(&mut self, user: u64, now_ms: i64, roll: f64) -> Result<Grab, SplitError> {
        if self.pot.owner == user {
            return Err(SplitError::OwnShare);
        }
        if let Some(part) = self.grabs.iter().position(|(u, _)| *u == user) {
            return Ok(Grab {
                cents: self.grabs[part].1,
                part: part as u32,
                repeat: true,
            });
        }
        let friends = match &self.state {
            State::Recycled { .. } => return Err(SplitError::Recycled),
            State::Unshared => return Err(SplitError::NotShared),
            State::Shared { friends } => friends,
        };
        if friends.binary_search(&user).is_err() {
            return Err(SplitError::NotInvited);
        }
        if now_ms >= self.pot.expires_ms {
            return Err(SplitError::Expired);
        }
        let parts_left = self.pot.parts - self.grabs.len() as u32;
        if parts_left == 0 {
            return Err(SplitError::NoPartsLeft);
        }
        let cents = deal(self.open_cents(), parts_left, roll);
        self.grabs.push((user, cents));
        Ok(Grab {
            cents,
            part: self.grabs.len() as u32 - 1,
            repeat: false,
        })
    }

    /// Past its expiry, what the pot still holds is recycled: the cents, once.
    pub fn expire(&mut self, now_ms: i64) -> Option<u64> {
        if now_ms < self.pot.expires_ms || matches!(self.state, State::Recycled { .. }) {
            return None;
        }
        let cents = self.open_cents();
        let was_shared = matches!(self.state, State::Shared { .. });
        self.state = State::Recycled { cents, was_shared };
        Some(cents)
    }
}

/// Every pot the backend knows, by envelope id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitBook {
    pub splits: BTreeMap<u64, Split>,
}

impl SplitBook {
    /// An envelope was opened: its pot exists from now on. A repeat is ignored.
    pub fn opened(&mut self, pot: Pot) {
        self.splits
            .entry(pot.envelope_id)
            .or_insert_with(|| Split::new(pot));
    }

    pub fn share(
        &mut self,
        envelope_id: u64,
        user: u64,
        friends: &[u64],
        now_ms: i64,
        is_friend: impl Fn(u64, u64) -> bool,
    ) -> Result<(), SplitError> {
        self.splits
            .get_mut(&envelope_id)
            .ok_or(SplitError::NoSuchPot)?
            .share(user, friends, now_ms, is_friend)
    }

    /// A friend grabs a part: the part dealt (or dealt before, for a repeat).
    pub fn grab(
        &mut self,
        envelope_id: u64,
        user: u64,
        now_ms: i64,
        roll: f64,
    ) -> Result<Grab, SplitError> {
        self.splits
            .get_mut(&envelope_id)
            .ok_or(SplitError::NoSuchPot)?
            .grab(user, now_ms, roll)
    }

    /// Recycles every pot past its expiry that still holds money; returns (envelope,
    /// cents recycled) for each, to be recorded and credited back to the sponsor.
    pub fn expire(&mut self, now_ms: i64) -> Vec<(u64, u64)> {
        self.splits
            .iter_mut()
            .filter_map(|(id, s)| s.expire(now_ms).map(|cents| (*id, cents)))
            .collect()
    }

    /// The split invariants (DESIGN.md section 4, invariant 3), each pot's violations named.
    pub fn check(&self) -> Vec<String> {
        self.splits.values().flat_map(Split::check).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn friends(a: u64, b: u64) -> bool {
        a != b && !(a + b).is_multiple_of(2)
    }

    fn pot(id: u64, owner: u64, cents: u64, parts: u32) -> Pot {
        Pot {
            envelope_id: id,
            owner,
            cents,
            parts,
            expires_ms: 10_000,
        }
    }

    proptest! {
        /// Dealing a whole pot: the sum is exact, every part is at least a cent, and the
        /// number of parts is exact, whatever the rolls.
        #[test]
        fn double_mean_split_is_exact(cents in 1u64..1_000_000, parts in 1u32..200, rolls in proptest::collection::vec(0.0f64..1.0, 200)) {
            prop_assume!(cents >= u64::from(parts));
            let mut remaining = cents;
            let mut dealt = Vec::new();
            for k in 0..parts {
                let c = deal(remaining, parts - k, rolls[k as usize]);
                prop_assert!(c >= 1);
                prop_assert!(c <= remaining - u64::from(parts - k - 1), "leaves a cent for each later part");
                remaining -= c;
                dealt.push(c);
            }
            prop_assert_eq!(dealt.len(), parts as usize);
            prop_assert_eq!(dealt.iter().sum::<u64>(), cents);
            prop_assert_eq!(remaining, 0);
        }

        /// Each grab is at most twice the mean of what is left (the double-mean bound).
        #[test]
        fn a_grab_stays_within_twice_the_mean(remaining in 2u64..1_000_000, parts in 2u32..100, roll in 0.0f64..1.0) {
            prop_assume!(remaining >= u64::from(parts));
            let c = deal(remaining, parts, roll);
            prop_assert!(c <= (2 * remaining / u64::from(parts)).max(1));
        }
    }

    #[test]
    fn bad_shares_and_grabs_have_their_own_errors_and_move_nothing() {
        let mut b = SplitBook::default();
        b.opened(pot(1, 10, 100, 3));
        assert_eq!(
            b.share(2, 10, &[11], 0, friends),
            Err(SplitError::NoSuchPot)
        );
        assert_eq!(b.share(1, 11, &[12], 0, friends), Err(SplitError::NotOwner));
        assert_eq!(
            b.share(1, 10, &[10], 0, |_, _| true),
            Err(SplitError::ShareToSelf)
        );
        assert_eq!(
            b.share(1, 10, &[12], 0, friends),
            Err(SplitError::NotFriend)
        );
        assert_eq!(b.share(1, 10, &[], 0, friends), Err(SplitError::NoFriends));
        assert_eq!(b.grab(1, 11, 0, 0.5), Err(SplitError::NotShared));
        b.share(1, 10, &[11, 13, 15, 17], 0, friends).unwrap();
        assert_eq!(
            b.share(1, 10, &[11], 0, friends),
            Err(SplitError::AlreadyShared)
        );
        assert_eq!(b.grab(1, 10, 0, 0.5), Err(SplitError::OwnShare));
        assert_eq!(b.grab(1, 19, 0, 0.5), Err(SplitError::NotInvited));
        let first = b.grab(1, 11, 0, 0.5).unwrap();
        let second = b.grab(1, 13, 0, 0.9).unwrap();
        let third = b.grab(1, 15, 0, 0.1).unwrap();
        assert_eq!(
            first.cents + second.cents + third.cents,
            100,
            "the last part takes the rest"
        );
        assert_eq!(b.grab(1, 17, 0, 0.5), Err(SplitError::NoPartsLeft));
        assert!(b.check().is_empty());
    }

    #[test]
    fn repeats_get_the_original_answer_and_move_nothing() {
        let mut b = SplitBook::default();
        b.opened(pot(1, 10, 100, 3));
        b.share(1, 10, &[13, 11], 0, friends).unwrap();
        assert_eq!(
            b.share(1, 10, &[11, 13, 11], 5, friends),
            Ok(()),
            "same friends"
        );
        let first = b.grab(1, 11, 0, 0.5).unwrap();
        assert!(!first.repeat);
        let again = b.grab(1, 11, 100, 0.9).unwrap();
        assert_eq!(
            (again.cents, again.part, again.repeat),
            (first.cents, 0, true)
        );
        assert_eq!(b.splits[&1].grabs.len(), 1, "dealt once");
        // After the pot was recycled the friend is still told its part.
        b.expire(10_000);
        assert_eq!(b.grab(1, 11, 10_000, 0.1).map(|g| g.cents), Ok(first.cents));
        assert!(b.check().is_empty());
    }

    #[test]
    fn what_is_not_shared_or_grabbed_by_expiry_is_recycled() {
        let mut b = SplitBook::default();
        b.opened(pot(1, 10, 100, 3));
        b.opened(pot(2, 20, 50, 2));
        b.share(1, 10, &[11, 13], 0, friends).unwrap();
        let got = b.grab(1, 11, 5_000, 0.3).unwrap().cents;
        assert_eq!(b.expire(9_999), vec![]);
        let recycled = b.expire(10_000);
        assert_eq!(recycled, vec![(1, 100 - got), (2, 50)]);
        assert_eq!(b.grab(1, 13, 10_000, 0.3), Err(SplitError::Recycled));
        assert_eq!(
            b.share(2, 20, &[21], 10_000, friends),
            Err(SplitError::Recycled)
        );
        assert_eq!(b.expire(20_000), vec![], "recycled once");
        assert!(b.check().is_empty());
    }

    #[test]
    fn every_refusal_is_listed_once_with_its_own_name() {
        let mut names: Vec<&str> = SplitError::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SplitError::ALL.len());
    }

    #[test]
    fn pots_hold_a_cent_per_part() {
        for id in 0..1000 {
            let p = pot_for(id, 1, 1, 0, 1000);
            assert!((2..=5).contains(&p.parts));
            assert!(p.cents >= u64::from(p.parts));
        }
    }
}
