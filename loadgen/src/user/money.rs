//! The money a user is told about: the replies to its opens and grabs. Each first
//! answer with an amount is a promise the audit must find credited to this user; a
//! cheater's deliberate repeat (the same open on another gateway, the same grab again)
//! must be told the original answer, and is judged against it, not promised again.

use super::split::{Settled, Task};
use super::UserCore;
use crate::stats::{Op, Summary};
use std::time::Duration;
use sut_wire::protocol::ErrorCode;

/// How long a cheater waits after an open before repeating it: long enough that its
/// hop to the next gateway comes first.
const REPEAT_AFTER: Duration = Duration::from_millis(1);

fn code_name(code: u16) -> &'static str {
    ErrorCode::from_u16(code)
        .map(|c| c.name())
        .unwrap_or("unknown")
}

impl UserCore {
    pub(super) fn on_open_reply(
        &mut self,
        code: u16,
        amount_cents: u32,
        latency_us: u64,
        now: Duration,
        roll: f64,
        stats: &mut Summary,
    ) {
        if let Some(Task::OpenAgain { told, .. }) = self.errand_in_flight() {
            self.judge_repeat(Op::Open, code, amount_cents, told, now, stats);
            return;
        }
        let opening = self.errands.as_mut().and_then(|e| e.opening.take());
        if code == 0 {
            stats.record(Op::Open, latency_us);
            stats.promised(self.user, amount_cents);
            stats.opened_cents += u64::from(amount_cents);
            if let (Some(o), Some(e)) = (opening, self.errands.as_mut()) {
                if roll < self.share_probability {
                    e.add(Task::Share(o.token.clone()), now);
                }
                if self.adversarial {
                    let again = Task::OpenAgain {
                        token: o.token,
                        told: amount_cents,
                    };
                    e.add(again, now + REPEAT_AFTER);
                }
            }
        } else {
            stats.error(Op::Open, code_name(code));
        }
        self.tidy();
    }

    pub(super) fn on_grab_reply(
        &mut self,
        code: u16,
        amount_cents: u32,
        latency_us: u64,
        now: Duration,
        stats: &mut Summary,
    ) {
        let task = self.errand_in_flight();
        if let Some(Task::GrabAgain {
            told: Some(told), ..
        }) = task
        {
            self.judge_repeat(Op::Grab, code, amount_cents, told, now, stats);
            return;
        }
        if code == 0 {
            stats.record(Op::Grab, latency_us);
            stats.promised(self.user, amount_cents);
            stats.grabbed_cents += u64::from(amount_cents);
        }
        self.settle_errand(Op::Grab, code, now, stats);
        if let (0, true, Some(Task::Grab(share_id))) = (code, self.adversarial, task) {
            // A cheater grabs the same pot again: it must be told the same amount.
            let again = Task::GrabAgain {
                share_id,
                told: Some(amount_cents),
            };
            self.errands.get_or_insert_default().add(again, now);
        }
        self.tidy();
    }

    fn errand_in_flight(&self) -> Option<Task> {
        self.errands.as_ref().and_then(|e| e.current().cloned())
    }

    /// A deliberate repeat's reply: the original answer keeps the contract; a passing
    /// refusal is tried again; anything else breaks it.
    fn judge_repeat(
        &mut self,
        op: Op,
        code: u16,
        amount_cents: u32,
        told: u32,
        now: Duration,
        stats: &mut Summary,
    ) {
        let settled = match self.errands.as_mut() {
            Some(e) => e.settle(code, now),
            None => Settled::Done,
        };
        match (code, settled) {
            (0, _) if amount_cents == told => stats.repeats_kept += 1,
            (_, Settled::Retry) => {}
            (_, Settled::GaveUp) => stats.error(op, code_name(code)),
            _ => stats.repeats_broken += 1,
        }
        self.tidy();
    }
}
