//! An operator's change to the show's programme (seed mechanism 5: "program changed"),
//! and the next signed version it makes of the schedule.
//!
//! Pure: the operator's tool passes the current schedule, the show time now and the
//! wall time, and gets the whole next version, checked, or a message that says why not
//! in the operator's words. Relative times (`+30s`, `now`) are resolved here, once, so
//! that every gateway applies the same absolute schedule however late it hears of it.

use std::time::Duration;
use sut_wire::schedule::Schedule;
use sut_wire::timeline::Timeline;

/// Where a moved round starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At this offset from the show's start.
    At(Duration),
    /// This much later than planned.
    Later(Duration),
    /// This much earlier than planned.
    Earlier(Duration),
    /// At once.
    Now,
}

/// One operator command.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Replace the whole timeline (the tiers stay).
    Replace(Timeline),
    Move {
        round: u32,
        start: StartAt,
    },
    /// Raise a round's envelope budget (seed shards for the new envelopes are made
    /// before the version is signed).
    Budget {
        round: u32,
        envelopes: u64,
    },
    Rate {
        round: u32,
        rate: f64,
    },
    Cancel {
        round: u32,
    },
    /// Set the show clock's correction (ms, added to every gateway's show time).
    Clock {
        offset_ms: i64,
    },
}

const USAGE: &str = "write one of: `move ROUND +30s|-10s|now|45s`, `budget ROUND ENVELOPES`, `rate ROUND PER_SECOND`, `cancel ROUND`, `clock OFFSET` (e.g. `clock -250ms`), `replace FILE`";

impl Change {
    /// Parses a command's words (`move 2 +30s`); `replace` is the shell's (it reads a
    /// file) and is refused here.
    pub fn parse(words: &[&str]) -> Result<Change, String> {
        let round = |w: &str| {
            w.parse::<u32>()
                .map_err(|_| format!("`{w}` is not a round id (a whole number)"))
        };
        let span = |w: &str| {
            humantime::parse_duration(w)
                .map_err(|_| format!("`{w}` is not a time; add a unit, e.g. 30s or 500ms"))
        };
        match words {
            ["move", r, to] => {
                let start = match *to {
                    "now" => StartAt::Now,
                    t if t.starts_with('+') => StartAt::Later(span(&t[1..])?),
                    t if t.starts_with('-') => StartAt::Earlier(span(&t[1..])?),
                    t => StartAt::At(span(t)?),
                };
                Ok(Change::Move {
                    round: round(r)?,
                    start,
                })
            }
            ["budget", r, n] => Ok(Change::Budget {
                round: round(r)?,
                envelopes: n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a number of envelopes"))?,
            }),
            ["rate", r, n] => Ok(Change::Rate {
                round: round(r)?,
                rate: n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a rate (envelopes per second)"))?,
            }),
            ["cancel", r] => Ok(Change::Cancel { round: round(r)? }),
            ["clock", d] => {
                let (sign, d) = match d.strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, d.strip_prefix('+').unwrap_or(d)),
                };
                Ok(Change::Clock {
                    offset_ms: sign * span(d)?.as_millis() as i64,
                })
            }
            _ => Err(format!("`{}`: {USAGE}", words.join(" "))),
        }
    }
}

/// What a change did, in words for the version's record.
fn describe(change: &Change, next: &Timeline) -> String {
    let start_of = |id: u32| {
        next.round(id)
            .map(|r| humantime::format_duration(r.start).to_string())
            .unwrap_or_default()
    };
    match change {
        Change::Replace(t) => format!("replace the timeline ({} rounds)", t.rounds.len()),
        Change::Move { round, .. } => format!("move round {round} to {}", start_of(*round)),
        Change::Budget { round, envelopes } => {
            format!("budget of round {round} to {envelopes}")
        }
        Change::Rate { round, rate } => format!("rate of round {round} to {rate}/s"),
        Change::Cancel { round } => format!("cancel round {round}"),
        Change::Clock { offset_ms } => format!("clock correction {offset_ms} ms"),
    }
}

/// The next version: `current` with `change` applied at show time `show_ms` (already
/// corrected), signed at `unix_ms`. Refuses what no gateway could honour: a round that
/// does not exist or already ended, a lowered budget (envelopes of the higher one may
/// already be out), overlapping rounds, changed tiers.
pub fn next_version(
    current: &Schedule,
    change: &Change,
    show_ms: i64,
    unix_ms: i64,
) -> Result<Schedule, String> {
    let mut next = current.clone();
    next.version = current.version + 1;
    next.signed_unix_ms = unix_ms;
    let tl = &mut next.timeline;
    let now = Duration::from_millis(show_ms.max(0) as u64);
    let open_round = |tl: &Timeline, id: u32| -> Result<usize, String> {
        let i = tl
            .rounds
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| format!("there is no round {id} in version {}", current.version))?;
        let r = &tl.rounds[i];
        if r.start + r.duration <= now {
            return Err(format!(
                "round {id} already ended (at {}); change a round still to come",
                humantime::format_duration(r.start + r.duration)
            ));
        }
        Ok(i)
    };
    match change {
        Change::Replace(t) => {
            if t.tiers != tl.tiers {
                return Err(
                    "the tiers cannot change during the show; keep the current `tiers:`".into(),
                );
            }
            for old in &tl.rounds {
                if let Some(new) = t.round(old.id) {
                    if new.envelopes < old.envelopes {
                        return Err(format!(
                            "round {}: its budget cannot go down ({} to {}): envelopes of the higher one may be out already",
                            old.id, old.envelopes, new.envelopes
                        ));
                    }
                }
            }
            *tl = t.clone();
        }
        Change::Move { round, start } => {
            let i = open_round(tl, *round)?;
            let r = &mut tl.rounds[i];
            r.start = match *start {
                StartAt::At(d) => d,
                StartAt::Later(d) => r.start + d,
                StartAt::Earlier(d) => r.start.saturating_sub(d),
                StartAt::Now => now,
            };
        }
        Change::Budget { round, envelopes } => {
            let i = open_round(tl, *round)?;
            let r = &mut tl.rounds[i];
            if *envelopes < r.envelopes {
                return Err(format!(
                    "round {round}: a budget can only be raised live ({} now); cancel the round or lower its rate instead",
                    r.envelopes
                ));
            }
            r.envelopes = *envelopes;
        }
        Change::Rate { round, rate } => {
            let i = open_round(tl, *round)?;
            tl.rounds[i].rate = *rate;
        }
        Change::Cancel { round } => {
            let i = open_round(tl, *round)?;
            tl.rounds.remove(i);
        }
        Change::Clock { offset_ms } => next.clock_offset_ms = *offset_ms,
    }
    next.timeline.version = next.version;
    next.timeline
        .check()
        .map_err(|e| format!("the changed timeline is not valid: {e}"))?;
    next.change = describe(change, &next.timeline);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Schedule {
        Schedule {
            version: 1,
            signed_unix_ms: 0,
            change: "first".into(),
            clock_offset_ms: 0,
            timeline: Timeline::parse(
                "rounds:\n  - { id: 1, start: 10s, duration: 10s, envelopes: 100, rate: 20, amount_cents: [1, 500], sponsors: [1] }\n  - { id: 2, start: 40s, duration: 10s, envelopes: 50, rate: 10, amount_cents: [1, 500], sponsors: [2] }\n",
                "t",
            )
            .unwrap(),
        }
    }

    fn change(words: &str) -> Change {
        Change::parse(&words.split_whitespace().collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_move_is_resolved_to_an_absolute_start() {
        let v = next_version(&base(), &change("move 2 -15s"), 5_000, 77).unwrap();
        assert_eq!(v.version, 2);
        assert_eq!(v.signed_unix_ms, 77);
        assert_eq!(v.timeline.round(2).unwrap().start, Duration::from_secs(25));
        assert_eq!(v.change, "move round 2 to 25s");
        let now = next_version(&base(), &change("move 2 now"), 30_500, 0).unwrap();
        assert_eq!(
            now.timeline.round(2).unwrap().start,
            Duration::from_millis(30_500)
        );
    }

    #[test]
    fn changes_no_gateway_could_honour_are_refused() {
        let e = |w: &str, at: i64| next_version(&base(), &change(w), at, 0).unwrap_err();
        assert!(e("move 2 15s", 0).contains("overlap"));
        assert!(e("budget 1 99", 0).contains("only be raised"));
        assert!(e("cancel 1", 25_000).contains("already ended"));
        assert!(e("rate 3 5", 0).contains("no round 3"));
        assert!(e("rate 1 -5", 0).contains("rate"));
        assert!(Change::parse(&["move", "2", "30"])
            .unwrap_err()
            .contains("add a unit"));
        assert!(Change::parse(&["shuffle"])
            .unwrap_err()
            .contains("budget ROUND"));
    }

    #[test]
    fn budget_rate_cancel_and_clock() {
        let v = next_version(&base(), &change("budget 1 300"), 0, 0).unwrap();
        assert_eq!(v.timeline.round(1).unwrap().envelopes, 300);
        let v = next_version(&v, &change("rate 1 40"), 0, 0).unwrap();
        assert_eq!((v.version, v.timeline.round(1).unwrap().rate), (3, 40.0));
        let v = next_version(&v, &change("cancel 2"), 0, 0).unwrap();
        assert!(v.timeline.round(2).is_none());
        let v = next_version(&v, &change("clock -250ms"), 0, 0).unwrap();
        assert_eq!((v.version, v.clock_offset_ms), (5, -250));
    }
}
