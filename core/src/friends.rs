//! The relation chain the split envelopes check shares against: who is whose friend.
//!
//! The seed's split envelopes go to WeChat friends; the real relation chain is another
//! system. Here it is a rule both sides can evaluate without a lookup: users are
//! friends when they are in the same circle of [`CIRCLE`] consecutive ids. Consecutive
//! blocks (not strides) so that every load generator worker, which simulates the users
//! of one id stride (see the load generator's segments), still finds many friends of
//! each of its users among its own users: a share's chat message then reaches its
//! friends inside the worker, while their grabs cross gateways like anyone's.

/// Users per friend circle.
pub const CIRCLE: u64 = 256;

/// Whether `a` and `b` are friends (nobody is their own friend).
pub fn are_friends(a: u64, b: u64) -> bool {
    a != b && a / CIRCLE == b / CIRCLE
}

/// Every friend of `user`, in id order.
pub fn friends_of(user: u64) -> impl Iterator<Item = u64> {
    let start = user / CIRCLE * CIRCLE;
    (start..start.saturating_add(CIRCLE)).filter(move |f| *f != user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendship_is_symmetric_and_never_reflexive() {
        for a in [0u64, 1, 255, 256, 1_000_003] {
            assert!(!are_friends(a, a));
            for b in friends_of(a) {
                assert!(are_friends(a, b) && are_friends(b, a));
            }
            assert_eq!(friends_of(a).count() as u64, CIRCLE - 1);
        }
        assert!(!are_friends(255, 256));
    }
}
