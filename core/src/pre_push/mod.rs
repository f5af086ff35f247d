//! Resource pre-push (seed mechanism 7): the sponsors' images reach phones before the
//! show, so that a greeting never makes millions of clients fetch at once.
//!
//! - [`artwork`]: the bytes of each item version, which the operator writes and every
//!   check can recompute;
//! - [`download`]: one client's downloads: which item next, resuming a cut one, backing
//!   off after failures, verifying each item's digest before keeping it; the client
//!   keeps what it holds as a bitmap and the digest in progress, never the bytes;
//! - [`holding`]: what a bitmap held against one manifest version means under another
//!   (an update keeps every unchanged item), and whether a greeting finds its images.

pub mod artwork;
pub mod download;
pub mod holding;
