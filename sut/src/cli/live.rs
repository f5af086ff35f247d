//! `sut up`'s control lines for the live timeline:
//!
//! - `timeline CHANGE...`: the operator's command (`timeline move 2 +30s`, `timeline
//!   budget 3 5000`, `timeline show`, ...; see `sut timeline --help`), made into a
//!   signed version and sent over the three channels;
//! - `channel push|pull|gossip down|up`: cut a channel at every gateway, or restore it
//!   (a fault a run injects; the config services are parts, `kill config-0` takes one
//!   down).
//!
//! Each runs in a task of its own, so the supervisor keeps watching its parts while a
//! channel is slow to answer; its outcome is printed as one line starting with
//! `timeline:` or `channel:`.

use std::path::PathBuf;
use std::time::Duration;
use sut::rpc::{Peer, Rpc};
use sut_core::live_timeline::Channel;

/// A live timeline control line.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    Timeline(Vec<String>),
    Channel {
        channel: String,
        down: bool,
    },
    /// A line of this family that does not parse: what to print.
    Bad(String),
}

/// The live timeline line `line` is, if it is one.
pub fn parse(line: &str) -> Option<Live> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["timeline", rest @ ..] if !rest.is_empty() => {
            Some(Live::Timeline(rest.iter().map(|w| w.to_string()).collect()))
        }
        ["timeline"] => Some(Live::Bad(
            "timeline: write `timeline move 2 +30s` (or budget, rate, cancel, clock, replace, show)".into(),
        )),
        ["channel", name, state @ ("down" | "up")] if Channel::parse(name).is_some() => {
            Some(Live::Channel {
                channel: name.to_string(),
                down: *state == "down",
            })
        }
        ["channel", ..] => Some(Live::Bad(
            "channel: write `channel push|pull|gossip down|up`".into(),
        )),
        _ => None,
    }
}

/// Carries out a live line on the system in `data` whose gateways' peer ports are
/// `gossip`; prints its outcome.
pub async fn carry_out(live: Live, data: PathBuf, gossip: Vec<String>) {
    let line = match live {
        Live::Bad(message) => message,
        Live::Timeline(words) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            match super::operate(&data, &words).await {
                Ok(done) => format!("timeline: {}", done.replace('\n', "\n  ")),
                Err(e) => format!("timeline: {e:#}"),
            }
        }
        Live::Channel { channel, down } => channel_fault(&data, &gossip, &channel, down).await,
    };
    println!("{line}");
}

/// Tells every gateway to take a channel down or back up.
async fn channel_fault(
    data: &std::path::Path,
    gossip: &[String],
    channel: &str,
    down: bool,
) -> String {
    let key = match sut::keys::load(&data.join("rpc.key")) {
        Ok(k) => k,
        Err(e) => return format!("channel: {e}"),
    };
    let calls = gossip.iter().map(|addr| {
        let key = key.clone();
        let msg = Rpc::ChannelFault {
            channel: channel.to_string(),
            down,
        };
        async move {
            let mut p = Peer::new(addr, key);
            matches!(
                p.call(msg, Duration::from_secs(2)).await,
                Some(Ok(Rpc::ScheduleHeld { .. }))
            )
        }
    });
    let done = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    format!(
        "channel: {channel} {} at {done} of {} gateways",
        if down { "down" } else { "up" },
        gossip.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_lines_parse_or_say_what_to_write() {
        assert_eq!(
            parse("timeline move 2 +30s"),
            Some(Live::Timeline(vec![
                "move".into(),
                "2".into(),
                "+30s".into()
            ]))
        );
        assert_eq!(
            parse("channel gossip down"),
            Some(Live::Channel {
                channel: "gossip".into(),
                down: true
            })
        );
        assert!(matches!(parse("channel smoke down"), Some(Live::Bad(_))));
        assert!(matches!(parse("timeline"), Some(Live::Bad(_))));
        assert_eq!(parse("kill gateway-0"), None);
    }
}
