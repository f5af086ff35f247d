//! Whether every promise was kept, user by user: what this run's users were told they
//! got (the first answer to each open and grab with its amount, retries after lost
//! replies included) against what payment credited to each user, as `sut audit
//! --credits-by-user` writes it. Pure: the shell reads the file.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use thiserror::Error;

/// Users listed by name when some were short, at most.
const EXAMPLES: usize = 10;

#[derive(Debug, Error)]
#[error("{path}, line {line}: expected `user,cents` with two whole numbers, found `{text}`")]
pub struct CreditsFileError {
    pub path: String,
    pub line: usize,
    pub text: String,
}

/// Reads `user,cents` lines (after a `user,cents` header).
pub fn parse_credits(text: &str, path: &Path) -> Result<BTreeMap<u64, u64>, CreditsFileError> {
    let mut by_user = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line == "user,cents") || line.is_empty() {
            continue;
        }
        let parsed = line
            .split_once(',')
            .and_then(|(u, c)| Some((u.parse::<u64>().ok()?, c.parse::<u64>().ok()?)));
        let (user, cents) = parsed.ok_or_else(|| CreditsFileError {
            path: path.display().to_string(),
            line: i + 1,
            text: line.chars().take(80).collect(),
        })?;
        *by_user.entry(user).or_insert(0) += cents;
    }
    Ok(by_user)
}

/// The per-user comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PromiseReport {
    /// Users told they got money, and how much in all.
    pub users_told: u64,
    pub told_cents: u64,
    /// What payment credited, in all.
    pub credited_cents: u64,
    /// Users told more than payment credited them: broken promises. Must be 0.
    pub users_short: u64,
    pub short_cents: u64,
    /// Users credited more than they were told: replies lost for good (the tries ran
    /// out or the run ended before an answer came). Money the user has, never told.
    pub users_untold: u64,
    pub untold_cents: u64,
    /// Cheaters' repeats told their original answer, and told anything else (must be 0).
    pub repeats_kept: u64,
    pub repeats_broken: u64,
    /// Some users short: (user, told, credited).
    pub short_examples: Vec<(u64, u64, u64)>,
}

impl PromiseReport {
    pub fn kept(&self) -> bool {
        self.users_short == 0 && self.repeats_broken == 0
    }
}

/// Compares `promises` (user, cents), one per answer, with `credited` by user.
pub fn check(
    promises: &[(u64, u64)],
    credited: &BTreeMap<u64, u64>,
    repeats_kept: u64,
    repeats_broken: u64,
) -> PromiseReport {
    let mut told: BTreeMap<u64, u64> = BTreeMap::new();
    for (user, cents) in promises {
        *told.entry(*user).or_insert(0) += cents;
    }
    let mut r = PromiseReport {
        users_told: told.len() as u64,
        told_cents: told.values().sum(),
        credited_cents: credited.values().sum(),
        repeats_kept,
        repeats_broken,
        ..PromiseReport::default()
    };
    for (user, t) in &told {
        let c = credited.get(user).copied().unwrap_or(0);
        if *t > c {
            r.users_short += 1;
            r.short_cents += t - c;
            if r.short_examples.len() < EXAMPLES {
                r.short_examples.push((*user, *t, c));
            }
        }
    }
    for (user, c) in credited {
        let t = told.get(user).copied().unwrap_or(0);
        if *c > t {
            r.users_untold += 1;
            r.untold_cents += c - t;
        }
    }
    r
}

impl fmt::Display for PromiseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "promises, user by user: {} users told {} cents in all; payment credited {} cents",
            self.users_told, self.told_cents, self.credited_cents
        )?;
        writeln!(
            f,
            "  told more than credited: {} users, {} cents (must be 0){}",
            self.users_short,
            self.short_cents,
            if self.short_examples.is_empty() {
                String::new()
            } else {
                format!("; e.g. (user, told, credited) {:?}", self.short_examples)
            }
        )?;
        writeln!(
            f,
            "  credited, never told (replies lost for good): {} users, {} cents",
            self.users_untold, self.untold_cents
        )?;
        writeln!(
            f,
            "  cheaters' repeated opens and grabs told their original answer: {}; told anything else: {} (must be 0)",
            self.repeats_kept, self.repeats_broken
        )?;
        write!(
            f,
            "  {}",
            if self.kept() {
                "every promise kept"
            } else {
                "FAIL: a promise was broken"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credited(pairs: &[(u64, u64)]) -> BTreeMap<u64, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn told_what_was_credited_keeps_every_promise() {
        let r = check(
            &[(1, 50), (1, 7), (2, 30)],
            &credited(&[(1, 57), (2, 30)]),
            3,
            0,
        );
        assert!(r.kept(), "{r}");
        assert_eq!((r.users_told, r.told_cents, r.credited_cents), (2, 87, 87));
        assert_eq!((r.users_short, r.users_untold), (0, 0));
    }

    #[test]
    fn a_user_told_more_than_credited_fails_even_when_the_sums_match() {
        // User 1 was told 50 and credited 20; user 2 was credited 30 it was never told:
        // the totals agree (50 = 50), the promise to user 1 was still broken.
        let r = check(&[(1, 50)], &credited(&[(1, 20), (2, 30)]), 0, 0);
        assert!(!r.kept());
        assert_eq!((r.users_short, r.short_cents), (1, 30));
        assert_eq!(r.short_examples, vec![(1, 50, 20)]);
        assert_eq!((r.users_untold, r.untold_cents), (1, 30));
        assert!(r.to_string().contains("FAIL"));
    }

    #[test]
    fn a_user_never_credited_fails() {
        let r = check(&[(9, 1)], &credited(&[]), 0, 0);
        assert!(!r.kept());
        assert_eq!(r.users_short, 1);
    }

    #[test]
    fn a_repeat_told_something_else_fails() {
        let r = check(&[], &credited(&[]), 5, 1);
        assert!(!r.kept());
    }

    #[test]
    fn credited_but_untold_is_counted_not_failed() {
        let r = check(&[(1, 10)], &credited(&[(1, 25)]), 0, 0);
        assert!(r.kept());
        assert_eq!((r.users_untold, r.untold_cents), (1, 15));
    }

    #[test]
    fn the_credits_file_is_read_and_bad_lines_are_named() {
        let p = Path::new("credits.csv");
        let m = parse_credits("user,cents\n1,50\n2,7\n", p).unwrap();
        assert_eq!(m, credited(&[(1, 50), (2, 7)]));
        let e = parse_credits("user,cents\n1,50\nx,7\n", p).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("credits.csv, line 3"), "{e}");
    }
}
