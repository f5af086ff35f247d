//! The other gateways a gateway gossips with: their peer addresses, from the run
//! manifest (read when first needed, and again while it has none).

use rand::seq::IndexedRandom;
use std::path::PathBuf;
use std::sync::Arc;
use sut_wire::signing::SigningKey;

/// The other gateways' peer addresses.
#[derive(Clone)]
pub(crate) struct Peers {
    data: PathBuf,
    me: String,
    pub(super) key: SigningKey,
    known: Arc<tokio::sync::Mutex<Vec<String>>>,
}

impl Peers {
    pub(super) fn new(data: PathBuf, me: String, key: SigningKey) -> Self {
        Peers {
            data,
            me,
            key,
            known: Default::default(),
        }
    }

    pub(super) async fn random(&self, n: usize) -> Vec<String> {
        let mut known = self.known.lock().await;
        if known.is_empty() {
            if let Ok(m) = crate::files::load_manifest(&self.data) {
                *known = m
                    .gossip_addrs
                    .into_iter()
                    .filter(|a| *a != self.me)
                    .collect();
            }
        }
        known
            .choose_multiple(&mut rand::rng(), n)
            .cloned()
            .collect()
    }
}
