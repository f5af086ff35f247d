//! The bytes of a resource item: stand-ins for sponsors' images, made from the item's
//! id and version alone, so the operator writes them, servers serve them and a test
//! can recompute any of them.

use sha2::{Digest, Sha256};

/// Item `id` at `version`, `size` bytes long: SHA-256 of (id, version, block number),
/// block after block.
pub fn body(id: u32, version: u32, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize);
    let mut block = 0u64;
    while (out.len() as u64) < size {
        let mut h = Sha256::new();
        h.update(id.to_le_bytes());
        h.update(version.to_le_bytes());
        h.update(block.to_le_bytes());
        let d = h.finalize();
        let take = (size as usize - out.len()).min(d.len());
        out.extend_from_slice(&d[..take]);
        block += 1;
    }
    out
}

/// The lowercase hex SHA-256 of `bytes`, as a manifest lists it.
pub fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The size of item number `n` (0-based) of `count`, spread evenly from `min` to `max`
/// bytes, so a manifest mixes small logos and large backgrounds.
pub fn size_of(n: usize, count: usize, min: u64, max: u64) -> u64 {
    if count <= 1 || max <= min {
        return min.max(1);
    }
    min + (max - min) * n as u64 / (count as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_exact_sizes_and_differ_by_version() {
        assert_eq!(body(1, 1, 0).len(), 0);
        assert_eq!(body(1, 1, 33).len(), 33);
        assert_eq!(body(1, 1, 100)[..33], body(1, 1, 33)[..]);
        assert_ne!(body(1, 1, 64), body(1, 2, 64));
        assert_ne!(body(1, 1, 64), body(2, 1, 64));
        assert_eq!(digest_hex(b"").len(), 64);
        assert_eq!(size_of(0, 65, 100, 200), 100);
        assert_eq!(size_of(64, 65, 100, 200), 200);
        assert_eq!(size_of(0, 1, 100, 200), 100);
    }
}
