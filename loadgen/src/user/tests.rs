//! The simulated user core's tests: schedule, tiers, opens, shares and grabs.
use super::*;

fn behaviour() -> Behaviour {
    Behaviour {
        shake_rate: 0.5,
        open_probability: 1.0,
        heartbeat_interval: Duration::from_secs(30),
        request_timeout: Duration::from_secs(5),
        adversarial: 0.0,
        split: Default::default(),
        hostile: Default::default(),
        transport: Default::default(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Logs `u` in, has its first shake win a 50-cent envelope (token `tok`) at 5 ms, and
/// checks the open goes out next: the open it sent.
fn wins_and_opens(u: &mut UserCore, s: &mut Summary) -> Action {
    hello(u, s);
    u.poll(ms(1));
    let env = Outcome::Envelope {
        token: Bytes::from_static(b"tok"),
        sponsor: 1,
        amount_cents: 50,
    };
    u.on_frame(reply(0, env), ms(5), 0.5, s);
    let open = Action::Send(Frame::Open {
        token: Bytes::from_static(b"tok"),
    });
    assert_eq!(u.poll(ms(5)), open);
    open
}

/// A reply at `tier`, whose interval is 2 s at tier 0 and 10 s above.
fn reply(tier: u8, outcome: Outcome) -> Frame {
    Frame::ShakeReply {
        outcome,
        tier,
        shake_interval_ms: if tier == 0 { 2_000 } else { 10_000 },
        cookie: Bytes::from_static(b"c"),
        config_version: 1,
        countdown_ms: 0,
    }
}

/// The gateway's HelloAck at tier 0, naming its shake interval.
fn hello_ack(shake_interval_ms: u32) -> Frame {
    Frame::HelloAck {
        server_time_ms: 0,
        tier: 0,
        shake_interval_ms,
        config_version: 1,
        countdown_ms: 0,
    }
}

fn hello(u: &mut UserCore, s: &mut Summary) {
    u.connected(ms(0), ms(60_000));
    assert!(matches!(u.poll(ms(0)), Action::Send(Frame::Hello { .. })));
    let ack = hello_ack(2_000);
    assert_eq!(u.on_frame(ack, ms(1), 0.0, s), None);
}

#[test]
fn latency_counts_from_the_intended_time() {
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &behaviour(), 0.0, false);
    hello(&mut u, &mut s);
    // Shake 0 intended at 0; the reply takes 3 s.
    assert!(matches!(u.poll(ms(1)), Action::Send(Frame::Shake { .. })));
    u.on_frame(reply(0, Outcome::Nothing), ms(3_000), 0.0, &mut s);
    // Shake 1 was intended at 2 s: sent late at 3 s, answered at 3.001 s = 1001 ms.
    assert!(matches!(
        u.poll(ms(3_000)),
        Action::Send(Frame::Shake { .. })
    ));
    u.on_frame(reply(0, Outcome::Nothing), ms(3_001), 0.0, &mut s);
    let h = &s.ops[Op::Shake as usize].latency;
    assert_eq!(h.len(), 2);
    assert!(
        h.min() >= 1_000_000 && h.max() >= 2_999_000,
        "{} {}",
        h.min(),
        h.max()
    );
    assert!(s.wins.latency.is_empty(), "no shake won");
}

#[test]
fn the_server_tier_sets_the_interval() {
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &behaviour(), 0.0, false);
    hello(&mut u, &mut s);
    u.poll(ms(1));
    u.on_frame(reply(1, Outcome::Nothing), ms(5), 0.0, &mut s);
    assert_eq!(u.tier(), 1);
    // Next shake 10 s after the last intended one (0), not 2 s.
    assert_eq!(u.poll(ms(6)), Action::WaitUntil(ms(10_000)));
    assert!(matches!(
        u.poll(ms(10_000)),
        Action::Send(Frame::Shake { .. })
    ));
    assert_eq!(s.tiers[&1], 1);
}

#[test]
fn a_frantic_shaker_is_coalesced_to_the_server_interval() {
    let mut b = behaviour();
    b.shake_rate = 5.0;
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.0, false);
    hello(&mut u, &mut s);
    assert_eq!(s.clients_by_tier[&0], 1);
    // Five shakes a second wanted, one request per 2 s sent: each carries ten. (The
    // HelloAck named the 2 s interval; the first shake counts from when the session
    // was meant to begin, 0 ms, not from when the HelloAck happened to arrive.)
    for k in 0..3u64 {
        let t = ms(k * 2_000 + 1);
        assert!(
            matches!(u.poll(t), Action::Send(Frame::Shake { .. })),
            "{k}"
        );
        u.on_frame(reply(0, Outcome::Nothing), t + ms(1), 0.0, &mut s);
        assert_eq!(u.poll(t + ms(2)), Action::WaitUntil(ms((k + 1) * 2_000)));
    }
    assert_eq!(s.count(Op::Shake), 3);
    assert_eq!(s.desired_shakes, 30);
    // The gateway raises the tier: the next request waits 10 s.
    assert!(matches!(
        u.poll(ms(6_001)),
        Action::Send(Frame::Shake { .. })
    ));
    u.on_frame(reply(1, Outcome::Nothing), ms(6_002), 0.0, &mut s);
    assert_eq!(u.poll(ms(6_003)), Action::WaitUntil(ms(16_000)));
    assert_eq!(s.tier_transitions, 1);
    assert_eq!((s.clients_by_tier[&0], s.clients_by_tier[&1]), (0, 1));
    u.disconnected(&mut s);
    assert_eq!(s.clients_by_tier[&1], 0);
}

#[test]
fn a_won_envelope_is_opened_next() {
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &behaviour(), 0.0, false);
    hello(&mut u, &mut s);
    u.poll(ms(1));
    let env = Outcome::Envelope {
        token: Bytes::from_static(b"tok"),
        sponsor: 1,
        amount_cents: 50,
    };
    u.on_frame(reply(0, env), ms(5), 0.5, &mut s);
    assert_eq!(
        u.poll(ms(5)),
        Action::Send(Frame::Open {
            token: Bytes::from_static(b"tok")
        })
    );
    u.on_frame(
        Frame::OpenReply {
            code: 0,
            amount_cents: 50,
        },
        ms(7),
        0.0,
        &mut s,
    );
    assert_eq!(s.opened_cents, 50);
    assert_eq!(s.count(Op::Open), 1);
    // The winning shake is a shake, and a win apart.
    assert_eq!(s.count(Op::Shake), 1);
    assert_eq!(s.wins.latency.len(), 1);
    assert_eq!(
        s.wins.latency.max(),
        s.ops[Op::Shake as usize].latency.max()
    );
    assert_eq!(
        s.promises,
        vec![(1, 50)],
        "one promise to check against payment"
    );
    assert!(u.errands.is_none(), "nothing left to do");
}

#[test]
fn an_open_whose_reply_was_lost_is_sent_again_and_promised_once() {
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &behaviour(), 0.0, false);
    let open = wins_and_opens(&mut u, &mut s);
    // The reply never comes: the connection is lost.
    u.failed("timeout", &mut s);
    u.disconnected(&mut s);
    u.connected(ms(3_000), ms(60_000));
    hello(&mut u, &mut s);
    assert_eq!(u.poll(ms(3_001)), open, "the same open again");
    let answer = Frame::OpenReply {
        code: 0,
        amount_cents: 50,
    };
    u.on_frame(answer, ms(3_002), 0.0, &mut s);
    assert_eq!(s.errors_by_kind["open/timeout"], 1);
    assert_eq!(s.promises, vec![(1, 50)]);
    // Its latency counts from the first try.
    assert!(s.ops[Op::Open as usize].latency.max() >= 2_997_000);
}

#[test]
fn heartbeats_fill_silence_and_leaving_ends() {
    let mut b = behaviour();
    // The first shake falls after the user leaves: only heartbeats go.
    b.shake_rate = 0.001;
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.5, false);
    u.connected(ms(0), ms(70_000));
    u.poll(ms(0));
    u.on_frame(hello_ack(2_000), ms(1), 0.0, &mut s);
    // Phase 0.5: the first beat half an interval in, the next a full one later.
    assert_eq!(u.poll(ms(2)), Action::WaitUntil(ms(15_000)));
    assert_eq!(u.poll(ms(15_000)), Action::Send(Frame::Heartbeat));
    u.on_frame(
        Frame::HeartbeatAck { server_time_ms: 0 },
        ms(15_001),
        0.0,
        &mut s,
    );
    assert_eq!(u.poll(ms(15_002)), Action::WaitUntil(ms(45_000)));
    assert_eq!(u.poll(ms(45_000)), Action::Send(Frame::Heartbeat));
    u.on_frame(
        Frame::HeartbeatAck { server_time_ms: 0 },
        ms(45_001),
        0.0,
        &mut s,
    );
    assert_eq!(u.poll(ms(70_000)), Action::Leave);
}

#[test]
fn the_first_shake_does_not_wait_on_how_fast_the_hello_was_answered() {
    let b = behaviour(); // desire 2 s; the gateway's 4 s interval is longer
    let first_due = |ack_at: u64| {
        let mut s = Summary::default();
        let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.5, false);
        u.connected(ms(0), ms(60_000));
        u.poll(ms(0));
        let ack = hello_ack(4_000);
        u.on_frame(ack, ms(ack_at), 0.0, &mut s);
        u.poll(ms(ack_at + 1))
    };
    assert_eq!(first_due(1), first_due(700));
    assert_eq!(first_due(1), Action::WaitUntil(ms(2_000)));
}

#[test]
fn a_slow_first_connect_owes_the_shakes_since_the_window_began() {
    let b = behaviour(); // a shake every 2 s; phase 0.5: the first at 1 s

    let shakes_sent = |owed_from: Duration| {
        let mut s = Summary::default();
        let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.5, false);
        u.connected_since(ms(3_500), owed_from, ms(60_000));
        assert!(matches!(
            u.poll(ms(3_500)),
            Action::Send(Frame::Hello { .. })
        ));
        u.on_frame(hello_ack(2_000), ms(3_501), 0.0, &mut s);
        let mut sent = 0;
        let mut t = 3_502;
        while let Action::Send(Frame::Shake { .. }) = u.poll(ms(t)) {
            sent += 1;
            u.on_frame(reply(0, Outcome::Nothing), ms(t + 1), 0.0, &mut s);
            t += 2;
        }
        sent
    };
    // Intended at 0 s: the shakes of 1 s and 3 s go, late. Connected as a reconnect
    // (owing nothing before 3.5 s): none until 5 s.
    assert_eq!(shakes_sent(ms(0)), 2);
    assert_eq!(shakes_sent(ms(3_500)), 0);
}

#[test]
fn a_shake_intended_before_leaving_goes_even_when_polled_late() {
    let mut b = behaviour();
    b.shake_rate = 0.01; // one shake every 100 s, the first at 50 s (phase 0.5)
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.5, false);
    u.connected(ms(0), ms(60_000));
    u.poll(ms(0));
    let ack = hello_ack(2_000);
    u.on_frame(ack, ms(1), 0.0, &mut s);
    // Polled only after the leave time: the 50 s shake still goes, its lateness counted.
    assert!(matches!(
        u.poll(ms(61_000)),
        Action::Send(Frame::Shake { .. })
    ));
    u.on_frame(reply(0, Outcome::Nothing), ms(61_001), 0.0, &mut s);
    assert_eq!(s.ops[Op::Shake as usize].latency.len(), 1);
    assert!(s.ops[Op::Shake as usize].latency.max() >= 11_000_000);
    // The next would fall after the leave time: the user leaves.
    assert_eq!(u.poll(ms(61_002)), Action::Leave);
}

#[test]
fn an_adversarial_user_drops_its_cookie_and_hops_after_an_envelope() {
    let mut s = Summary::default();
    // An even id: this cheater drops its cookie (odd ones replay their first).
    let mut u = UserCore::new(2, [0; MAC_LEN], &behaviour(), 0.0, true);
    hello(&mut u, &mut s);
    let Action::Send(Frame::Shake { cookie }) = u.poll(ms(0)) else {
        panic!("a shake first")
    };
    assert!(cookie.is_empty());
    let won = Outcome::Envelope {
        token: Bytes::from_static(b"t"),
        sponsor: 1,
        amount_cents: 5,
    };
    u.on_frame(reply(0, won), ms(1), 0.0, &mut s);
    assert!(matches!(u.poll(ms(1)), Action::Send(Frame::Open { .. })));
    u.on_frame(
        Frame::OpenReply {
            code: 0,
            amount_cents: 5,
        },
        ms(2),
        0.0,
        &mut s,
    );
    assert!(
        matches!(u.poll(ms(2)), Action::Hop),
        "hops once the envelope is opened"
    );
    assert!(
        matches!(u.poll(ms(3)), Action::Send(Frame::Open { .. })),
        "opens it again there"
    );
    let again = Frame::OpenReply {
        code: 0,
        amount_cents: 5,
    };
    u.on_frame(again, ms(4), 0.0, &mut s);
    let Action::Send(Frame::Shake { cookie }) = u.poll(ms(5_000)) else {
        panic!("shakes again")
    };
    assert!(cookie.is_empty(), "the cookie it got is never sent back");
}

#[test]
fn unsolicited_errors_end_the_session() {
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &behaviour(), 0.0, false);
    hello(&mut u, &mut s);
    let bye = Frame::error(ErrorCode::ShuttingDown, "bye");
    assert_eq!(
        u.on_frame(bye, ms(5), 0.0, &mut s),
        Some(ErrorCode::ShuttingDown)
    );
    assert_eq!(s.errors_by_kind["session/shutting_down"], 1);
}

#[test]
fn an_opened_pot_is_shared_and_a_friend_grabs_with_retries() {
    let mut b = behaviour();
    b.split.share_probability = 1.0;
    let mut s = Summary::default();
    let mut u = UserCore::new(1, [0; MAC_LEN], &b, 0.0, false);
    hello(&mut u, &mut s);
    u.poll(ms(1));
    let env = Outcome::Envelope {
        token: Bytes::from_static(b"tok"),
        sponsor: 1,
        amount_cents: 50,
    };
    u.on_frame(reply(0, env), ms(5), 0.0, &mut s);
    assert!(matches!(u.poll(ms(5)), Action::Send(Frame::Open { .. })));
    let opened = Frame::OpenReply {
        code: 0,
        amount_cents: 50,
    };
    u.on_frame(opened, ms(7), 0.5, &mut s);
    assert_eq!(
        u.poll(ms(7)),
        Action::Share {
            token: Bytes::from_static(b"tok")
        }
    );
    // The open has not reached the backend yet: tried again later, not an error.
    let not_yet = |code: ErrorCode| Frame::ShareReply {
        code: code as u16,
        share_id: 0,
        parts: 0,
        pot_cents: 0,
        expires_in_ms: 0,
    };
    u.on_frame(not_yet(ErrorCode::NoSuchShare), ms(8), 0.0, &mut s);
    assert_eq!(u.take_announcement(), None);
    assert_eq!(u.poll(ms(9)), Action::WaitUntil(ms(108)));
    assert!(matches!(u.poll(ms(108)), Action::Share { .. }));
    let shared = Frame::ShareReply {
        code: 0,
        share_id: 77,
        parts: 3,
        pot_cents: 100,
        expires_in_ms: 1_000,
    };
    u.on_frame(shared, ms(260), 0.0, &mut s);
    assert_eq!(u.take_announcement(), Some(77));
    assert_eq!(u.take_announcement(), None, "announced once");
    assert_eq!(s.split_outcomes["share/retried"], 1);
    assert_eq!(s.split_outcomes["share/ok"], 1);
    assert_eq!(s.errors(), 0);

    // A friend (this same core will do) is invited: it grabs when due; a lost
    // connection sends the grab again on the next one.
    u.invite(77, ms(1_000));
    assert_eq!(u.poll(ms(999)), Action::WaitUntil(ms(1_000)));
    assert_eq!(
        u.poll(ms(1_000)),
        Action::Send(Frame::Grab { share_id: 77 })
    );
    u.failed("closed", &mut s);
    u.disconnected(&mut s);
    hello(&mut u, &mut s);
    let again = u.poll(ms(1_300));
    assert_eq!(again, Action::Send(Frame::Grab { share_id: 77 }));
    let got = Frame::GrabReply {
        code: 0,
        amount_cents: 31,
    };
    u.on_frame(got, ms(1_301), 0.0, &mut s);
    assert_eq!(s.grabbed_cents, 31);
    assert_eq!(s.count(Op::Grab), 1);
    // Latency counts from when the grab was first due.
    assert!(s.ops[Op::Grab as usize].latency.max() >= 300_000);
    assert!(u.errands.is_none(), "nothing left to do: the box is freed");
}

#[test]
fn a_client_counts_what_it_received_against_the_limits() {
    let mut r = Received::default();
    assert!(
        !r.add(1) && !r.add(2) && !r.add(3),
        "three sponsors: within"
    );
    assert!(r.add(4), "a fourth envelope passes the limits");
    assert!(!r.add(5), "reported once");
    let mut r = Received::default();
    assert!(!r.add(7));
    assert!(r.add(7), "two of one sponsor");
}

#[test]
fn cheaters_replay_or_drop_cookies_and_grab_where_they_may_not() {
    let mut s = Summary::default();
    // Odd ids replay the first cookie they got; even ids send none.
    for (user, replays) in [(3u64, true), (4u64, false)] {
        let mut u = UserCore::new(user, [0; MAC_LEN], &behaviour(), 0.0, true);
        hello(&mut u, &mut s);
        u.poll(ms(1));
        let first = Frame::ShakeReply {
            outcome: Outcome::Nothing,
            tier: 0,
            shake_interval_ms: 2_000,
            cookie: Bytes::from_static(b"first"),
            config_version: 1,
            countdown_ms: 0,
        };
        u.on_frame(first, ms(2), 0.0, &mut s);
        u.poll(ms(2_001));
        let later = Frame::ShakeReply {
            outcome: Outcome::Nothing,
            tier: 0,
            shake_interval_ms: 2_000,
            cookie: Bytes::from_static(b"later"),
            config_version: 1,
            countdown_ms: 0,
        };
        u.on_frame(later, ms(2_002), 0.0, &mut s);
        let sent = match u.poll(ms(4_001)) {
            Action::Send(Frame::Shake { cookie }) => cookie,
            other => panic!("{other:?}"),
        };
        let want: &[u8] = if replays { b"first" } else { b"" };
        assert_eq!(&sent[..], want, "user {user}");
    }

    // A cheater grabs its own share, and grabs a friend's share twice.
    let mut u = UserCore::new(5, [0; MAC_LEN], &behaviour(), 0.0, true);
    hello(&mut u, &mut s);
    u.invite(9, ms(10));
    assert_eq!(u.poll(ms(10)), Action::Send(Frame::Grab { share_id: 9 }));
    let got = Frame::GrabReply {
        code: 0,
        amount_cents: 5,
    };
    u.on_frame(got.clone(), ms(11), 0.0, &mut s);
    assert_eq!(u.poll(ms(11)), Action::Send(Frame::Grab { share_id: 9 }));
    // The server tells the original answer again: the contract kept, nothing promised.
    u.on_frame(got, ms(12), 0.0, &mut s);
    assert!(
        !matches!(u.poll(ms(12)), Action::Send(Frame::Grab { .. })),
        "once only"
    );
    assert_eq!((s.repeats_kept, s.repeats_broken), (1, 0));
    assert_eq!(s.grabbed_cents, 5);
    assert_eq!(s.promises, vec![(5, 5)]);
    // A repeat told anything else breaks the contract.
    let mut u = UserCore::new(5, [0; MAC_LEN], &behaviour(), 0.0, true);
    hello(&mut u, &mut s);
    u.invite(10, ms(20));
    assert_eq!(u.poll(ms(20)), Action::Send(Frame::Grab { share_id: 10 }));
    let first = Frame::GrabReply {
        code: 0,
        amount_cents: 8,
    };
    u.on_frame(first, ms(21), 0.0, &mut s);
    assert_eq!(u.poll(ms(21)), Action::Send(Frame::Grab { share_id: 10 }));
    let other = Frame::GrabReply {
        code: ErrorCode::NotInvited as u16,
        amount_cents: 0,
    };
    u.on_frame(other, ms(22), 0.0, &mut s);
    assert_eq!((s.repeats_kept, s.repeats_broken), (1, 1));
    assert_eq!(
        s.errors(),
        0,
        "a refusal of bad input is an outcome, not an error"
    );
}

#[test]
fn a_cheater_opens_again_on_the_next_gateway_and_must_be_told_the_same() {
    let mut s = Summary::default();
    let mut u = UserCore::new(7, [0; MAC_LEN], &behaviour(), 0.0, true);
    let open = wins_and_opens(&mut u, &mut s);
    let told = Frame::OpenReply {
        code: 0,
        amount_cents: 50,
    };
    u.on_frame(told.clone(), ms(6), 0.0, &mut s);
    assert_eq!(u.poll(ms(6)), Action::Hop, "to the next gateway first");
    u.disconnected(&mut s);
    u.connected(ms(7), ms(60_000));
    hello(&mut u, &mut s);
    assert_eq!(u.poll(ms(8)), open, "then the same open there");
    u.on_frame(told, ms(9), 0.0, &mut s);
    assert_eq!((s.repeats_kept, s.repeats_broken), (1, 0));
    assert_eq!(s.promises, vec![(7, 50)], "promised once");
    assert_eq!(s.count(Op::Open), 1, "a repeat is judged, not timed");
}
