//! The system under test: a re-creation of the Spring Festival Gala "shake" red-envelope
//! system. Deciding logic lives in sans-IO cores; sockets, files and processes in shells.

pub mod cookie;
pub mod cursor;
pub mod protocol;
pub mod rate_budget;
pub mod seed_shard;
pub mod shake;
pub mod signing;
pub mod timeline;
pub mod token;
pub mod user_limits;
pub mod gateway;
pub mod metrics;
pub mod passthrough;
pub mod rpc;
pub mod store;
pub mod envelope;
pub mod payment;
pub mod audit;
pub mod manifest;
