//! The operator's tool: "program changed" becomes a signed schedule version and goes
//! out over the live timeline's three channels.
//!
//! One change: read the newest recorded version, apply the change at the show time now
//! (`sut_core::programme_change`), seed the envelopes a raised budget or a new round
//! needs, sign with the operator key, record the version in the data directory (the
//! pull channel's source and the audit's record), then hand it to both config services
//! (push) and to two gateways (gossip, which they pass on). Any one channel reaching the
//! gateways is enough; the command says which it reached.

use crate::rpc::{Peer, Rpc};
use crate::schedule_files::{self, ScheduleFileError};
use crate::seeds::{self, SeedFileError};
use shellkit::clock::unix_ms;
use std::path::Path;
use std::time::Duration;
use sut_core::programme_change::{next_version, Change};
use sut_wire::manifest::Manifest;
use sut_wire::schedule::{Schedule, SignedSchedule};
use sut_wire::signing::SigningKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OperatorError {
    #[error("the change is refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Files(#[from] ScheduleFileError),
    #[error(transparent)]
    Seeds(#[from] SeedFileError),
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyFileError),
}

/// A version made and sent.
#[derive(Debug)]
pub struct Published {
    pub schedule: Schedule,
    /// Shards seeded for it (a raised budget, a new round).
    pub seeded: usize,
    /// Where it was handed: `config-0`, `gateway-3`, ...
    pub delivered: Vec<String>,
    /// Where it could not be handed, with why.
    pub failed: Vec<String>,
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timeline version {}: {}; handed to {}",
            self.schedule.version,
            self.schedule.change,
            if self.delivered.is_empty() {
                "nobody (every channel's entry is down: gateways keep the countdown of the version they hold)".to_string()
            } else {
                self.delivered.join(", ")
            }
        )?;
        if !self.failed.is_empty() {
            write!(f, "; not reached: {}", self.failed.join(", "))?;
        }
        Ok(())
    }
}

/// The version the show runs on now, as recorded in `data`.
pub fn current(data: &Path, manifest: &Manifest) -> Result<Schedule, OperatorError> {
    let public = schedule_files::operator_public(data)?;
    let latest = schedule_files::latest_number(data);
    if latest > manifest.timeline.version {
        return Ok(schedule_files::load_version(data, latest, &public)?.0);
    }
    Ok(schedule_files::first_schedule(&manifest.timeline))
}

/// Makes, records and sends the next version with `change`.
pub async fn publish(data: &Path, change: &Change) -> Result<Published, OperatorError> {
    let manifest = crate::files::load_manifest(data)?;
    let key = schedule_files::operator_key(data)?;
    let (next, seeded, signed) = loop {
        let now = current(data, &manifest)?;
        let show_ms = unix_ms() - manifest.show_start_ms + now.clock_offset_ms;
        let next =
            next_version(&now, change, show_ms, unix_ms()).map_err(OperatorError::Refused)?;
        let seeded = seed_for(data, &manifest, &next)?;
        let signed = key.sign(&next);
        // Another operator may have taken this number meanwhile: then start over
        // from theirs.
        if schedule_files::save_version(data, next.version, &signed)? {
            break (next, seeded, signed);
        }
    };
    let rpc_key = crate::keys::load_or_create(&data.join("rpc.key"))?;
    let (delivered, failed) = hand_out(&manifest, &rpc_key, &signed, next.version).await;
    Ok(Published {
        schedule: next,
        seeded,
        delivered,
        failed,
    })
}

/// Seeds what `next` issues beyond what is seeded: the new envelopes of a raised
/// budget, every envelope of a new round.
fn seed_for(data: &Path, manifest: &Manifest, next: &Schedule) -> Result<usize, OperatorError> {
    let dir = data.join("seeds");
    let mut written = 0;
    for round in &next.timeline.rounds {
        let base = manifest.timeline.round(round.id).map(|r| r.envelopes);
        let have = seeds::seeded_to(&dir, round.id, base);
        if round.envelopes > have {
            written += seeds::write_batch(
                round,
                have,
                round.envelopes,
                manifest.gateways,
                manifest.seed,
                &dir,
            )?;
        }
    }
    Ok(written)
}

/// Hands a version to every config service and to two gateways (which gossip it on);
/// returns who took it and who could not be reached.
async fn hand_out(
    manifest: &Manifest,
    rpc_key: &SigningKey,
    signed: &SignedSchedule,
    version: u64,
) -> (Vec<String>, Vec<String>) {
    let mut targets: Vec<(String, String, Rpc)> = manifest
        .config_addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                format!("config-{i}"),
                a.clone(),
                Rpc::PublishSchedule {
                    signed: signed.clone(),
                },
            )
        })
        .collect();
    let n = manifest.gossip_addrs.len();
    // Two gateways, a different pair each version, so no one gateway is everyone's
    // only way in.
    let mut picked: Vec<usize> = (0..n.min(2))
        .map(|k| (version as usize * 7 + k * (n / 2).max(1)) % n)
        .collect();
    picked.dedup();
    for g in picked {
        targets.push((
            format!("gateway-{g}"),
            manifest.gossip_addrs[g].clone(),
            Rpc::Gossip {
                signed: signed.clone(),
            },
        ));
    }
    let calls = targets.into_iter().map(|(name, addr, msg)| {
        let key = rpc_key.clone();
        async move {
            let mut peer = Peer::new(&addr, key);
            let answer = peer.call(msg, Duration::from_secs(2)).await;
            (name, answer)
        }
    });
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for (name, answer) in futures_util::future::join_all(calls).await {
        match answer {
            Some(Ok(Rpc::ScheduleHeld { .. })) => delivered.push(name),
            Some(Ok(Rpc::Failed { message })) => failed.push(format!("{name} ({message})")),
            Some(Ok(other)) => failed.push(format!("{name} (answered {other:?})")),
            Some(Err(e)) => failed.push(format!("{name} ({e})")),
            None => failed.push(format!("{name} (cannot connect)")),
        }
    }
    (delivered, failed)
}
