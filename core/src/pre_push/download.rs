//! One client's pre-download: the items it lacks, one at a time, in manifest order.
//!
//! - A cut download is resumed from the byte it reached (the shell asks for the rest
//!   with a range request); the SHA-256 in progress carries over, so the client never
//!   keeps the bytes themselves.
//! - A finished item is kept only when its digest matches the manifest; a mismatch
//!   (a tampered or corrupted copy) is refused and fetched again from the start.
//! - A failure (a server down, a cut, a timeout) backs off exponentially, with jitter
//!   the shell rolls, before the next attempt.
//! - A new manifest version keeps every item whose bytes did not change
//!   ([`super::holding::carry`]), and the download in progress when its item did not.

use super::holding::{self, carried, carry, is_set, set, words_for};
use sha2::{Digest, Sha256};
use std::time::Duration;
use sut_wire::resource_manifest::ResourceManifest;

/// The first back-off after a failure; it doubles with each failure in a row.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// One client's downloads. Small: a worker holds one per user.
#[derive(Debug, Clone, Default)]
pub struct Download {
    /// The manifest version the bitmaps are over (0: none adopted yet).
    version: u64,
    held: Vec<u64>,
    /// Items kept without matching their digest: only a client told not to verify
    /// (a deliberately broken one, which proves the gate) has any.
    tainted: Vec<u64>,
    partial: Option<Box<Partial>>,
    failures: u32,
    not_before: Duration,
}

#[derive(Debug, Clone)]
struct Partial {
    index: usize,
    offset: u64,
    hasher: Sha256,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Fetch item `index` from byte `from` (0: the whole item).
    Fetch { index: usize, from: u64 },
    /// Backing off after a failure until then.
    Wait(Duration),
    /// Every item of the manifest is held.
    Complete,
}

/// How a finished item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Its digest matched: kept.
    Verified,
    /// Its digest did not match: refused, to be fetched again from the start.
    Refused,
    /// Its digest did not match, yet kept (verification off).
    Tainted,
    /// Fewer or more bytes than the manifest says: refused, fetched again.
    WrongSize,
}

impl Download {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn held(&self) -> &[u64] {
        &self.held
    }

    pub fn tainted(&self) -> &[u64] {
        &self.tainted
    }

    /// Takes manifest `new` in place of `old` (the version held, `None` when none):
    /// returns how many held items were kept.
    pub fn adopt(&mut self, old: Option<&ResourceManifest>, new: &ResourceManifest) -> usize {
        let map = match old {
            Some(old) if old.version == self.version => carry(old, new),
            _ => vec![None; new.items.len()],
        };
        self.held = carried(&self.held, &map);
        self.tainted = carried(&self.tainted, &map);
        self.held.resize(words_for(new.items.len()), 0);
        self.tainted.resize(words_for(new.items.len()), 0);
        self.version = new.version;
        if let Some(p) = self.partial.as_mut() {
            match map.iter().position(|from| *from == Some(p.index)) {
                Some(i) => p.index = i,
                None => self.partial = None,
            }
        }
        holding::count(&self.held, new.items.len())
    }

    /// What to fetch at `now`, under manifest `m` (the one adopted).
    pub fn next(&self, m: &ResourceManifest, now: Duration) -> Next {
        let Some(index) = (0..m.items.len()).find(|i| !is_set(&self.held, *i)) else {
            return Next::Complete;
        };
        if now < self.not_before {
            return Next::Wait(self.not_before);
        }
        match &self.partial {
            Some(p) => Next::Fetch {
                index: p.index,
                from: p.offset,
            },
            None => Next::Fetch { index, from: 0 },
        }
    }

    /// The server's answer to a fetch of item `index` starts at byte `from`: 0 when it
    /// sent the whole item (the item changed, or the server does not resume), which
    /// starts the digest afresh.
    pub fn begin(&mut self, index: usize, from: u64) {
        match self.partial.as_mut() {
            Some(p) if p.index == index && p.offset == from && from > 0 => {}
            _ => {
                self.partial = Some(Box::new(Partial {
                    index,
                    offset: 0,
                    hasher: Sha256::new(),
                }))
            }
        }
    }

    /// Bytes of the item in progress arrived.
    pub fn received(&mut self, bytes: &[u8]) {
        if let Some(p) = self.partial.as_mut() {
            p.hasher.update(bytes);
            p.offset += bytes.len() as u64;
        }
    }

    /// Bytes of the item in progress so far (0 when none is).
    pub fn offset(&self) -> u64 {
        self.partial.as_ref().map_or(0, |p| p.offset)
    }

    /// The item in progress ended (the server sent its last byte): judged against `m`.
    /// `verify: false` keeps a mismatching item, marked tainted (only to prove that
    /// the report catches a client that shows tampered images).
    pub fn finish(&mut self, m: &ResourceManifest, verify: bool) -> Option<Finished> {
        let p = self.partial.take()?;
        let item = m.items.get(p.index)?;
        if p.offset != item.size {
            return Some(Finished::WrongSize);
        }
        let matches = p.hasher.finalize().as_slice() == item.digest();
        self.failures = 0;
        self.not_before = Duration::ZERO;
        match (matches, verify) {
            (true, _) => {
                set(&mut self.held, p.index);
                Some(Finished::Verified)
            }
            (false, true) => Some(Finished::Refused),
            (false, false) => {
                set(&mut self.held, p.index);
                set(&mut self.tainted, p.index);
                Some(Finished::Tainted)
            }
        }
    }

    /// A fetch failed at `now`: backs off; `roll` in [0, 1) spreads the wait between
    /// half and all of the exponential step. What arrived so far is kept for resuming.
    pub fn failed(&mut self, now: Duration, roll: f64) -> Duration {
        let step = BACKOFF_BASE
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures += 1;
        let wait = step.mul_f64(0.5 + roll.clamp(0.0, 1.0) / 2.0);
        self.not_before = now + wait;
        wait
    }

    /// Whether every item of `m` (the manifest adopted) is held.
    pub fn complete(&self, m: &ResourceManifest) -> bool {
        self.version == m.version && holding::count(&self.held, m.items.len()) == m.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pre_push::artwork::{body, digest_hex};
    use proptest::prelude::*;
    use sut_wire::resource_manifest::ResourceItem;

    fn manifest(version: u64, items: &[(u32, u32, u64)]) -> ResourceManifest {
        ResourceManifest {
            version,
            signed_unix_ms: 0,
            items: items
                .iter()
                .map(|&(id, v, size)| ResourceItem {
                    id,
                    version: v,
                    size,
                    sha256: digest_hex(&body(id, v, size)),
                })
                .collect(),
        }
    }

    /// Fetches everything `d` asks for, in chunks of `chunk`, from the true bodies.
    fn fetch_all(d: &mut Download, m: &ResourceManifest, chunk: usize) -> usize {
        let mut fetches = 0;
        while let Next::Fetch { index, from } = d.next(m, Duration::ZERO) {
            let it = &m.items[index];
            let b = body(it.id, it.version, it.size);
            d.begin(index, from);
            for c in b[from as usize..].chunks(chunk) {
                d.received(c);
            }
            assert_eq!(d.finish(m, true), Some(Finished::Verified));
            fetches += 1;
        }
        fetches
    }

    #[test]
    fn a_cut_download_resumes_from_its_byte_and_verifies() {
        let m = manifest(1, &[(1, 1, 1000), (2, 1, 10)]);
        let mut d = Download::default();
        d.adopt(None, &m);
        assert_eq!(
            d.next(&m, Duration::ZERO),
            Next::Fetch { index: 0, from: 0 }
        );
        d.begin(0, 0);
        d.received(&body(1, 1, 1000)[..400]);
        d.failed(Duration::ZERO, 0.0);
        assert!(matches!(d.next(&m, Duration::ZERO), Next::Wait(_)));
        let later = Duration::from_secs(60);
        assert_eq!(
            d.next(&m, later),
            Next::Fetch {
                index: 0,
                from: 400
            }
        );
        d.begin(0, 400);
        d.received(&body(1, 1, 1000)[400..]);
        assert_eq!(d.finish(&m, true), Some(Finished::Verified));
        assert!(!d.complete(&m));
        assert_eq!(fetch_all(&mut d, &m, 7), 1);
        assert!(d.complete(&m));
        assert_eq!(d.next(&m, later), Next::Complete);
    }

    #[test]
    fn a_whole_body_instead_of_the_rest_starts_the_digest_again() {
        let m = manifest(1, &[(1, 1, 100)]);
        let mut d = Download::default();
        d.adopt(None, &m);
        d.begin(0, 0);
        d.received(&body(1, 1, 100)[..50]);
        // The server answered the range with the whole item (200).
        d.begin(0, 0);
        d.received(&body(1, 1, 100));
        assert_eq!(d.finish(&m, true), Some(Finished::Verified));
    }

    #[test]
    fn a_corrupted_item_is_refused_then_fetched_again() {
        let m = manifest(1, &[(1, 1, 64)]);
        let mut d = Download::default();
        d.adopt(None, &m);
        let mut bad = body(1, 1, 64);
        bad[3] ^= 0xff;
        d.begin(0, 0);
        d.received(&bad);
        assert_eq!(d.finish(&m, true), Some(Finished::Refused));
        assert_eq!(
            d.next(&m, Duration::ZERO),
            Next::Fetch { index: 0, from: 0 }
        );
        d.begin(0, 0);
        d.received(&bad[..10]);
        assert_eq!(d.finish(&m, true), Some(Finished::WrongSize));
        assert_eq!(fetch_all(&mut d, &m, 64), 1);
        assert!(d.complete(&m));
        assert_eq!(d.tainted(), &[0]);
    }

    #[test]
    fn a_client_that_does_not_verify_keeps_the_tampered_copy_marked() {
        let m = manifest(1, &[(1, 1, 64)]);
        let mut d = Download::default();
        d.adopt(None, &m);
        d.begin(0, 0);
        d.received(&[0u8; 64]);
        assert_eq!(d.finish(&m, false), Some(Finished::Tainted));
        assert!(d.complete(&m));
        assert_eq!(d.tainted(), &[1]);
    }

    #[test]
    fn an_update_fetches_only_what_changed() {
        let v1 = manifest(1, &[(1, 1, 50), (2, 1, 50), (3, 1, 50)]);
        let v2 = manifest(2, &[(1, 1, 50), (2, 2, 60), (3, 1, 50), (4, 1, 5)]);
        let mut d = Download::default();
        d.adopt(None, &v1);
        assert_eq!(fetch_all(&mut d, &v1, 16), 3);
        assert_eq!(d.adopt(Some(&v1), &v2), 2);
        assert_eq!(fetch_all(&mut d, &v2, 16), 2);
        assert!(d.complete(&v2));
    }

    #[test]
    fn an_update_keeps_a_partial_of_an_unchanged_item_only() {
        let v1 = manifest(1, &[(1, 1, 50), (2, 1, 50)]);
        let v2 = manifest(2, &[(2, 1, 50), (1, 2, 50)]);
        let mut d = Download::default();
        d.adopt(None, &v1);
        d.begin(1, 0);
        d.received(&body(2, 1, 50)[..20]);
        d.adopt(Some(&v1), &v2);
        // Item 2 kept its bytes and moved to index 0: resumed there.
        assert_eq!(
            d.next(&v2, Duration::ZERO),
            Next::Fetch { index: 0, from: 20 }
        );
        let v3 = manifest(3, &[(2, 2, 50), (1, 2, 50)]);
        d.adopt(Some(&v2), &v3);
        assert_eq!(
            d.next(&v3, Duration::ZERO),
            Next::Fetch { index: 0, from: 0 }
        );
    }

    #[test]
    fn back_off_doubles_to_its_cap_and_resets_on_an_answer() {
        let mut d = Download::default();
        let waits: Vec<Duration> = (0..8)
            .map(|_| d.failed(Duration::ZERO, 0.999_999))
            .collect();
        assert!(waits[1] > waits[0] && waits[2] > waits[1]);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX));
        assert!(d.failed(Duration::ZERO, 0.0) >= BACKOFF_MAX / 2);
        let m = manifest(1, &[(1, 1, 8)]);
        d.adopt(None, &m);
        d.begin(0, 0);
        d.received(&body(1, 1, 8));
        d.finish(&m, true);
        assert_eq!(d.failed(Duration::ZERO, 0.0), BACKOFF_BASE / 2);
    }

    #[test]
    fn a_phone_keeps_bits_and_a_digest_in_progress_never_bytes() {
        // A worker holds one per user: small, whatever the items' sizes.
        assert!(std::mem::size_of::<Download>() <= 96);
        let m = manifest(1, &[(1, 1, 100_000), (2, 1, 100_000)]);
        let mut d = Download::default();
        d.adopt(None, &m);
        d.begin(0, 0);
        d.received(&body(1, 1, 100_000)[..50_000]);
        // In progress: the offset and the SHA-256 state, a few hundred bytes at most.
        assert!(std::mem::size_of::<Partial>() <= 160);
        assert_eq!(d.offset(), 50_000);
    }

    proptest! {
        /// However a download is cut, it ends verified with the true bytes.
        #[test]
        fn any_cuts_end_verified(size in 1u64..3000, cuts in prop::collection::vec(1usize..500, 0..6)) {
            let m = manifest(1, &[(9, 1, size)]);
            let b = body(9, 1, size);
            let mut d = Download::default();
            d.adopt(None, &m);
            for cut in cuts {
                let Next::Fetch { index, from } = d.next(&m, Duration::from_secs(1 << 20)) else { break };
                d.begin(index, from);
                let end = (from as usize + cut).min(b.len());
                d.received(&b[from as usize..end]);
                if end == b.len() { break }
                d.failed(Duration::ZERO, 0.5);
            }
            if let Next::Fetch { index, from } = d.next(&m, Duration::from_secs(1 << 20)) {
                d.begin(index, from);
                d.received(&b[from as usize..]);
            }
            prop_assert_eq!(d.finish(&m, true), Some(Finished::Verified));
            prop_assert!(d.complete(&m));
        }
    }
}
