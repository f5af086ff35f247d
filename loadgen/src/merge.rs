//! The exact merge of workers' reports into one run's figures: counts and histograms
//! are added; levels (connected users, users by tier, by transport) are each worker's
//! latest, summed over the workers. Workers are named by their source: (agent, worker)
//! in a distributed run, (0, worker) on one machine.

use crate::stats::Summary;
use crate::worker::WorkerReport;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which worker a report came from: (agent, worker).
pub type Source = (u64, u64);

#[derive(Default)]
struct Levels {
    connected: u64,
    clients_by_tier: BTreeMap<u8, u64>,
    /// Connected users by transport.
    transport_connected: Vec<u64>,
    /// Pre-push: users online, and those covered.
    pre_push: (u64, u64),
    /// Requests (answered or failed) the worker reported, summed over its reports.
    requests: u64,
    reports: u64,
}

#[derive(Default)]
pub struct Merge {
    workers: BTreeMap<Source, Levels>,
}

impl Merge {
    /// Adds one report from `source` into `total`.
    pub fn add(
        &mut self,
        source: Source,
        report: WorkerReport,
        total: &Mutex<Summary>,
    ) -> Result<()> {
        let mut delta = Summary::from_wire(report.summary)?;
        let levels = self.workers.entry(source).or_default();
        levels.connected = std::mem::take(&mut delta.connected);
        levels.clients_by_tier = std::mem::take(&mut delta.clients_by_tier);
        levels.pre_push = (
            std::mem::take(&mut delta.pre_push.online),
            std::mem::take(&mut delta.pre_push.covered),
        );
        levels.requests += delta.requests();
        levels.reports += 1;
        levels.transport_connected = delta
            .by_transport
            .iter_mut()
            .map(|t| std::mem::take(&mut t.connected))
            .collect();
        let mut total = total.lock().unwrap_or_else(|p| p.into_inner());
        total.merge(&delta);
        self.levels_into(&mut total);
        Ok(())
    }

    /// Forgets the levels of `agent`'s workers (it is gone: its users no longer hold
    /// connections here), keeping what they counted.
    pub fn lose_agent(&mut self, agent: u64, total: &Mutex<Summary>) {
        for ((a, _), levels) in self.workers.iter_mut() {
            if *a == agent {
                levels.connected = 0;
                levels.clients_by_tier.clear();
                levels.transport_connected.clear();
                levels.pre_push = (0, 0);
            }
        }
        self.levels_into(&mut total.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn levels_into(&self, total: &mut Summary) {
        total.connected = self.workers.values().map(|l| l.connected).sum();
        total.pre_push.online = self.workers.values().map(|l| l.pre_push.0).sum();
        total.pre_push.covered = self.workers.values().map(|l| l.pre_push.1).sum();
        for (k, part) in total.by_transport.iter_mut().enumerate() {
            part.connected = self
                .workers
                .values()
                .filter_map(|l| l.transport_connected.get(k))
                .sum();
        }
        total.clients_by_tier.clear();
        for levels in self.workers.values() {
            for (tier, n) in &levels.clients_by_tier {
                *total.clients_by_tier.entry(*tier).or_default() += n;
            }
        }
    }

    /// Requests each worker made, in source order, for checking that the merge lost
    /// nothing.
    pub fn requests_by_worker(&self) -> Vec<u64> {
        self.workers.values().map(|l| l.requests).collect()
    }

    /// Reports and requests from `agent`'s workers so far.
    pub fn agent_totals(&self, agent: u64) -> (u64, u64) {
        self.workers
            .iter()
            .filter(|((a, _), _)| *a == agent)
            .fold((0, 0), |(r, q), (_, l)| (r + l.reports, q + l.requests))
    }
}
