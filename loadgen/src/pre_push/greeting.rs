//! What a worker's event loop tells the phones from the frames it reads: whether a
//! round is on (the countdown in every shake reply and hello), and, when a greeting
//! arrives, whether the phone could show it from what it pre-downloaded.

use super::Shared;
use crate::stats::Summary;
use sut_core::pre_push::holding::Greeted;
use sut_wire::protocol::{Frame, Outcome};

/// Looks at a frame that reached the user in `slot`.
pub fn on_frame(shared: &Shared, slot: u32, frame: &Frame, stats: &mut Summary) {
    match frame {
        Frame::ShakeReply {
            outcome,
            countdown_ms,
            ..
        } => {
            shared.countdown(*countdown_ms);
            if let Outcome::Greeting { resources, .. } = outcome {
                let p = &mut stats.pre_push;
                match shared.greeted(slot, resources) {
                    Greeted::Hit => p.greeting_hits += 1,
                    Greeted::Miss => p.greeting_misses += 1,
                    Greeted::TamperedShown => p.tampered_shown += 1,
                }
            }
        }
        Frame::HelloAck { countdown_ms, .. } => shared.countdown(*countdown_ms),
        _ => {}
    }
}
