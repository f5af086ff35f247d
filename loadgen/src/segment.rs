//! Segments: which users one process simulates.
//!
//! Segment `i/n` holds the users whose id is `i` modulo `n`. Striding (rather than
//! cutting the id range into blocks) keeps every segment's share of each ramp equal,
//! since the stages connect users in id order. Segments compose: local worker `j` of `k`
//! inside segment `i/n` takes `(i + n·j)/(n·k)`, which holds exactly the users of `i/n`
//! that `j/k` would pick from it. A machine running `--segment 3/10` thus splits its
//! share over its own workers without knowing about the other machines.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub index: u64,
    pub count: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("segment `{0}` is not of the form i/n (e.g. 0/4): both whole numbers")]
    Form(String),
    #[error("segment `{0}`: n must be at least 1 and i run from 0 to n-1")]
    Range(String),
}

impl Segment {
    /// Every user.
    pub const ALL: Segment = Segment { index: 0, count: 1 };

    pub fn contains(&self, user: u64) -> bool {
        user % self.count == self.index
    }

    /// The segment's users among `0..users`, in id order.
    pub fn users(&self, users: u64) -> impl Iterator<Item = u64> {
        (self.index..users).step_by(self.count.min(usize::MAX as u64) as usize)
    }

    /// How many of `0..users` fall in this segment.
    pub fn len(&self, users: u64) -> u64 {
        if users <= self.index {
            0
        } else {
            (users - self.index).div_ceil(self.count)
        }
    }

    /// Part `j` of this segment split `k` ways.
    pub fn part(&self, j: u64, k: u64) -> Segment {
        Segment {
            index: self.index + self.count * j,
            count: self.count * k,
        }
    }
}

impl Segment {
    /// Which of `k` parts of this segment (see [`Segment::part`]) holds `user`, if the
    /// segment holds it at all.
    pub fn worker_of(&self, user: u64, k: u64) -> Option<u64> {
        if !self.contains(user) || k == 0 {
            return None;
        }
        Some((user % (self.count * k) - self.index) / self.count)
    }
}

impl FromStr for Segment {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, SegmentError> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| SegmentError::Form(s.to_string()))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| SegmentError::Form(s.to_string()))
        };
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || index >= count {
            return Err(SegmentError::Range(s.to_string()));
        }
        Ok(Segment { index, count })
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn segments_partition_the_users_exactly(users in 0u64..2_000, n in 1u64..40) {
            let mut owner = vec![None; users as usize];
            for i in 0..n {
                let seg = Segment { index: i, count: n };
                let mine: Vec<u64> = seg.users(users).collect();
                prop_assert_eq!(mine.len() as u64, seg.len(users));
                for u in mine {
                    prop_assert!(seg.contains(u));
                    prop_assert_eq!(owner[u as usize].replace(i), None, "user {} twice", u);
                }
            }
            prop_assert!(owner.iter().all(|o| o.is_some()));
        }

        #[test]
        fn parts_partition_their_segment(users in 0u64..2_000, n in 1u64..8, k in 1u64..8, i in 0u64..8) {
            let seg = Segment { index: i % n, count: n };
            let mut from_parts: Vec<u64> = (0..k).flat_map(|j| seg.part(j, k).users(users)).collect();
            from_parts.sort_unstable();
            let whole: Vec<u64> = seg.users(users).collect();
            prop_assert_eq!(from_parts, whole);
        }
    }

    proptest! {
        #[test]
        fn worker_of_finds_the_part_that_holds_the_user(user in 0u64..100_000, n in 1u64..8, k in 1u64..8, i in 0u64..8) {
            let seg = Segment { index: i % n, count: n };
            match seg.worker_of(user, k) {
                Some(j) => {
                    prop_assert!(j < k);
                    prop_assert!(seg.part(j, k).contains(user));
                }
                None => prop_assert!(!seg.contains(user)),
            }
        }
    }

    #[test]
    fn parsing_names_the_fix() {
        assert_eq!("2/5".parse(), Ok(Segment { index: 2, count: 5 }));
        assert_eq!(
            "5/5".parse::<Segment>(),
            Err(SegmentError::Range("5/5".into()))
        );
        assert_eq!(
            "a/5".parse::<Segment>(),
            Err(SegmentError::Form("a/5".into()))
        );
        assert_eq!(Segment { index: 1, count: 3 }.to_string(), "1/3");
    }
}
