//! Resource pre-push in the load generator (seed mechanism 7): every simulated user's
//! phone downloads the sponsors' images ahead of the show, and the run measures how
//! many phones held them all when the show began and when each greeting arrived.
//!
//! - [`profile`]: the profile's `pre_push:` section (servers, sizes, caps, updates and
//!   server faults);
//! - [`phone`]: the downloads, on one thread per worker beside its event loop;
//! - [`shared`]: what that thread and the event loop share;
//! - [`greeting`]: what the event loop tells the phones, and greetings judged;
//! - [`stats`]: the counts, as workers report them;
//! - [`show`]: the coverage when the show began;
//! - [`report`] and [`html`]: the summary's and the HTML report's sections;
//! - [`figure`]: the thresholds' subjects; [`metrics`]: the run's `/metrics`;
//! - [`servers`]: the resource servers' own counts at the end of a run.
//!
//! The decisions (what to fetch, resuming, back-off, verifying, what an update keeps,
//! whether a greeting hits) are `sut_core::pre_push`'s.

pub mod figure;
pub mod greeting;
pub mod html;
pub mod metrics;
pub mod phone;
pub mod profile;
pub mod report;
pub mod servers;
pub mod shared;
pub mod show;
pub mod stats;

pub use profile::PrePushSpec;
pub use shared::Shared;
pub use stats::PrePushStats;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use sut_wire::schedule::OperatorPublic;

/// Where the phones download from, and the key their manifests must verify under.
#[derive(Debug, Clone)]
pub struct Target {
    pub servers: Vec<SocketAddr>,
    pub public: OperatorPublic,
}

impl Target {
    /// From the system's data directory (`data`: the directory of the target's auth
    /// key file): its run manifest's resource servers, unless the profile names them,
    /// and its operator's public key.
    pub fn from_data(spec: &PrePushSpec, data: &Path) -> anyhow::Result<Target> {
        use anyhow::Context;
        let names = if spec.addresses.is_empty() {
            let path = sut_wire::manifest::path(data);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("pre_push: cannot read {} for the resource servers; name them in pre_push.addresses", path.display())
            })?;
            sut_wire::manifest::Manifest::parse(&text, &path)?.resource_addrs
        } else {
            spec.addresses.clone()
        };
        let servers = crate::addresses::resolve(&names, "pre_push: resource server")
            .map_err(anyhow::Error::msg)?;
        if servers.is_empty() {
            anyhow::bail!("pre_push: the system runs no resource servers; give target.spawn a `pre_push:` section's servers, or pre_push.addresses");
        }
        let key = data.join("operator.pub");
        let bytes = std::fs::read(&key).with_context(|| {
            format!("pre_push: cannot read the operator's key {}", key.display())
        })?;
        let public = OperatorPublic::from_bytes(&bytes, &key.display().to_string())?;
        Ok(Target { servers, public })
    }
}

/// A worker's running pre-push thread.
pub struct Running {
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts the phones of `users` (user ids by slot), sharing `shared` with the
    /// worker's event loop.
    pub fn start(
        spec: &PrePushSpec,
        target: Target,
        shared: Arc<Shared>,
        users: Vec<u64>,
        seed: u64,
    ) -> std::io::Result<Running> {
        let config = phone::PhoneConfig {
            servers: target.servers,
            public: target.public,
            user_bandwidth: profile::bytes("user_bandwidth", &spec.user_bandwidth).unwrap_or(1),
            concurrent: spec.concurrent as usize,
            manifest_poll: spec.manifest_poll,
            verify: spec.verify,
            users,
            seed,
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pre-push".into())
            .spawn(move || {
                if let Err(e) = phone::run(s, config) {
                    eprintln!("pre-push: cannot start its runtime: {e}");
                }
            })?;
        Ok(Running {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the phones and waits for the thread.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
