//! A distributed run: one coordinator, many agents.
//!
//! `loadgen coordinator PROFILE --agents N` listens; `loadgen agent --coordinator
//! HOST:PORT` runs on each machine (or pod). The coordinator gathers the agents, ships
//! each its segment, the profile and the keys, starts them all at one moment, and then
//! does everything `loadgen run` does with its local workers — merge their reports
//! exactly, the progress line, `/metrics`, thresholds, the summary, JSON, HTML and the
//! interval log — with the agents' workers in their place.

pub mod agent;
pub mod agents;
pub mod batch;
pub mod channel;
pub mod coordinator;
pub mod messages;
pub mod report;
