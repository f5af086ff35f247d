//! What the phones' pre-downloads did, as workers count it and the run adds it up.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrePushStats {
    /// Users whose phone pre-downloads now (from their first session to the end of
    /// their last window): a level.
    pub online: u64,
    /// Of those, users holding every item of the newest manifest, verified: a level.
    pub covered: u64,
    /// The newest manifest version any phone adopted.
    pub newest_manifest: u64,
    /// Body bytes phones received (manifests and items).
    pub bytes: u64,
    /// HTTP answers by status (`200`, `206`, `304`, ...), and fetches that got none by
    /// why (`error/connect`, `error/timeout`, `error/cut`).
    pub requests: BTreeMap<String, u64>,
    /// Attempts made after a failure (each waited its back-off).
    pub retries: u64,
    /// Items whose digest matched: kept.
    pub items_verified: u64,
    /// Items whose bytes did not match their digest: refused and fetched again.
    pub tampered_refused: u64,
    /// Items that did not match and were kept anyway (only phones told not to verify).
    pub tampered_kept: u64,
    /// Items with more or fewer bytes than the manifest says: refused.
    pub wrong_size: u64,
    /// Downloads resumed from where a cut left them (a 206 to a range request).
    pub resumed: u64,
    /// Manifest versions adopted, and the held items each update kept.
    pub manifests_adopted: u64,
    pub items_kept_on_update: u64,
    /// Manifests that did not verify under the operator's key: refused.
    pub manifests_refused: u64,
    /// Greetings whose images were all held and verified, those that would have
    /// fetched at show time, and those shown from a tampered copy.
    pub greeting_hits: u64,
    pub greeting_misses: u64,
    pub tampered_shown: u64,
    /// The share of online users covered when the show began (the first round's
    /// start): set once by the run, not by workers.
    pub before_show: Option<f64>,
}

impl PrePushStats {
    /// Adds another part's counts; levels add too (the run's merge sets them per
    /// worker first).
    pub fn merge(&mut self, o: &PrePushStats) {
        self.online += o.online;
        self.covered += o.covered;
        self.newest_manifest = self.newest_manifest.max(o.newest_manifest);
        self.bytes += o.bytes;
        for (k, v) in &o.requests {
            *self.requests.entry(k.clone()).or_default() += v;
        }
        self.retries += o.retries;
        self.items_verified += o.items_verified;
        self.tampered_refused += o.tampered_refused;
        self.tampered_kept += o.tampered_kept;
        self.wrong_size += o.wrong_size;
        self.resumed += o.resumed;
        self.manifests_adopted += o.manifests_adopted;
        self.items_kept_on_update += o.items_kept_on_update;
        self.manifests_refused += o.manifests_refused;
        self.greeting_hits += o.greeting_hits;
        self.greeting_misses += o.greeting_misses;
        self.tampered_shown += o.tampered_shown;
        self.before_show = self.before_show.or(o.before_show);
    }

    /// Whether any phone pre-downloaded at all.
    pub fn active(&self) -> bool {
        self.online > 0 || self.bytes > 0 || !self.requests.is_empty()
    }

    /// Covered users over online ones, 0 to 1.
    pub fn coverage(&self) -> f64 {
        if self.online == 0 {
            0.0
        } else {
            self.covered as f64 / self.online as f64
        }
    }

    /// Hits over greetings, 0 to 1 (None before any greeting).
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.greeting_hits + self.greeting_misses + self.tampered_shown;
        (n > 0).then(|| self.greeting_hits as f64 / n as f64)
    }

    pub fn status(&mut self, status: &str) {
        *self.requests.entry(status.to_string()).or_default() += 1;
    }
}

/// One second's pre-push figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrePushSecond {
    pub online: u64,
    pub covered: u64,
    /// Bytes phones received in this second.
    pub bytes: u64,
}
