//! The system under test's services: a re-creation of the Spring Festival Gala "shake"
//! red-envelope system. Each service is a thin shell around the decisions of
//! `sut_core`, speaking the formats of `sut_wire`:
//!
//! - [`gateway`]: the access server: long connections, shakes decided locally, and its
//!   agent (pass-through queue, limit sync, split forwarding);
//! - [`envelope`]: the envelope backend: opens recorded once, split pots, credits;
//! - [`payment`]: the stand-in for the transfer system, with injected faults;
//! - the live timeline: [`config_service`] (the push channel's source), [`operator`]
//!   (`sut timeline`: a change signed, seeded, recorded, handed out) and
//!   [`schedule_files`] (the operator key and the recorded versions); gateways take
//!   versions in `gateway::schedule` over their channels;
//! - [`store`]: the embedded durable store (redb) with group commit, and [`outbox`],
//!   the one delivery loop of a durable outbox that both forwarding hops use;
//! - [`rpc`], [`listen`], [`metrics`], [`log`], [`keys`], [`seeds`], [`files`]: the
//!   shells' plumbing;
//! - [`audit`]: reads a run's records for `sut_core::audit`'s checker.
//!
//! The `sut` binary's subcommands and the `sut up` supervisor live beside `main.rs`.

pub mod audit;
pub mod certs;
pub mod committer;
pub mod config_service;
pub mod envelope;
pub mod files;
pub mod gateway;
pub mod keys;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod operator;
pub mod outbox;
pub mod payment;
pub mod pre_push;
pub mod rpc;
pub mod schedule_files;
pub mod seeds;
pub mod store;
