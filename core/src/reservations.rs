//! Strict per-user limits across gateways: every envelope a gateway would issue is
//! first reserved at the user's owner (here the envelope backend), which holds what
//! each user has been issued anywhere and grants a reservation only within the limits
//! (3 envelopes, 1 per sponsor). Two gateways racing for one user are serialized there,
//! so no interleaving gives a user more. Winning is rare (the rounds' rates bound it),
//! so the one synchronous step costs the win path only; a shake that wins nothing never
//! asks. A repeat of a granted reservation (a retry after a lost reply) is granted again.

use crate::user_limits::{check, LimitCheck};
use sut_wire::issued::Issued;
use sut_wire::reserve::ReserveAnswer;

/// What one user holds at the owner: (envelope id, sponsor) per reservation granted.
pub type Held = Vec<(u64, u16)>;

/// The owner's rule for one reservation; `held` grows when it is granted.
pub fn reserve(held: &mut Held, r: &Issued) -> ReserveAnswer {
    if held.iter().any(|(id, _)| *id == r.envelope_id) {
        return ReserveAnswer::Granted;
    }
    let sponsors: Vec<u16> = held.iter().map(|(_, s)| *s).collect();
    match check(&sponsors, r.sponsor) {
        LimitCheck::Allowed => {
            held.push((r.envelope_id, r.sponsor));
            ReserveAnswer::Granted
        }
        LimitCheck::UserLimit | LimitCheck::SponsorTaken => ReserveAnswer::Refused { sponsors },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn issued(envelope_id: u64, sponsor: u16) -> Issued {
        Issued {
            user: 7,
            envelope_id,
            sponsor,
        }
    }

    #[test]
    fn grants_within_the_limits_and_refuses_past_them() {
        let mut held = Held::new();
        assert_eq!(reserve(&mut held, &issued(1, 1)), ReserveAnswer::Granted);
        assert_eq!(
            reserve(&mut held, &issued(2, 1)),
            ReserveAnswer::Refused { sponsors: vec![1] },
            "a second of one sponsor"
        );
        assert_eq!(reserve(&mut held, &issued(3, 2)), ReserveAnswer::Granted);
        assert_eq!(reserve(&mut held, &issued(4, 3)), ReserveAnswer::Granted);
        assert_eq!(
            reserve(&mut held, &issued(5, 4)),
            ReserveAnswer::Refused {
                sponsors: vec![1, 2, 3]
            },
            "a fourth"
        );
        assert_eq!(
            reserve(&mut held, &issued(3, 2)),
            ReserveAnswer::Granted,
            "a repeat is granted again"
        );
        assert_eq!(held.len(), 3);
    }

    proptest! {
        /// Whatever gateways ask, in whatever order and however often, a user never
        /// holds more than 3 reservations nor 2 of one sponsor.
        #[test]
        fn no_sequence_of_requests_passes_the_limits(
            asks in proptest::collection::vec(0u64..12, 0..60)
        ) {
            let mut held = Held::new();
            for id in asks {
                // One envelope id always has one sponsor.
                let _ = reserve(&mut held, &issued(id, (id % 5) as u16));
                let sponsors: Vec<u16> = held.iter().map(|(_, s)| *s).collect();
                let mut distinct = sponsors.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert!(held.len() <= 3);
                prop_assert_eq!(distinct.len(), sponsors.len());
            }
        }
    }
}
