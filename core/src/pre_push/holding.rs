//! What a client holds: a bitmap over one manifest version's items (bit `i` for
//! `items[i]`). A new version keeps every bit whose item kept its id and digest, so an
//! update costs only the items that changed; and a greeting is a hit when every image
//! it names is held at the newest digest.

use sut_wire::resource_manifest::ResourceManifest;

/// Words a bitmap over `items` items takes.
pub fn words_for(items: usize) -> usize {
    items.div_ceil(64)
}

pub fn is_set(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

pub fn set(words: &mut [u64], i: usize) {
    if let Some(w) = words.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

pub fn clear(words: &mut [u64], i: usize) {
    if let Some(w) = words.get_mut(i / 64) {
        *w &= !(1 << (i % 64));
    }
}

/// Bits set among the first `items`.
pub fn count(words: &[u64], items: usize) -> usize {
    (0..items).filter(|i| is_set(words, *i)).count()
}

/// For each item of `new`, its index in `old` when it is the same bytes there (same
/// id, same digest): what a client holding `old`'s items keeps.
pub fn carry(old: &ResourceManifest, new: &ResourceManifest) -> Vec<Option<usize>> {
    new.items
        .iter()
        .map(|item| {
            old.index_of(item.id)
                .filter(|&j| old.items[j].sha256 == item.sha256)
        })
        .collect()
}

/// `words` (over `old`'s items) re-laid over `new`'s items through `carry`.
pub fn carried(words: &[u64], carry: &[Option<usize>]) -> Vec<u64> {
    let mut out = vec![0; words_for(carry.len())];
    for (i, from) in carry.iter().enumerate() {
        if from.is_some_and(|j| is_set(words, j)) {
            set(&mut out, i);
        }
    }
    out
}

/// What a client could show when a greeting named some images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeted {
    /// Every image held and verified at the newest digest.
    Hit,
    /// At least one image missing or outdated: the client would fetch it now, at show
    /// time (the peak pre-push avoids).
    Miss,
    /// Every image held, but at least one was kept without matching its digest (a
    /// client that does not verify): a tampered copy shown.
    TamperedShown,
}

/// Judges a greeting naming `ids` for a client whose `held` and `tainted` bitmaps are
/// over `holding` (its manifest version), against the newest manifest `newest`.
pub fn greeted(
    ids: &[u32],
    holding: &ResourceManifest,
    held: &[u64],
    tainted: &[u64],
    newest: &ResourceManifest,
) -> Greeted {
    let mut shown_tampered = false;
    for id in ids {
        let current = newest.index_of(*id).map(|i| &newest.items[i]);
        let mine = holding.index_of(*id);
        match (current, mine) {
            (Some(c), Some(j)) if is_set(held, j) && holding.items[j].sha256 == c.sha256 => {
                shown_tampered |= is_set(tainted, j);
            }
            _ => return Greeted::Miss,
        }
    }
    if shown_tampered {
        Greeted::TamperedShown
    } else {
        Greeted::Hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sut_wire::resource_manifest::ResourceItem;

    fn m(version: u64, items: &[(u32, &str)]) -> ResourceManifest {
        ResourceManifest {
            version,
            signed_unix_ms: 0,
            items: items
                .iter()
                .map(|(id, d)| ResourceItem {
                    id: *id,
                    version: 1,
                    size: 1,
                    sha256: d.repeat(32),
                })
                .collect(),
        }
    }

    #[test]
    fn an_update_keeps_unchanged_items_only() {
        let old = m(1, &[(1, "aa"), (2, "bb"), (3, "cc")]);
        let new = m(2, &[(3, "cc"), (2, "b0"), (4, "dd"), (1, "aa")]);
        let c = carry(&old, &new);
        assert_eq!(c, vec![Some(2), None, None, Some(0)]);
        let mut held = vec![0u64];
        set(&mut held, 0);
        set(&mut held, 1);
        set(&mut held, 2);
        let kept = carried(&held, &c);
        assert!(is_set(&kept, 0) && is_set(&kept, 3));
        assert!(!is_set(&kept, 1) && !is_set(&kept, 2));
        assert_eq!(count(&kept, 4), 2);
    }

    #[test]
    fn bitmaps_span_words() {
        let mut w = vec![0u64; words_for(130)];
        assert_eq!(w.len(), 3);
        set(&mut w, 129);
        set(&mut w, 64);
        assert!(is_set(&w, 129) && is_set(&w, 64) && !is_set(&w, 63));
        clear(&mut w, 64);
        assert_eq!(count(&w, 130), 1);
        assert!(!is_set(&w, 10_000));
    }

    #[test]
    fn a_greeting_hits_only_on_every_image_at_its_newest_digest() {
        let old = m(1, &[(1, "aa"), (2, "bb")]);
        let new = m(2, &[(1, "aa"), (2, "b0")]);
        let both = vec![0b11u64];
        let none = vec![0u64];
        assert_eq!(greeted(&[1], &old, &both, &none, &new), Greeted::Hit);
        // Item 2 changed since the client's version: it would fetch it at show time.
        assert_eq!(greeted(&[1, 2], &old, &both, &none, &new), Greeted::Miss);
        assert_eq!(greeted(&[2], &new, &both, &none, &new), Greeted::Hit);
        assert_eq!(greeted(&[2], &new, &[0b01], &none, &new), Greeted::Miss);
        // An image no manifest lists cannot have been pre-pushed.
        assert_eq!(greeted(&[9], &new, &both, &none, &new), Greeted::Miss);
        assert_eq!(
            greeted(&[1, 2], &new, &both, &[0b10], &new),
            Greeted::TamperedShown
        );
    }
}
