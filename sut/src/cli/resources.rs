//! The operator's pre-push commands, on the command line (`sut resources update 3 7`)
//! or as `sut up` control lines:
//!
//! - `resources show`: the newest manifest;
//! - `resources update ID...`: new bytes for those items, and the next signed manifest
//!   version (clients then fetch only those);
//! - `resources corrupt NAME SHARE%`: resource server NAME flips a byte in that share
//!   of its item responses (a fault a run injects);
//! - `resources slow NAME RATE`: NAME sends at most RATE bytes per second (`1MiB`);
//! - `resources ok NAME`: NAME's faults cleared.
//!
//! Down is the supervisor's `kill resources-1`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sut::pre_push::files;
use sut::rpc::{Peer, Rpc};

/// A resource control line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `show` or `update ...`: the operator's command, carried out on the data directory.
    Operate(Vec<String>),
    /// Faults for resource server `name`.
    Fault {
        name: String,
        corrupt_ppm: u32,
        bandwidth: u64,
    },
    Bad(String),
}

const HOW: &str = "resources: write `resources update ID...`, `resources show`, `resources corrupt NAME 30%`, `resources slow NAME 1MiB` or `resources ok NAME`";

/// The resource line `line` is, if it is one.
pub fn parse(line: &str) -> Option<Line> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["resources", rest @ ..] = words.as_slice() else {
        return None;
    };
    let fault = |name: &str, corrupt_ppm, bandwidth| Line::Fault {
        name: name.to_string(),
        corrupt_ppm,
        bandwidth,
    };
    Some(match rest {
        ["show"] | ["update", ..] => Line::Operate(rest.iter().map(|w| w.to_string()).collect()),
        ["corrupt", name, share] => match share
            .strip_suffix('%')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
        {
            Some(p) => fault(name, (p * 10_000.0).round() as u32, 0),
            None => Line::Bad(format!(
                "resources: `{share}` is not a share; write e.g. 30%"
            )),
        },
        ["slow", name, rate] => match super::sizes::parse_bytes(rate) {
            Ok(b) if b > 0 => fault(name, 0, b),
            _ => Line::Bad(format!(
                "resources: `{rate}` is not a rate; write e.g. 1MiB (bytes per second)"
            )),
        },
        ["ok", name] => fault(name, 0, 0),
        _ => Line::Bad(HOW.into()),
    })
}

/// The operator's command on `data`: `show` or `update ID...`; what was done.
pub fn operate(data: &Path, words: &[&str]) -> Result<String> {
    let key = sut::schedule_files::operator_key(data)?;
    let manifest = match words {
        ["show"] => files::newest(data, &key.public())?
            .map(|(m, _)| m)
            .with_context(|| format!("{} holds no resource manifest", data.display()))?,
        ["update", ids @ ..] if !ids.is_empty() => {
            let ids = ids
                .iter()
                .map(|w| {
                    w.parse::<u32>().with_context(|| {
                        format!("`{w}` is not an item id; write numbers, e.g. `update 3 7`")
                    })
                })
                .collect::<Result<Vec<u32>>>()?;
            files::update(data, &key, &ids)?
        }
        _ => bail!("{HOW}"),
    };
    let items: Vec<String> = manifest
        .items
        .iter()
        .map(|i| format!("{}@v{}", i.id, i.version))
        .collect();
    Ok(format!(
        "manifest version {}: {} items, {} bytes: {}",
        manifest.version,
        manifest.items.len(),
        manifest.total_bytes(),
        items.join(" ")
    ))
}

/// Carries out a resource line on the system in `data`, whose resource servers' control
/// ports are `controls` (name, address); prints its outcome.
pub async fn carry_out(line: Line, data: PathBuf, controls: Vec<(String, String)>) {
    let out = match line {
        Line::Bad(m) => m,
        Line::Operate(words) => {
            let run = move || {
                let w: Vec<&str> = words.iter().map(String::as_str).collect();
                operate(&data, &w)
            };
            match tokio::task::spawn_blocking(run).await {
                Ok(Ok(done)) => format!("resources: {done}"),
                Ok(Err(e)) => format!("resources: {e:#}"),
                Err(e) => format!("resources: {e}"),
            }
        }
        Line::Fault {
            name,
            corrupt_ppm,
            bandwidth,
        } => fault(&data, &controls, &name, corrupt_ppm, bandwidth).await,
    };
    println!("{out}");
}

async fn fault(
    data: &Path,
    controls: &[(String, String)],
    name: &str,
    corrupt_ppm: u32,
    bandwidth: u64,
) -> String {
    let Some((_, addr)) = controls.iter().find(|(n, _)| n == name) else {
        let names: Vec<&str> = controls.iter().map(|(n, _)| n.as_str()).collect();
        return format!(
            "resources: no resource server {name}; this system runs {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let key = match sut::keys::load(&data.join("rpc.key")) {
        Ok(k) => k,
        Err(e) => return format!("resources: {e}"),
    };
    let mut peer = Peer::new(addr, key);
    let msg = Rpc::ResourceFault {
        corrupt_ppm,
        bandwidth,
    };
    match peer.call(msg, Duration::from_secs(2)).await {
        Some(Ok(Rpc::ResourceFaultSet {
            corrupt_ppm,
            bandwidth,
        })) => format!(
            "resources: {name} corrupts {:.1}% of item responses, sends at most {bandwidth} bytes/s",
            f64::from(corrupt_ppm) / 10_000.0
        ),
        other => format!("resources: {name} did not take the fault ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines_parse_or_say_what_to_write() {
        assert_eq!(
            parse("resources update 3 7"),
            Some(Line::Operate(vec!["update".into(), "3".into(), "7".into()]))
        );
        assert_eq!(
            parse("resources corrupt resources-1 30%"),
            Some(Line::Fault {
                name: "resources-1".into(),
                corrupt_ppm: 300_000,
                bandwidth: 0
            })
        );
        assert_eq!(
            parse("resources slow resources-0 1MiB"),
            Some(Line::Fault {
                name: "resources-0".into(),
                corrupt_ppm: 0,
                bandwidth: 1 << 20
            })
        );
        assert!(matches!(
            parse("resources corrupt r 130%"),
            Some(Line::Bad(_))
        ));
        assert!(matches!(parse("resources slow r fast"), Some(Line::Bad(_))));
        assert!(matches!(parse("resources"), Some(Line::Bad(_))));
        assert_eq!(parse("kill resources-0"), None);
    }
}
