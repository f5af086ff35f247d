//! Resource pre-push's servers and files (seed mechanism 7): the operator's items and
//! signed manifests in the data directory ([`files`]), and the resource servers that
//! hand them to clients over HTTP ([`server`]: routes, pacing, faults, reloading),
//! with what a server holds in memory ([`catalog`]) and its bounds ([`limits`]). The
//! clients' side is the load generator's; the decisions of both are
//! `sut_core::pre_push`.

pub mod catalog;
pub mod files;
pub mod limits;
pub mod server;
