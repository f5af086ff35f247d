//! Per-user envelope limits: at most 3 envelopes, at most 1 per sponsor (seed mechanism 3).
//!
//! The gateway's own table is the second layer behind the cookie: a client that drops or
//! replays an old cookie still meets the table's view. The decision merges both views.

use std::collections::HashMap;
use sut_wire::cookie::MAX_ENVELOPES_PER_USER;

/// Sponsors of the envelopes each user got from this gateway. Only winners take space.
#[derive(Debug, Default, Clone)]
pub struct UserTable {
    won: HashMap<u64, Vec<u16>>,
}

impl UserTable {
    /// The union of what the cookie says and what this table saw.
    pub fn merged(&self, user: u64, cookie_sponsors: &[u16]) -> Vec<u16> {
        let mut all: Vec<u16> = cookie_sponsors.to_vec();
        if let Some(seen) = self.won.get(&user) {
            for s in seen {
                if !all.contains(s) {
                    all.push(*s);
                }
            }
        }
        all
    }

    pub fn record(&mut self, user: u64, sponsor: u16) {
        let entry = self.won.entry(user).or_default();
        if !entry.contains(&sponsor) {
            entry.push(sponsor);
        }
    }

    /// Takes back a record of a win that was not issued after all.
    pub fn forget(&mut self, user: u64, sponsor: u16) {
        if let Some(entry) = self.won.get_mut(&user) {
            entry.retain(|s| *s != sponsor);
            if entry.is_empty() {
                self.won.remove(&user);
            }
        }
    }
}

/// Why a user may not have another envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitCheck {
    Allowed,
    /// Already at [`MAX_ENVELOPES_PER_USER`].
    UserLimit,
    /// Already has one of this sponsor.
    SponsorTaken,
}

pub fn check(sponsors: &[u16], sponsor: u16) -> LimitCheck {
    if sponsors.len() >= MAX_ENVELOPES_PER_USER {
        LimitCheck::UserLimit
    } else if sponsors.contains(&sponsor) {
        LimitCheck::SponsorTaken
    } else {
        LimitCheck::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(check(&[], 1), LimitCheck::Allowed);
        assert_eq!(check(&[1], 1), LimitCheck::SponsorTaken);
        assert_eq!(check(&[1, 2, 3], 4), LimitCheck::UserLimit);
    }

    #[test]
    fn table_catches_a_dropped_cookie() {
        let mut t = UserTable::default();
        t.record(5, 1);
        t.record(5, 2);
        // The client sends an empty cookie; the table still knows.
        assert_eq!(t.merged(5, &[]), vec![1, 2]);
        assert_eq!(t.merged(5, &[2, 3]), vec![2, 3, 1]);
        assert_eq!(t.merged(6, &[]), Vec::<u16>::new());
    }
}
