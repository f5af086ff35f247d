//! The system under test: a re-creation of the Spring Festival Gala "shake" red-envelope
//! system. Deciding logic lives in sans-IO cores; sockets, files and processes in shells.

pub mod audit;
pub mod cookie;
pub mod cursor;
pub mod envelope;
pub mod gateway;
pub mod manifest;
pub mod metrics;
pub mod passthrough;
pub mod payment;
pub mod protocol;
pub mod rate_budget;
pub mod rpc;
pub mod seed_shard;
pub mod shake;
pub mod signing;
pub mod store;
pub mod timeline;
pub mod token;
pub mod user_limits;
