//! The load generator: simulated users on long connections, driven from YAML profiles,
//! measured from intended send times into HDR histograms.

pub mod cluster;
pub mod dashboard;
pub mod disk;
pub mod exit;
pub mod faults;
pub mod fleet;
pub mod generators;
pub mod hlog;
pub mod hostile;
pub mod html_cost;
pub mod html_report;
pub mod limit_report;
pub mod merge;
pub mod network;
pub mod op_report;
pub mod op_stats;
pub mod origin;
pub mod profile;
pub mod progress;
pub mod prom;
pub mod promises;
pub mod report;
pub mod resources;
pub mod run;
pub mod segment;
pub mod spawn;
pub mod stages;
pub mod stats;
pub mod tcp_loss;
pub mod threshold;
pub mod transport;
pub mod transport_report;
pub mod transport_stats;
pub mod user;
pub mod worker;
