//! Where a run's users run: worker processes on this machine (`loadgen run`), or agents
//! on other machines (`loadgen coordinator`). Either way the run merges the same
//! worker reports exactly; this is the one place that differs.

use crate::cluster::agents::Agents;
use crate::cluster::report::ClusterReport;
use crate::fleet::Fleet;
use crate::merge::Merge;
use crate::resources::Sample;
use crate::stats::Summary;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Mutex;

pub enum Generators {
    Local { fleet: Fleet, merge: Merge },
    Agents(Agents),
}

impl Generators {
    /// Waits for the next report and merges it into `total`; `false` once every worker
    /// (or agent) has finished.
    pub async fn next_report(&mut self, total: &Mutex<Summary>) -> Result<bool> {
        match self {
            Generators::Local { fleet, merge } => fleet.next_report(merge, total).await,
            Generators::Agents(agents) => agents.next_report(total).await,
        }
    }

    /// Stops the users now; each worker still sends its last report.
    pub fn stop(&mut self) {
        match self {
            Generators::Local { fleet, .. } => fleet.stop(),
            Generators::Agents(agents) => agents.stop(),
        }
    }

    /// Local worker processes, which this process reads the usage of itself.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Generators::Local { fleet, .. } => fleet.pids(),
            Generators::Agents(_) => Vec::new(),
        }
    }

    /// A distributed run's agents for /metrics (none for local workers).
    pub fn agent_states(&self) -> Vec<(String, String, bool)> {
        match self {
            Generators::Local { .. } => Vec::new(),
            Generators::Agents(agents) => agents.states(),
        }
    }

    pub fn requests_by_worker(&self) -> Vec<u64> {
        match self {
            Generators::Local { merge, .. } => merge.requests_by_worker(),
            Generators::Agents(agents) => agents.requests_by_worker(),
        }
    }

    /// What the progress line adds (the agents' state).
    pub fn progress(&self) -> String {
        match self {
            Generators::Local { .. } => String::new(),
            Generators::Agents(agents) => agents.progress(),
        }
    }

    /// Adds what the agents read of their own hosts to this host's sample: their
    /// processes, and the slab of each host other than this one, once per host.
    /// Returns the hosts the sample now covers.
    pub fn add_usage(&self, sample: &mut Sample) -> Vec<String> {
        let here = crate::resources::this_host();
        let mut slabs: BTreeMap<String, u64> = BTreeMap::new();
        if let Generators::Agents(agents) = self {
            for (host, usage) in agents.usage() {
                sample.loadgen.add(&usage.loadgen);
                if host != here {
                    slabs.insert(host.to_string(), usage.slab_bytes);
                }
            }
        }
        sample.slab_bytes += slabs.values().sum::<u64>();
        std::iter::once(here).chain(slabs.into_keys()).collect()
    }

    /// Waits for the local workers to exit (failing when any lost its reports), or
    /// closes the agents' connections and returns what became of them.
    pub async fn finish(self) -> Result<Option<ClusterReport>> {
        match self {
            Generators::Local { fleet, .. } => fleet.wait().await.map(|_| None),
            Generators::Agents(agents) => Ok(Some(agents.finish())),
        }
    }
}
