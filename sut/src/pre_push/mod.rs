//! Resource pre-push's servers and files (seed mechanism 7): the operator's items and
//! signed manifests in the data directory ([`files`]), and the resource servers that
//! hand them to clients over HTTP ([`server`], with what they hold in [`catalog`] and
//! their bounds in [`limits`]). The clients' side is the load generator's; the
//! decisions of both are `sut_core::pre_push`.

pub mod catalog;
pub mod files;
pub mod limits;
pub mod server;
