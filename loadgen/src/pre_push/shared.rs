//! What a worker's event loop and its pre-push thread share: per user, the manifest
//! version held and the bitmaps of items held and tainted (atomics the thread writes
//! and the loop reads when a greeting arrives); whether a round is on (the loop sets it
//! from the gateways' countdown, the thread pauses downloads for it); the manifests
//! seen; and the thread's counts, which the loop takes into each report.

use super::stats::PrePushStats;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use sut_core::pre_push::holding::{self, Greeted};
use sut_wire::resource_manifest::ResourceManifest;

/// The most items a phone tracks (the bitmaps' size): a manifest with more is refused.
pub const MAX_TRACKED: usize = 256;
const WORDS: usize = MAX_TRACKED / 64;

#[derive(Default)]
struct Slot {
    online: AtomicBool,
    version: AtomicU64,
    held: [AtomicU64; WORDS],
    tainted: [AtomicU64; WORDS],
}

#[derive(Default)]
pub struct Shared {
    slots: Box<[Slot]>,
    round_on: AtomicBool,
    manifests: Mutex<BTreeMap<u64, Arc<ResourceManifest>>>,
    counts: Mutex<PrePushStats>,
    pub(super) stop: AtomicBool,
}

fn load(words: &[AtomicU64; WORDS]) -> [u64; WORDS] {
    std::array::from_fn(|i| words[i].load(Ordering::Acquire))
}

impl Shared {
    pub fn new(users: usize) -> Shared {
        Shared {
            slots: (0..users).map(|_| Slot::default()).collect(),
            ..Shared::default()
        }
    }

    /// The user in `slot` began its first session: its phone pre-downloads from now.
    pub fn online(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.online.store(true, Ordering::Release);
        }
    }

    /// The user's last window ended.
    pub fn offline(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.online.store(false, Ordering::Release);
        }
    }

    pub fn is_online(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.online.load(Ordering::Acquire))
    }

    /// A shake reply's countdown: 0 while a round is on, when phones are busy with the
    /// show and downloads wait.
    pub fn countdown(&self, countdown_ms: u32) {
        self.round_on.store(countdown_ms == 0, Ordering::Relaxed);
    }

    pub fn round_on(&self) -> bool {
        self.round_on.load(Ordering::Relaxed)
    }

    /// The pre-push thread publishes what a phone now holds.
    pub(super) fn publish(&self, slot: usize, version: u64, held: &[u64], tainted: &[u64]) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        for i in 0..WORDS {
            s.held[i].store(held.get(i).copied().unwrap_or(0), Ordering::Release);
            s.tainted[i].store(tainted.get(i).copied().unwrap_or(0), Ordering::Release);
        }
        s.version.store(version, Ordering::Release);
    }

    pub(super) fn add_manifest(&self, m: Arc<ResourceManifest>) {
        if let Ok(mut all) = self.manifests.lock() {
            all.insert(m.version, m);
        }
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut PrePushStats)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }

    /// Judges a greeting naming `ids` that reached the user in `slot`.
    pub fn greeted(&self, slot: u32, ids: &[u32]) -> Greeted {
        let Some(s) = self.slots.get(slot as usize) else {
            return Greeted::Miss;
        };
        let version = s.version.load(Ordering::Acquire);
        let (held, tainted) = (load(&s.held), load(&s.tainted));
        let Ok(all) = self.manifests.lock() else {
            return Greeted::Miss;
        };
        match (all.get(&version), all.values().next_back()) {
            (Some(mine), Some(newest)) => holding::greeted(ids, mine, &held, &tainted, newest),
            _ => Greeted::Miss,
        }
    }

    /// Moves the thread's counts into `out` and sets the levels (online users, and
    /// those holding every item of the newest manifest).
    pub fn report_into(&self, out: &mut PrePushStats) {
        if let Ok(mut c) = self.counts.lock() {
            out.merge(&std::mem::take(&mut *c));
        }
        let newest = self
            .manifests
            .lock()
            .ok()
            .and_then(|all| all.values().next_back().cloned());
        let online = self
            .slots
            .iter()
            .filter(|s| s.online.load(Ordering::Acquire));
        let (mut n, mut covered) = (0, 0);
        for s in online {
            n += 1;
            let complete = newest.as_ref().is_some_and(|m| {
                s.version.load(Ordering::Acquire) == m.version
                    && holding::count(&load(&s.held), m.items.len()) == m.items.len()
            });
            covered += u64::from(complete);
        }
        out.online = n;
        out.covered = covered;
        out.newest_manifest = newest.map_or(0, |m| m.version);
    }
}
