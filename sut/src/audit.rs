//! `sut audit`: reads a run's durable records (the manifest, seed shards, every
//! gateway's store, the envelope backend's and payment's) and hands them to the pure
//! checker `sut_core::audit`. Nothing here judges; everything here names its file.

use crate::files::{self, FileError};
use crate::seeds::{self, SeedFileError};
use crate::store::{open_existing, StoreError};
use crate::{envelope, gateway, payment};
use std::path::Path;
pub use sut_core::audit::{check, AuditReport, Records};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Shard(#[from] SeedFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schedule(#[from] crate::schedule_files::ScheduleFileError),
}

/// Writes what payment credited to each user, `user,cents` per line, sorted by user.
pub fn write_credits_by_user(r: &Records, path: &Path) -> Result<(), FileError> {
    let mut text = String::from("user,cents\n");
    for (user, cents) in sut_core::audit::credits_by_user(&r.ledger) {
        text.push_str(&format!("{user},{cents}\n"));
    }
    files::write_atomic(path, text.as_bytes())
}

/// Audits the run whose data directory is `data`.
pub fn run(data: &Path) -> Result<AuditReport, AuditError> {
    Ok(check(&read(data)?))
}

/// Reads everything the checker needs from the run's files.
pub fn read(data: &Path) -> Result<Records, AuditError> {
    let manifest = files::load_manifest(data)?;
    let seed_dir = data.join("seeds");
    let mut r = Records {
        gateways: manifest.gateways,
        rounds: manifest.timeline.rounds.clone(),
        ..Records::default()
    };
    // Every schedule version signed during the show: each issue is judged by its own.
    let public = crate::schedule_files::operator_public(data)?;
    let versions = crate::schedule_files::all_versions(data, &public, Some(&manifest.timeline))?;
    if versions.len() > 1 {
        r.versions = versions
            .iter()
            .map(|(v, s)| (*v, s.timeline.rounds.clone()))
            .collect();
    }
    // Each round's envelopes as far as any version's budget seeded them.
    let mut budgets: std::collections::BTreeMap<u32, u64> = Default::default();
    for round in versions.values().flat_map(|s| &s.timeline.rounds) {
        let b = budgets.entry(round.id).or_default();
        *b = (*b).max(round.envelopes);
    }
    for (id, upto) in budgets {
        let base = manifest.timeline.round(id).map(|r| r.envelopes);
        for g in 0..manifest.gateways {
            r.shards
                .push(seeds::load_round(&seed_dir, id, g, base, upto)?.0);
        }
    }
    for g in 0..manifest.gateways {
        let db = open_existing(&gateway::store::db_path(data, g))?;
        let rec = gateway::store::read(&db)?;
        r.pending
            .extend(rec.queue.iter().map(|(_, e)| e.token.envelope_id));
        for (round, end) in rec.leases {
            r.leases.insert((g, round), end);
        }
        r.issued.extend(rec.issued);
        r.told_opened.extend(gateway::store::read_opened(&db)?);
    }
    let (ledger, balances) = payment::read_ledger(&open_existing(&payment::db_path(data))?)?;
    r.ledger = ledger;
    r.balances_cents = balances;
    let env_db = open_existing(&envelope::db_path(data))?;
    r.pending.extend(
        envelope::read_outbox(&env_db)?
            .iter()
            .map(|c| c.envelope_id),
    );
    r.recorded_opens = envelope::read_opens(&env_db)?
        .into_iter()
        .map(|o| o.entry)
        .collect();
    r.splits = envelope::split_store::read_splits(&env_db)?;
    Ok(r)
}
