//! The I/O that the shells of both programs (the services and the load generator)
//! share: the wall clock, the process's CPU time, the open-file limit, `/metrics`
//! over HTTP, QUIC's configuration and what driving many QUIC connections takes. Decisions
//! never live here; they take what these return as arguments.

pub mod clock;
pub mod cpu;
pub mod metrics_http;
pub mod open_files;
pub mod quic;
pub mod quic_drive;
pub mod record_keys;
