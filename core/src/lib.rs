//! Every decision of the shake system's mechanisms, as plain data structures and
//! functions. This crate is fully deterministic: it has no runtime, storage, sockets or
//! files in its dependencies and reads no clock and no entropy of its own; show time
//! and random rolls are arguments. The services (`sut`) are thin shells that move
//! bytes, persist records and sleep until a core says what to do next.
//!
//! By the seed's mechanisms:
//! - the shake decided in the access server: [`shake`], with the seed shards
//!   ([`seed_shard`]), the issuance cursor and its lease ([`cursor`]) and the per-gateway
//!   issuance rate ([`rate_budget`]);
//! - per-user limits: the local table ([`user_limits`]), the view shared across
//!   gateways ([`limit_view`]) and the owner's reservations that make them strict
//!   ([`reservations`]); the cookie format is in `sut_wire::cookie`;
//! - overload protection: the throttle tier ([`throttle_tier`]), admission
//!   ([`admission`]), which shakes get no decision ([`shedding`]), and each user's frame
//!   allowance ([`client_rate`]) so that one client cannot take a gateway;
//! - open must succeed for the user: the pass-through queue, its backoff and its drain
//!   on shutdown ([`passthrough`], [`drain`]), and the backend's record-once rule
//!   ([`opens`]);
//! - split envelopes: pots, shares, grabs, recycling ([`split`]) over the relation chain
//!   ([`friends`]);
//! - the live timeline: an operator's change made into the next signed version
//!   ([`programme_change`]), and the version a gateway holds against what its channels
//!   offer, with the stale-shake count ([`live_timeline`]);
//! - resource pre-push: the items' bytes, a client's downloads and what it holds
//!   ([`pre_push`]);
//! - the payment stand-in's injected faults ([`payment_faults`]), and when a supervisor
//!   restarts a crashed part ([`restart`]);
//! - the audit's checker over the durable records ([`audit`]).

pub mod admission;
pub mod audit;
pub mod client_rate;
pub mod cursor;
pub mod drain;
pub mod friends;
pub mod limit_view;
pub mod live_timeline;
pub mod opens;
pub mod passthrough;
pub mod payment_faults;
pub mod pre_push;
pub mod programme_change;
pub mod rate_budget;
pub mod reservations;
pub mod restart;
pub mod seed_shard;
mod set_clock;
pub mod shake;
pub mod shedding;
pub mod split;
pub mod spread;
pub mod throttle_tier;
pub mod user_limits;
