//! Counts by name on one line, as the text and HTML reports print them:
//! `nothing 120, envelope 3` (in the map's order; empty when there are none).

use std::collections::BTreeMap;

/// `name count, name count`, in the map's order.
pub fn line(by_name: &BTreeMap<String, u64>) -> String {
    by_name
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts_in_order_joined_by_commas() {
        let m: BTreeMap<String, u64> = [("nothing", 120), ("envelope", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(line(&m), "envelope 3, nothing 120");
        assert_eq!(line(&BTreeMap::new()), "");
    }
}
