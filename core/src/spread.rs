//! Spreading user ids evenly: consecutive ids land far apart, so that choosing by
//! `spread(id) % n` (a user's home gateway, the parts of a split envelope)
//! splits any range of users evenly. splitmix64's finalizer.

pub fn spread(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_split_evenly() {
        let mut buckets = [0u32; 10];
        for id in 0..100_000u64 {
            buckets[(spread(id) % 10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (9_500..10_500).contains(b)),
            "{buckets:?}"
        );
    }
}
